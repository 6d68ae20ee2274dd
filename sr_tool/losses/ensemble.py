"""A deep-feature loss that a generator cannot easily game: the E-LPIPS recipe (Kettunen et al. 2019).

One fixed network used as a loss has blind spots: a generator trained on it finds patterns that the
network scores as texture but people see as artifacts. srtool's first ``perceptual`` model, trained
on plain ST-LPIPS (AlexNet), learned to paint a diagonal crosshatch of a few pixels' period over
foliage, fur and gravel, and ST-LPIPS liked it. E-LPIPS showed that the same distance becomes robust
when both images pass through the same *random* transformation before each evaluation: a pattern
must then fool the network under every shift, flip, turn, colour order and scale at once, and only
real similarity to the target does that. One sample per training step is enough; the optimiser
averages over steps.

Transformations, drawn per call and applied identically to prediction and target:
- a translation of 0..``max_shift - 1`` pixels (the crop of the network's stride-8 grid changes);
- one of the 8 flips / 90-degree turns;
- a permutation of the colour channels, and per-channel gains in ``1 +- colour_gain``;
- with probability ``p_downscale``, a downscale by a random factor in [``min_zoom``, 1) (antialiased
  bilinear), kept at ``MIN_HALF_SIZE`` pixels or more, for views of at least ``2 * MIN_HALF_SIZE``
  (the deep networks need some size).

The scale matters most. srtool's crosshatch had period 8, the network's stride: a mesh tuned to the
network's grid survives shifts, flips, turns and colour orders (it is symmetric under all of them)
and even a 2x downscale (period 4 still divides 8), but not a resampling by 0.8 or 0.65.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MIN_HALF_SIZE = 32


class RandomTransformEnsemble(nn.Module):
    """Mean of ``distance(T(pred), T(target))`` over random transformations T.

    ``distance`` maps two Nx3xHxW images in [0, 1] to one distance per image (e.g.
    :func:`sr_tool.losses.deep.load_st_lpips`). Inputs: NxCxHxW in [0, 1], C = 3, H and W larger than
    ``max_shift``. Output: a scalar, the batch mean. ``generator`` makes the draws reproducible.
    """

    def __init__(
        self,
        distance: nn.Module,
        *,
        samples: int = 1,
        max_shift: int = 8,
        colour_gain: float = 0.2,
        p_downscale: float = 0.5,
        min_zoom: float = 0.5,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.distance = distance
        self.samples, self.max_shift = samples, max_shift
        self.colour_gain, self.p_downscale, self.min_zoom = colour_gain, p_downscale, min_zoom
        self.generator = generator

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape or pred.dim() != 4 or pred.shape[1] != 3:
            raise ValueError(f"expected two Nx3xHxW images, got {tuple(pred.shape)} and {tuple(target.shape)}")
        if min(pred.shape[-2:]) <= self.max_shift:
            raise ValueError(f"images of {tuple(pred.shape[-2:])} are too small for shifts of {self.max_shift}")
        total = pred.new_zeros(())
        for _ in range(self.samples):
            transform = self._draw(pred.shape[-2:])
            total = total + self.distance(transform(pred), transform(target)).mean()
        return total / self.samples

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))

    def _draw(self, size: torch.Size):
        h, w = size
        dy, dx = self._randint(self.max_shift), self._randint(self.max_shift)
        crop_h, crop_w = h - self.max_shift + 1, w - self.max_shift + 1
        turns, flip = self._randint(4), bool(self._randint(2))
        order = torch.randperm(3, generator=self.generator).tolist()
        gains = 1 + self.colour_gain * (2 * torch.rand(3, generator=self.generator) - 1)
        zoom = 1.0
        if float(torch.rand(1, generator=self.generator)) < self.p_downscale:
            lowest = max(self.min_zoom, MIN_HALF_SIZE / min(crop_h, crop_w))
            if min(crop_h, crop_w) >= 2 * MIN_HALF_SIZE:  # small views (x2 training crops) stay as they are
                zoom = lowest + (1 - lowest) * float(torch.rand(1, generator=self.generator))

        def transform(images: torch.Tensor) -> torch.Tensor:
            out = images[:, order, dy : dy + crop_h, dx : dx + crop_w]
            out = out * gains.to(out).view(1, 3, 1, 1)
            out = torch.rot90(out, turns, dims=(-2, -1))
            if flip:
                out = out.flip(-1)
            if zoom < 1:
                out = F.interpolate(out, scale_factor=zoom, mode="bilinear", antialias=True, align_corners=False)
            return out

        return transform


class LowFrequencyL1Loss(nn.Module):
    """L1 between 2x box-downscaled images: anchors colour and coarse structure, and leaves the
    finest octave to another term. NxCxHxW in [0, 1] (H, W >= 2); returns a scalar."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (F.avg_pool2d(pred, 2) - F.avg_pool2d(target, 2)).abs().mean()
