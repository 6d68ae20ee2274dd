"""srtool: super-resolution with pixel, MS-SSIM and deep-feature trained SRResNets."""

__version__ = "0.1.0"
