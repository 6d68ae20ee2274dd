"""Seamless tiled inference with bounded memory: :class:`TiledRunner`.

An image is cut into tiles of one constant shape (the last row and column of tiles are shifted back
inside the image rather than padded), so an accelerator sees one input shape for all images larger
than a tile. An image smaller than a tile runs whole: padding it would change its border pixels. Tiles overlap by ``2 * pad + blend`` input
pixels. In the output, each tile's outer ``pad`` pixels on sides facing another tile are discarded
(they lack context), and the next ``blend`` pixels cross-fade linearly into the neighbour. When the
model's receptive field fits in ``pad``, the result equals whole-image inference up to float error.

Output rows are finished band by band: only one band of float32 accumulators (tile height x full
width) is alive at a time, and finished rows are written, quantised if asked, into the output array.
That is how a 12000x8000 result fits in little more than its own 8-bit size.

The runner is engine-agnostic: ``run_batch`` maps a float32 NxCxhxw array to NxCx(sh)x(sw).
Out-of-memory errors halve the tile size and retry the image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sr_tool.image_io import unit_float

BatchFn = Callable[[np.ndarray], np.ndarray]


class OutOfMemory(RuntimeError):
    """Raised by an engine when a batch does not fit; the runner retries with smaller tiles."""


def is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, (OutOfMemory, MemoryError)) or "out of memory" in text or "failed to allocate" in text


@dataclass(frozen=True)
class TilePlan:
    tile_h: int
    tile_w: int
    ys: tuple[int, ...]  # top of each tile row, in input pixels
    xs: tuple[int, ...]


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> TilePlan:
    """Tile positions covering ``height x width`` with tiles of at most ``tile`` px, >= ``overlap`` apart."""
    if tile <= overlap:
        raise ValueError(f"tile ({tile}) must be larger than the overlap ({overlap})")

    def axis(n: int) -> tuple[int, tuple[int, ...]]:
        if n <= tile:  # one tile of the image's own size: padding would change the border pixels
            return n, (0,)
        step = tile - overlap
        starts = list(range(0, n - tile, step)) + [n - tile]
        return tile, tuple(starts)

    tile_h, ys = axis(height)
    tile_w, xs = axis(width)
    return TilePlan(tile_h, tile_w, ys, xs)


def _ramp(length: int, start_inner: bool, end_inner: bool, pad: int, blend: int) -> np.ndarray:
    """1-D weights of a tile: 0 over ``pad`` and a linear ramp over ``blend`` on sides facing a neighbour."""
    w = np.ones(length, dtype=np.float32)
    ramp = (np.arange(blend, dtype=np.float32) + 0.5) / blend if blend else np.zeros(0, np.float32)
    for inner, view in ((start_inner, w), (end_inner, w[::-1])):
        if inner:
            view[:pad] = 0
            view[pad : pad + blend] = ramp
    return w


TileProgress = Callable[[int, int], None]  # (tiles done, tiles in the image)


class TiledRunner:
    """Run ``run_batch`` over an image in overlapping tiles and blend them seamlessly.

    ``tile`` and the margins are in input pixels. ``batch_size`` tiles go to ``run_batch`` at once.
    """

    def __init__(self, run_batch: BatchFn, scale: int, *, tile: int = 256, pad: int = 16, blend: int = 8,
                 batch_size: int = 4, min_tile: int = 32, in_channels: int = 3):  # fmt: skip
        if pad < 0 or blend < 0:
            raise ValueError("pad and blend must be >= 0")
        self.run_batch = run_batch
        self.scale = scale
        self.tile, self.pad, self.blend = tile, pad, blend
        self.batch_size = batch_size
        self.in_channels = in_channels
        self.min_tile = max(min_tile, 2 * pad + blend + 1)

    @property
    def overlap(self) -> int:
        return 2 * self.pad + self.blend

    def __call__(self, image: np.ndarray, out_dtype=np.float32, on_tiles: TileProgress | None = None) -> np.ndarray:
        """``image``: HxWxC samples, uint8 / uint16 or float in [0, 1], converted to float32 one tile
        at a time (a 1-channel image is fed as 3 equal channels when ``in_channels`` is 3).
        Returns (sH)x(sW)xC', channel-last as image encoders want it, in ``out_dtype``: float32 as
        computed, uint8 / uint16 quantised (rounded, clamped). ``on_tiles(done, total)`` is called
        after each batch of tiles (progress on big images)."""
        while True:
            try:
                return self._run(image, out_dtype, on_tiles)
            except Exception as exc:
                if not is_out_of_memory(exc) or self.tile // 2 < self.min_tile:
                    raise
                self.tile //= 2  # and keep the smaller size for the images that follow

    def _tile(self, image: np.ndarray, y: int, x: int, th: int, tw: int) -> np.ndarray:
        tile = image[y : y + th, x : x + tw].transpose(2, 0, 1)
        tile = unit_float(tile)
        if tile.shape[0] == 1 and self.in_channels == 3:
            tile = np.repeat(tile, 3, axis=0)
        return tile

    def _run(self, image: np.ndarray, out_dtype, on_tiles: TileProgress | None) -> np.ndarray:
        h, w = image.shape[:2]
        c = None  # output channels: known after the first batch
        s = self.scale
        plan = plan_tiles(h, w, self.tile, self.overlap)
        th, tw = plan.tile_h, plan.tile_w
        col_w = [_ramp(tw * s, i > 0, i < len(plan.xs) - 1, self.pad * s, self.blend * s) for i in range(len(plan.xs))]
        # One band of accumulators, as tall as a tile row's output; it slides down the image.
        band_h = th * s
        out = acc = None
        weight = np.zeros((band_h, w * s), np.float32)
        band_top = 0
        for row, y in enumerate(plan.ys):
            top, bottom = y * s, min((y + th) * s, h * s)
            shift = top - band_top
            if shift > 0:  # rows above this tile row receive nothing more: finish them, slide the band
                self._finish(out, acc[:, :shift], weight[:shift], band_top)
                keep = band_h - shift
                # Slide up in chunks no taller than the shift: chunks never overlap their source, so
                # numpy makes no band-sized temporary copy (it does for one overlapping assignment).
                for i in range(0, keep, shift):
                    n = min(shift, keep - i)
                    acc[:, i : i + n], weight[i : i + n] = acc[:, shift + i : shift + i + n], weight[shift + i : shift + i + n]
                acc[:, keep:], weight[keep:] = 0, 0
                band_top = top
            row_w = _ramp(th * s, row > 0, row < len(plan.ys) - 1, self.pad * s, self.blend * s)[: bottom - top]
            rows = slice(0, bottom - top)
            for start in range(0, len(plan.xs), self.batch_size):
                xs = plan.xs[start : start + self.batch_size]
                batch = np.stack([self._tile(image, y, x, th, tw) for x in xs]).astype(np.float32, copy=False)
                results = self.run_batch(np.ascontiguousarray(batch))
                if out is None:
                    c = results.shape[1]
                    out = np.empty((h * s, w * s, c), dtype=out_dtype)
                    acc = np.zeros((c, band_h, w * s), np.float32)
                for x, result, cw in zip(xs, results, col_w[start : start + len(xs)]):
                    left, right = x * s, min((x + tw) * s, w * s)
                    wt = row_w[:, None] * cw[None, : right - left]
                    acc[:, rows, left:right] += result[:, : bottom - top, : right - left] * wt
                    weight[rows, left:right] += wt
                del results
                if on_tiles is not None:
                    on_tiles(row * len(plan.xs) + start + len(xs), len(plan.ys) * len(plan.xs))
        self._finish(out, acc[:, : h * s - band_top], weight[: h * s - band_top], band_top)
        return out

    def _finish(self, out: np.ndarray, acc: np.ndarray, weight: np.ndarray, top: int) -> None:
        """Normalise finished rows in place (no band-sized temporaries) and store them in ``out``."""
        np.maximum(weight, 1e-12, out=weight)  # rows are finished: their weights are not needed again
        np.divide(acc, weight[None], out=acc)
        if out.dtype != np.float32:
            peak = np.iinfo(out.dtype).max
            np.clip(acc, 0, 1, out=acc)
            acc *= peak
            acc += 0.5
            np.floor(acc, out=acc)
        out[top : top + acc.shape[1]] = acc.transpose(1, 2, 0)  # casts to out's dtype
