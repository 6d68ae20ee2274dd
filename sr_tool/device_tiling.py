"""Tiling on the accelerator: :class:`DeviceTiler`.

:class:`~sr_tool.tiling.TiledRunner` cuts, blends and quantises on the host, so every tile crosses
the bus twice as float32 and the blending runs in numpy. Here the decoded image goes to the device
once, as its 8- or 16-bit samples (from pinned memory, without blocking), and everything else
happens there: the same tile plan and blending weights as TiledRunner, batches in the model's
precision and memory format, a full-size accumulator, quantisation. What comes back is the finished
uint8 / uint16 image, a quarter (or half) of the float32 bytes. The result equals TiledRunner's
within 1/255 (same plan, same weights; only the order of float operations differs).

The accumulator holds the whole output in float32 (12 bytes per output pixel), so the caller sends
only images that fit (:meth:`DeviceTiler.fits`) and the rest to TiledRunner's bands. An image no
larger than a tile runs whole, as there.

``model(batch)`` maps an NxCxhxw tensor on the device, in ``dtype``, to Nx3x(sh)x(sw).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from sr_tool.tiling import SizeRule, TiledRunner, TileProgress, _batches, _ramp, plan_tiles

TensorFn = Callable[[torch.Tensor], torch.Tensor]
#: float32 accumulator (3 channels) plus headroom for the quantised copy, per output pixel
BYTES_PER_OUTPUT_PIXEL = 16


class DeviceTiler(TiledRunner):
    """TiledRunner's tiling, done on ``device`` with tensors; OOM halves the tile as there."""

    def __init__(self, model: TensorFn, scale: int, *, device: str | torch.device, dtype: torch.dtype = torch.float32,
                 tile: int = 512, pad: int = 16, blend: int = 8, batch_size: int = 8, in_channels: int = 3,
                 size_rule: SizeRule = SizeRule(), channels_last: bool = False):  # fmt: skip
        # The parent's geometry (tile fitting to the rule, minimum tile, OOM retry) is reused; its
        # numpy run_batch is not: batches here are tensors, run by _fit_batch.
        super().__init__(model, scale, tile=tile, pad=pad, blend=blend, batch_size=batch_size,
                         in_channels=in_channels, size_rule=size_rule)  # fmt: skip
        self.model = model
        self.device = torch.device(device)
        self.dtype = dtype
        self.channels_last = channels_last

    def fits(self, height: int, width: int, free_bytes: int) -> bool:
        """Whether the output accumulator of a ``height`` x ``width`` input takes at most a quarter of ``free_bytes``."""
        return height * width * self.scale**2 * BYTES_PER_OUTPUT_PIXEL <= free_bytes // 4

    def _to_device(self, image: np.ndarray) -> torch.Tensor:
        """HxWxC samples -> CxHxW in ``dtype``, scaled to [0, 1], on the device."""
        peak = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(image.dtype, 1.0)
        if image.dtype == np.uint16:  # torch has no uint16 arithmetic: widen on the host (cheap, exact)
            image = image.astype(np.int32)
        image = np.ascontiguousarray(image)
        host = torch.from_numpy(image if image.flags.writeable else image.copy())  # torch wants writable arrays
        if self.device.type == "cuda":
            host = host.pin_memory()  # lets the copy run asynchronously
        samples = host.to(self.device, non_blocking=True).permute(2, 0, 1)
        x = samples.to(torch.float32).div_(peak).to(self.dtype)
        if x.shape[0] == 1 and self.in_channels == 3:
            x = x.expand(3, -1, -1)
        return x

    def _fit_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """Run a batch, padded at the bottom and right to the size rule (mirrored, then repeated)."""
        h, w = batch.shape[-2:]
        (mirror_h, mirror_w), (repeat_h, repeat_w) = self.size_rule.mirror_then_repeat(h, w)
        if mirror_h or mirror_w or repeat_h or repeat_w:
            batch = F.pad(batch, (0, mirror_w, 0, mirror_h), mode="reflect")
            batch = F.pad(batch, (0, repeat_w, 0, repeat_h), mode="replicate")
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self.model(batch)[..., : h * self.scale, : w * self.scale]

    @torch.inference_mode()
    def _run(self, image: np.ndarray, out_dtype, on_tiles: TileProgress | None) -> np.ndarray:
        h, w = image.shape[:2]
        s = self.scale
        x = self._to_device(image)
        plan = plan_tiles(h, w, self.tile, self.overlap, self.size_rule.align)
        th, tw = plan.tile_h, plan.tile_w
        def ramps(starts, size, total):  # each tile's 1-D weights, cut where the image ends
            return [torch.from_numpy(_ramp(size * s, i > 0, i < len(starts) - 1, self.pad * s, self.blend * s)
                                     [: (total - start) * s]).to(self.device) for i, start in enumerate(starts)]  # fmt: skip

        col_w, row_w = ramps(plan.xs, tw, w), ramps(plan.ys, th, h)
        # Every tile's weight is its row ramp times its column ramp, and tiles form a grid, so the
        # weights' sum is the product of the 1-D sums: no full-size weight map is needed.
        row_sum, col_sum = torch.zeros(h * s, device=self.device), torch.zeros(w * s, device=self.device)
        for y0, wy in zip(plan.ys, row_w):
            row_sum[y0 * s : y0 * s + len(wy)] += wy
        for x0, wx in zip(plan.xs, col_w):
            col_sum[x0 * s : x0 * s + len(wx)] += wx
        acc = None
        for r, y0 in enumerate(plan.ys):
            for start, xs in _batches(plan.xs, tw, w, self.batch_size):
                batch = torch.stack([x[:, y0 : y0 + th, x0 : x0 + tw] for x0 in xs])
                out = self._fit_batch(batch).float()
                if acc is None:
                    acc = torch.zeros((out.shape[1], h * s, w * s), device=self.device)
                wy = row_w[r]
                for x0, tile_out, wx in zip(xs, out, col_w[start : start + len(xs)]):
                    weight = wy[:, None] * wx[None, :]
                    acc[:, y0 * s : y0 * s + len(wy), x0 * s : x0 * s + len(wx)] += tile_out[:, : len(wy), : len(wx)] * weight
                if on_tiles is not None:
                    on_tiles(r * len(plan.xs) + start + len(xs), len(plan.ys) * len(plan.xs))
        acc /= (row_sum[:, None] * col_sum[None, :]).clamp_min_(1e-12)
        if out_dtype == np.float32:
            return acc.permute(1, 2, 0).cpu().numpy()
        peak = np.iinfo(out_dtype).max
        quantised = acc.clamp_(0, 1).mul_(peak).add_(0.5).floor_()
        quantised = quantised.to(torch.uint8 if out_dtype == np.uint8 else torch.int32).permute(1, 2, 0).contiguous()
        return quantised.cpu().numpy().astype(out_dtype, copy=False)
