"""A guard against artifacts that appear during training: an L1 where the errors look like them.

A deep-feature or adversarial term asks the upscaler for texture it cannot know. Where it guesses
well, its errors are small and even; where it paints a pattern (the lattice, cells and cracks of
train/README.md), its errors are large and vary from pixel to pixel. Liang et al. 2022 (LDL,
"Details or Artifacts") tell the two apart by that local variance, and by time: an artifact is where
the model being trained is now worse than a steadier copy of itself (the EMA of its weights), while
detail it has learned for good is where it is at least as good. This term charges L1 only there,
weighted by the local variance of the residual, so honest texture stays free and new patterns
are pulled back towards the target.

Ours differs from LDL's code in two ways: the map is rescaled to mean 1 over the batch before the
pixels the model got better at are dropped (so a weight of 1 reads like an L1's, whatever the
images), and it carries no gradient of its own (the map decides where to look; only the pixels it
points at are moved).

What it does not defend against: a pattern the reference has too. From a start that already paints
cells, the cells stay; and in a fine-tune of a few thousand steps the EMA (with its warm-up) lags
the weights by about a ninth of the steps run, so a pattern that grows slowly is soon in the
reference as well (train/README.md). Training can instead pass the starting model, frozen, as the
reference (recipe key ``reference: init``): then anything the run paints that makes a pixel worse
than its start is charged, however slowly it grows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def artifact_map(pred: torch.Tensor, target: torch.Tensor, reference: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Nx1xHxW, >= 0: how much each pixel of ``pred`` looks like an artifact.

    ``pred``, ``target``, ``reference``: NxCxHxW in [0, 1], H and W > window // 2. The residual
    ``|target - pred|``, summed over channels, has its variance taken in a ``window`` square around
    each pixel, times the image's whole-residual variance to the power 1/5 (an image with large,
    uneven errors counts more, as in LDL), rescaled to mean 1 over the batch. Pixels where ``pred``
    is closer to the target than ``reference`` (the steadier model) are 0: what the model gets
    better at is not charged.
    """
    if not (pred.shape == target.shape == reference.shape) or pred.dim() != 4:
        raise ValueError(f"expected three NxCxHxW images of one shape, got {tuple(pred.shape)}, "
                         f"{tuple(target.shape)} and {tuple(reference.shape)}")  # fmt: skip
    pad = window // 2
    if min(pred.shape[-2:]) <= pad:
        raise ValueError(f"images of {tuple(pred.shape[-2:])} px are too small for a {window} px window")
    residual = (target - pred).abs().sum(dim=1, keepdim=True)
    reference_residual = (target - reference).abs().sum(dim=1, keepdim=True)
    padded = F.pad(residual, (pad, pad, pad, pad), mode="reflect")
    local_mean = F.avg_pool2d(padded, window, stride=1)
    local_variance = (F.avg_pool2d(padded.square(), window, stride=1) - local_mean.square()).clamp_min(0)
    image_weight = residual.var(dim=(1, 2, 3), keepdim=True).pow(0.2)
    weights = image_weight * local_variance
    weights = weights / weights.mean().clamp_min(1e-12)  # before the mask: fewer pixels charged, less charge
    return torch.where(residual < reference_residual, 0.0, weights)


class ArtifactMapLoss(nn.Module):
    """``mean(m * |pred - target|)``, with ``m`` the :func:`artifact_map`.

    Inputs NxCxHxW in [0, 1] and, as ``reference``, the same batch upscaled by a steadier model (in
    training: the EMA of the weights, or the starting model); returns a scalar. 0 where the
    prediction matches the target or beats the reference everywhere. Pair it with the terms that ask
    for texture (``l1+0.1*elpips-alex+0.05*gan+1*ldl``); alone it is a weighted L1.
    """

    needs_reference = True

    def __init__(self, window: int = 7):
        super().__init__()
        self.window = window

    def forward(self, pred: torch.Tensor, target: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        if reference is None:
            raise ValueError("the ldl loss needs a reference output (the EMA model's) to compare with")
        with torch.no_grad():
            weights = artifact_map(pred, target, reference, self.window)
        return (weights * (pred - target).abs()).mean()
