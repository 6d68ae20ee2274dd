"""Quality metrics computed as published SR tables compute them.

Protocol (see ``../shared/data/README.md`` of the project, and e.g. the SRCNN/VDSR MATLAB scripts):
the super-resolved image is quantised to 8 bits; colour images are scored on Y of BT.601 studio-range
YCbCr as MATLAB's ``rgb2ycbcr`` computes it on uint8 images (rounded to integers); grayscale images on
their gray channel; ``shave`` = scale pixels are removed from every border; PSNR on the 8-bit range;
SSIM with an 11x11 Gaussian window, sigma 1.5.

All functions take NxCxHxW float tensors in [0, 1] (C = 1 or 3) and return one value per image.
"""

from __future__ import annotations

import torch

from sr_tool.losses.ssim import ms_ssim, ssim

_Y_WEIGHTS = (65.481, 128.553, 24.966)


def quantise_8bit(images: torch.Tensor) -> torch.Tensor:
    """Round to the nearest of 256 levels (half away from zero) and clamp: values stay in [0, 1]."""
    return torch.floor(images.clamp(0, 1) * 255 + 0.5) / 255


def y_channel(images: torch.Tensor) -> torch.Tensor:
    """Nx1xHxW luma on the 8-bit scale: BT.601 studio-range Y (16..235) for RGB, rounded to integers
    as MATLAB's rgb2ycbcr does for uint8 input; gray images give their gray channel (0..255)."""
    images = quantise_8bit(images).double()
    if images.shape[1] == 1:
        return torch.floor(images * 255 + 0.5)  # exact integer levels
    w = images.new_tensor(_Y_WEIGHTS).view(1, 3, 1, 1)
    y = 16 + (images * w).sum(dim=1, keepdim=True)
    return torch.floor(y + 0.5)


def _shave(images: torch.Tensor, shave: int) -> torch.Tensor:
    return images[..., shave : images.shape[-2] - shave, shave : images.shape[-1] - shave] if shave else images


def _check(sr: torch.Tensor, hr: torch.Tensor) -> None:
    if sr.shape != hr.shape:
        raise ValueError(f"SR and HR shapes differ: {tuple(sr.shape)} vs {tuple(hr.shape)}")


def psnr_y(sr: torch.Tensor, hr: torch.Tensor, shave: int = 0) -> torch.Tensor:
    """PSNR in dB on Y (or gray), 8-bit peak, ``shave`` border pixels removed."""
    _check(sr, hr)
    diff = _shave(y_channel(sr) - y_channel(hr), shave)
    mse = diff.pow(2).flatten(1).mean(1)
    return 10 * torch.log10(255.0**2 / mse.clamp_min(1e-10))


def ssim_y(sr: torch.Tensor, hr: torch.Tensor, shave: int = 0) -> torch.Tensor:
    """SSIM on Y (or gray), 8-bit range, 11x11 Gaussian window (sigma 1.5), ``shave`` removed."""
    _check(sr, hr)
    return ssim(_shave(y_channel(sr), shave), _shave(y_channel(hr), shave), data_range=255.0, reduction="none")


def ms_ssim_rgb(sr: torch.Tensor, hr: torch.Tensor, shave: int = 0) -> torch.Tensor:
    """MS-SSIM on the 8-bit-quantised image (all channels), ``shave`` removed; scales as fit."""
    _check(sr, hr)
    a, b = _shave(quantise_8bit(sr), shave), _shave(quantise_8bit(hr), shave)
    return ms_ssim(a.double(), b.double(), data_range=1.0, reduction="none")


def deep_distance(sr: torch.Tensor, hr: torch.Tensor, distance, shave: int = 0, *, target=None) -> torch.Tensor:
    """A deep-feature distance (e.g. ``load_st_lpips("alex")``) on the 8-bit-quantised RGB image;
    gray images are repeated to 3 channels. ``target``: ``deep_target(hr, distance, shave)``, to
    compute the ground truth's features once when several outputs are compared with it."""
    _check(sr, hr)
    with torch.no_grad():
        target = deep_target(hr, distance, shave) if target is None else target
        return distance.distance_to(_deep_input(sr, shave), target)


def deep_target(hr: torch.Tensor, distance, shave: int = 0) -> list[torch.Tensor]:
    """The ground truth's side of :func:`deep_distance`, computed once."""
    with torch.no_grad():
        return distance.target_features(_deep_input(hr, shave))


def _deep_input(images: torch.Tensor, shave: int) -> torch.Tensor:
    a = _shave(quantise_8bit(images), shave)
    return (a.expand(-1, 3, -1, -1) if a.shape[1] == 1 else a).float()
