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
_CB_WEIGHTS = (-37.797, -74.203, 112.0)  # BT.601 studio range, as MATLAB's rgb2ycbcr
_CR_WEIGHTS = (112.0, -93.786, -18.214)


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


# -- artifact check -----------------------------------------------------------------------------

#: :func:`spectral_excess` above this (log2 of an energy ratio: 1.41x the ground truth's energy at
#: some frequency) marks an image; a model is flagged on a set when the *median* image is marked.
ARTIFACT_THRESHOLD = 0.5
_EXCESS_WINDOW, _EXCESS_STRIDE = 64, 32
_EXCESS_BAND = (1 / 12, 1 / 2)  # cycles per pixel: periods of 2 to 12 pixels


def spectral_excess(sr: torch.Tensor, hr: torch.Tensor, shave: int = 0) -> torch.Tensor:
    """Invented periodic energy: the largest ratio, in octaves (log2), of the SR image's power to the
    ground truth's at any one spatial frequency with a period of 2 to 12 pixels, in any of Y, Cb and
    Cr (gray images: the gray plane). One value per image; 0 for the ground truth itself, negative
    for a blurry output, NaN for images under 64 px.

    Why: a deep-feature loss can teach a generator to paint a regular mesh (srtool's first
    ``perceptual`` x4 drew a diagonal crosshatch of period 8, its loss network's stride, over
    foliage, fur and gravel, with magenta and green speckles in its colours). Such a mesh puts energy
    at a few frequencies where the real scene has little, and no phase-locked or per-pixel check
    sees it. An honest sharp output approaches the ground truth's spectrum from below; a mesh
    overshoots it. Chroma counts: a model that is kept from painting luma paints colour instead.
    Welch's method: Hann-windowed 64 px patches at a 32 px step, power averaged over the image.
    NxCxHxW in [0, 1], quantised to 8 bits first; ``shave`` border pixels removed.
    """
    _check(sr, hr)
    planes_sr, planes_hr = (_ycbcr_planes(_shave(x, shave)) for x in (sr, hr))
    if min(sr.shape[-2:]) - 2 * shave < _EXCESS_WINDOW:
        return torch.full((sr.shape[0],), float("nan"), dtype=torch.float64)
    window = _EXCESS_WINDOW
    fy = torch.fft.fftfreq(window, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(window, dtype=torch.float64)[None, :]
    radius = (fy**2 + fx**2).sqrt()
    band = (radius >= _EXCESS_BAND[0]) & (radius <= _EXCESS_BAND[1])
    # The floor: the power of a sinusoid of half an 8-bit level at one frequency. Patterns fainter than
    # that are invisible, and where the truth has less (flat, or once upscaled itself: Set5's bird and
    # butterfly), any output's faint interpolation residue would otherwise count as invented energy.
    hann = torch.hann_window(window, periodic=False, dtype=torch.float64)
    floor = (0.25 * (hann[:, None] * hann[None, :]).sum()) ** 2
    worst = []
    for plane_sr, plane_hr in zip(planes_sr, planes_hr):
        ratio = torch.log2((_welch_power(plane_sr) + floor) / (_welch_power(plane_hr) + floor))
        worst.append(ratio[:, band].amax(dim=1))
    return torch.stack(worst).amax(dim=0)


def _ycbcr_planes(images: torch.Tensor) -> list[torch.Tensor]:
    """Nx1xHxW planes on the 8-bit scale: Y (as for PSNR-Y), Cb, Cr for RGB; the gray plane for gray."""
    if images.shape[1] == 1:
        return [y_channel(images)]
    rgb = quantise_8bit(images).double()
    cb = 128 + (rgb * rgb.new_tensor(_CB_WEIGHTS).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    cr = 128 + (rgb * rgb.new_tensor(_CR_WEIGHTS).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    return [y_channel(images), cb, cr]


def _welch_power(luma: torch.Tensor) -> torch.Tensor:
    """Mean power spectrum (N x W x W//2+1) of Hann-windowed, mean-removed patches of an Nx1xHxW plane."""
    window, stride = _EXCESS_WINDOW, _EXCESS_STRIDE
    patches = torch.nn.functional.unfold(luma, window, stride=stride)  # N x W*W x L
    patches = patches.transpose(1, 2).reshape(luma.shape[0], -1, window, window)
    patches = patches - patches.mean(dim=(-2, -1), keepdim=True)
    hann = torch.hann_window(window, periodic=False, dtype=luma.dtype)
    spectra = torch.fft.rfft2(patches * (hann[:, None] * hann[None, :])).abs().pow(2)
    return spectra.mean(dim=1)
