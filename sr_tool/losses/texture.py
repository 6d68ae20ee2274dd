"""A texture loss: local Gram matrices of deep features (Gatys et al. 2015; EnhanceNet, Sajjadi et al. 2017).

Deep-feature distances such as ST-LPIPS compare features position by position. Where the true texture
cannot be known from the LR (gravel, sand, foliage), no output matches it position by position, and a
generator trained on such a distance supplies texture *energy* in the cheapest form it finds: srtool's
perceptual models painted a crosshatch, then an irregular web of thin lines, then cells
(train/README.md). A Gram matrix ignores where a feature fires inside a window and keeps which
features fire together, and how strongly: the statistics that tell sand from a web of lines. EnhanceNet
found this term, over 16 px windows, turned perceptual-loss grids into plausible texture.

Per tapped layer, the features of each ``window`` x ``window`` px block (in image pixels) give one
C x C Gram matrix; the loss is the mean absolute difference of prediction and target Grams, relative to
the target's mean absolute Gram, averaged over layers. Relative, so each layer counts alike.

Measured (train/README.md, ninth session): beside L1 and the spectral guard it lands between
``pixel`` and the E-LPIPS ``perceptual`` by every number, and its crops show the same fault, fainter:
blobs with thin light outlines over corn, gravel and foliage. Like the networks it reads, it
prefers a painted pattern to blur.
"""

from __future__ import annotations

import torch
from torch import nn

from sr_tool.losses.deep import DeepFeatureDistance


class GramTextureLoss(nn.Module):
    """Texture distance over the first ``layers`` taps of a deep network.

    Inputs: NxCxHxW in [0, 1], C = 3, H and W at least ``window``. Output: a scalar, 0 when every
    window's feature correlations match the target's (a shifted copy of a texture scores near 0, a
    blurred one or one with a painted pattern does not).
    """

    def __init__(self, network: DeepFeatureDistance, *, layers: int = 3, window: int = 32):
        super().__init__()
        if not 1 <= layers <= len(network.taps):
            raise ValueError(f"layers must be within 1..{len(network.taps)}, got {layers}")
        self.network, self.layers, self.window = network, layers, window

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape or pred.dim() != 4 or pred.shape[1] != 3:
            raise ValueError(f"expected two Nx3xHxW images, got {tuple(pred.shape)} and {tuple(target.shape)}")
        if min(pred.shape[-2:]) < self.window:
            raise ValueError(f"images of {tuple(pred.shape[-2:])} are smaller than the {self.window} px window")
        width = pred.shape[-1]
        total = pred.new_zeros(())
        feats = zip(self.network.tapped_features(pred, self.layers), self.network.tapped_features(target, self.layers))
        for fp, ft in feats:
            cells = max(2, round(self.window * fp.shape[-1] / width))  # the window in this layer's cells
            gp, gt = window_grams(fp, cells), window_grams(ft, cells)
            total = total + (gp - gt).abs().mean() / (gt.abs().mean() + 1e-8)
        return total / self.layers


def window_grams(features: torch.Tensor, cells: int) -> torch.Tensor:
    """N x windows x C x C: the Gram matrix of each ``cells`` x ``cells`` block of NxCxHxW features
    (edge cells that do not fill a block are left out), divided by the cells in a block."""
    n, c, h, w = features.shape
    rows, cols = h // cells, w // cells
    if rows == 0 or cols == 0:
        raise ValueError(f"features of {h}x{w} are smaller than a {cells}-cell window")
    blocks = features[:, :, : rows * cells, : cols * cells].reshape(n, c, rows, cells, cols, cells)
    blocks = blocks.permute(0, 2, 4, 1, 3, 5).reshape(n, rows * cols, c, cells * cells)
    return blocks @ blocks.transpose(-1, -2) / (cells * cells)
