"""A guard against painted patterns: energy that the prediction has and the target lacks.

A deep-feature loss rewards an output for *having* texture, not for having the right one. A generator
that cannot know the true texture then paints one fixed pattern everywhere: srtool's first
``perceptual`` x4 learned a diagonal crosshatch of period 8, and an E-LPIPS-style ensemble of random
shifts, flips, turns and colour orders did not stop it (the mesh is symmetric under all of them).
This loss compares the power spectra of prediction and target, frequency by frequency and channel by
channel (Y, Cb, Cr), and charges only the excess: texture up to the target's energy is free, a
spectral line that the target lacks is not. Chroma counts as much as luma: a first version that
guarded luma alone saw the generator move its mesh into magenta and green speckles. It is the
differentiable twin of :func:`sr_tool.metrics.spectral_excess`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# BT.601 YCbCr rows (offsets dropped: spectra are taken of mean-removed patches)
_YCBCR = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))


class SpectralExcessLoss(nn.Module):
    """Mean over frequencies and channels of ``max(0, log2(P_pred / P_target) - margin)``.

    P: power spectra of the Hann-windowed, mean-removed Y, Cb and Cr planes (gray: the one plane),
    averaged over the batch and over 3x3 neighbouring frequencies (a steady estimate from one batch),
    with a floor of one 8-bit level of white noise. Inputs NxCxHxW in [0, 1] (C = 1 or 3, H and W >= 8); returns a
    scalar, 0 while the prediction nowhere exceeds the target by ``margin`` octaves.
    """

    def __init__(self, margin: float = 0.1):
        super().__init__()
        self.margin = margin

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape or pred.dim() != 4 or min(pred.shape[-2:]) < 8:
            raise ValueError(f"expected two NxCxHxW images of at least 8 px, got {tuple(pred.shape)} and {tuple(target.shape)}")
        h, w = pred.shape[-2:]
        hann = torch.outer(torch.hann_window(h, periodic=False), torch.hann_window(w, periodic=False)).to(pred)
        floor = hann.pow(2).sum() / 255**2
        ratio = torch.log2((_power(pred, hann) + floor) / (_power(target, hann) + floor))
        return F.relu(ratio - self.margin).mean()


def _power(images: torch.Tensor, hann: torch.Tensor) -> torch.Tensor:
    """C' x H x (W//2+1): the batch-mean power spectrum of each YCbCr plane (or the gray plane)."""
    if images.shape[1] == 3:
        planes = torch.einsum("kc,nchw->nkhw", images.new_tensor(_YCBCR), images)
    else:
        planes = images.mean(dim=1, keepdim=True)
    planes = planes - planes.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.rfft2(planes * hann).abs().pow(2).mean(dim=0)
    padded = F.pad(power[None], (1, 1, 1, 1), mode="replicate")
    return F.avg_pool2d(padded, 3, stride=1)[0]
