"""SSIM and MS-SSIM (Wang et al. 2003), and the MS-SSIM + L1 mix of Zhao et al. 2017.

Inputs are NxCxHxW float tensors in [0, data_range]. Values equal pytorch-msssim's wherever that is
defined (Gaussian window 11, sigma 1.5, 'valid' filtering, 2x2 average pooling between scales).

Why our own rather than pytorch-msssim:
- Patch sizes. pytorch-msssim refuses images of 160 px or less (5 scales of an 11 px window), but SR
  training patches are 48 to 512 px. Here the number of scales is chosen to fit: as many as 5 as long
  as the coarsest scale is still >= the window, and the Wang weights of the scales used are
  renormalised to sum to 1 (all five are used unchanged). A 48 px patch gets 3 scales (48, 24, 12 px), 96 px gets 4, >160 px all 5,
  which is exactly pytorch-msssim.
- Finite gradients. Contrast terms are clamped at 0 (as pytorch-msssim's relu does) and raised to
  fractional powers; the power is taken of a value kept >= 1e-8, so no inf x 0 = NaN reaches the
  gradient on constant, identical or anti-correlated images.
- Speed. The five local statistics (means, variances, covariance) are filtered in one grouped
  separable convolution instead of five (see benchmarks/losses.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Scale weights of Wang, Simoncelli & Bovik (2003), finest first.
WANG_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_POW_FLOOR = 1e-8


def gaussian_window(size: int, sigma: float, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian of odd ``size``."""
    if size % 2 != 1:
        raise ValueError(f"window size must be odd, got {size}")
    coords = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return (g / g.sum()).to(device=device, dtype=dtype)


def _filter(stack: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filter of every channel."""
    c = stack.shape[1]
    k = win.numel()
    out = F.conv2d(stack, win.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(out, win.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def _ssim_and_cs(x: torch.Tensor, y: torch.Tensor, win: torch.Tensor, data_range: float, k=(0.01, 0.03)):
    """Per-image, per-channel mean SSIM and mean contrast-structure term, each NxC."""
    c1, c2 = (k[0] * data_range) ** 2, (k[1] * data_range) ** 2
    c = x.shape[1]
    stats = _filter(torch.cat([x, y, x * x, y * y, x * y], dim=1), win)
    mu_x, mu_y, xx, yy, xy = stats.split(c, dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    cs_map = (2 * (xy - mu_xy) + c2) / ((xx - mu_xx) + (yy - mu_yy) + c2)
    ssim_map = (2 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs_map
    return ssim_map.flatten(2).mean(-1), cs_map.flatten(2).mean(-1)


def _check_pair(x: torch.Tensor, y: torch.Tensor, win_size: int) -> None:
    if x.shape != y.shape:
        raise ValueError(f"images must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dim() != 4:
        raise ValueError(f"images must be NxCxHxW, got shape {tuple(x.shape)}")
    if min(x.shape[-2:]) < win_size:
        raise ValueError(f"images of {x.shape[-2]}x{x.shape[-1]} px are smaller than the {win_size} px window")


def ssim(x, y, *, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5, reduction: str = "mean"):
    """Mean SSIM of NxCxHxW images in [0, data_range]; ``reduction='none'`` gives one value per image."""
    _check_pair(x, y, win_size)
    win = gaussian_window(win_size, sigma, device=x.device, dtype=x.dtype)
    value = _ssim_and_cs(x, y, win, data_range)[0].mean(1)
    return value.mean() if reduction == "mean" else value


def ms_ssim_levels(min_side: int, win_size: int = 11, max_levels: int = len(WANG_WEIGHTS)) -> int:
    """How many scales fit: each halving (rounding up) must leave at least ``win_size`` pixels."""
    if min_side < win_size:
        raise ValueError(f"images of {min_side} px are smaller than the {win_size} px window")
    levels, side = 1, min_side
    while levels < max_levels and (side + 1) // 2 >= win_size:
        side, levels = (side + 1) // 2, levels + 1
    return levels


def _safe_pow(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """relu(v) ** w with a finite gradient everywhere (w in (0, 1) has an infinite slope at 0)."""
    return torch.where(v > 0, v.clamp_min(_POW_FLOOR).pow(w), torch.zeros_like(v))


def ms_ssim(
    x,
    y,
    *,
    data_range: float = 1.0,
    win_size: int = 11,
    sigma: float = 1.5,
    weights=WANG_WEIGHTS,
    levels: int | None = None,
    reduction: str = "mean",
):
    """MS-SSIM of NxCxHxW images in [0, data_range]. ``levels`` defaults to as many as fit (max 5)."""
    _check_pair(x, y, win_size)
    levels = levels or ms_ssim_levels(min(x.shape[-2:]), win_size, len(weights))
    w = x.new_tensor(weights[:levels])
    if levels < len(weights):  # fewer scales: renormalise the ones used (all five are used as published)
        w = w / w.sum()
    win = gaussian_window(win_size, sigma, device=x.device, dtype=x.dtype)
    terms = []
    for level in range(levels):
        ssim_val, cs = _ssim_and_cs(x, y, win, data_range)
        if level < levels - 1:
            terms.append(cs)
            pad = [x.shape[-2] % 2, x.shape[-1] % 2]
            x = F.avg_pool2d(x, kernel_size=2, padding=pad)
            y = F.avg_pool2d(y, kernel_size=2, padding=pad)
    terms.append(ssim_val)
    value = torch.stack([_safe_pow(t, w[i]) for i, t in enumerate(terms)]).prod(0).mean(1)
    return value.mean() if reduction == "mean" else value


def gaussian_l1(x, y, *, sigma: float = 8.0, data_range: float = 1.0) -> torch.Tensor:
    """L1 error weighted by a Gaussian window (Zhao et al.'s G_sigma * |x - y|), mean over pixels.

    The window (sigma 8, Zhao's largest scale, truncated at 2 sigma) is applied with zero padding, so
    any patch size works and errors near patch borders count less, as in the paper's per-patch loss.
    """
    radius = int(2 * sigma)
    win = gaussian_window(2 * radius + 1, sigma, device=x.device, dtype=x.dtype)
    err = (x - y).abs() / data_range
    c = err.shape[1]
    k = win.numel()
    out = F.conv2d(err, win.view(1, 1, k, 1).expand(c, 1, k, 1), padding=(radius, 0), groups=c)
    out = F.conv2d(out, win.view(1, 1, 1, k).expand(c, 1, 1, k), padding=(0, radius), groups=c)
    return out.mean()


class SSIMLoss(nn.Module):
    """1 - SSIM, for NxCxHxW images in [0, 1]."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 1 - ssim(pred, target)


class MSSSIMLoss(nn.Module):
    """1 - MS-SSIM, for NxCxHxW images in [0, 1] of at least 11 px (scales chosen to fit)."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 1 - ms_ssim(pred, target)


class MSSSIML1Loss(nn.Module):
    """Zhao et al. 2017 mix: alpha * (1 - MS-SSIM) + (1 - alpha) * Gaussian-weighted L1, alpha = 0.84."""

    def __init__(self, alpha: float = 0.84, sigma: float = 8.0):
        super().__init__()
        self.alpha = alpha
        self.sigma = sigma

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        structural = 1 - ms_ssim(pred, target)
        return self.alpha * structural + (1 - self.alpha) * gaussian_l1(pred, target, sigma=self.sigma)
