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

Some architectures constrain their input (:class:`SizeRule`): a minimum side, sides that are a
multiple of some number, square inputs, or windowed attention partitioned from the input's origin.
The runner then keeps tiles multiples of that size and starts them on window boundaries, so a tile
sees the same windows as the whole image; :func:`fit_to_rule` pads what is left over (a small
image, the last row or column of tiles) and crops the output back.
"""

from __future__ import annotations

import math
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
class SizeRule:
    """What a model needs of its input's height and width (in input pixels)."""

    multiple_of: int = 1  # both sides a multiple of this
    minimum: int = 0  # both sides at least this
    square: bool = False  # height == width
    align: int = 1  # tiles start at multiples of this (the attention window of windowed transformers)

    def padding(self, height: int, width: int) -> tuple[int, int]:
        """(rows, columns) to add at the bottom and right so that a height x width input fits."""
        h, w = max(height, self.minimum), max(width, self.minimum)
        h, w = -(-h // self.multiple_of) * self.multiple_of, -(-w // self.multiple_of) * self.multiple_of
        if self.square:
            h = w = max(h, w)
        return h - height, w - width

    def mirror_then_repeat(self, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """The :meth:`padding` split into (rows, columns) mirrored and (rows, columns) repeated after
        them: mirroring reaches at most one pixel short of the input's size."""
        pad_h, pad_w = self.padding(height, width)
        mirror_h, mirror_w = min(pad_h, height - 1), min(pad_w, width - 1)
        return (mirror_h, mirror_w), (pad_h - mirror_h, pad_w - mirror_w)

    @property
    def tile_step(self) -> int:
        """Tile sizes and tile starts are multiples of this."""
        return math.lcm(self.multiple_of, self.align)


def fit_to_rule(run_batch: BatchFn, rule: SizeRule, scale: int) -> BatchFn:
    """``run_batch`` for inputs of any size: each batch is padded at the bottom and right to fit
    ``rule`` (mirrored, then repeated where the input is too small to mirror) and the output cropped
    back to ``scale`` times the input."""
    if rule == SizeRule():
        return run_batch

    def run(batch: np.ndarray) -> np.ndarray:
        h, w = batch.shape[-2:]
        (mirror_h, mirror_w), (repeat_h, repeat_w) = rule.mirror_then_repeat(h, w)
        if not (mirror_h or mirror_w or repeat_h or repeat_w):
            return run_batch(batch)
        padded = np.pad(batch, ((0, 0), (0, 0), (0, mirror_h), (0, mirror_w)), mode="reflect")
        padded = np.pad(padded, ((0, 0), (0, 0), (0, repeat_h), (0, repeat_w)), mode="edge")
        return run_batch(np.ascontiguousarray(padded))[..., : h * scale, : w * scale]

    return run


@dataclass(frozen=True)
class TilePlan:
    tile_h: int
    tile_w: int
    ys: tuple[int, ...]  # top of each tile row, in input pixels
    xs: tuple[int, ...]


def plan_tiles(height: int, width: int, tile: int, overlap: int, align: int = 1) -> TilePlan:
    """Tile positions covering ``height x width`` with tiles of at most ``tile`` px, overlapping by at
    least ``overlap``. Starts are multiples of ``align``: with ``align`` > 1 the last tile of a row or
    column may be cut short by the image edge instead of shifted back inside it."""
    step = (tile - overlap) // align * align
    if step <= 0:
        raise ValueError(f"tile ({tile}) must be larger than the overlap ({overlap}) by at least {align}")

    def axis(n: int) -> tuple[int, tuple[int, ...]]:
        if n <= tile:  # one tile of the image's own size: padding would change the border pixels
            return n, (0,)
        last = -(-(n - tile) // align) * align
        starts = list(range(0, last, step)) + [last]
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
Allocate = Callable[[int, int, int, np.dtype], np.ndarray]  # (height, width, channels, dtype) -> HxWxC


class TiledRunner:
    """Run ``run_batch`` over an image in overlapping tiles and blend them seamlessly.

    ``tile`` and the margins are in input pixels. ``batch_size`` tiles go to ``run_batch`` at once.
    ``size_rule``: what the model needs of its input (tile sizes and starts follow it, and inputs
    that do not fit are padded). ``allocate(height, width, channels, dtype)`` makes the output array
    (e.g. :func:`sr_tool.image_io.new_pixels`, which an encoder can take over without a copy).
    """

    def __init__(self, run_batch: BatchFn, scale: int, *, tile: int = 256, pad: int = 16, blend: int = 8,
                 batch_size: int = 4, min_tile: int = 32, in_channels: int = 3,
                 size_rule: SizeRule = SizeRule(), allocate: Allocate | None = None):  # fmt: skip
        if pad < 0 or blend < 0:
            raise ValueError("pad and blend must be >= 0")
        self.run_batch = fit_to_rule(run_batch, size_rule, scale)
        self.scale = scale
        self.size_rule = size_rule
        self.pad, self.blend = pad, blend
        self.batch_size = batch_size
        self.in_channels = in_channels
        self.allocate = allocate or _empty
        step = size_rule.tile_step
        smallest = max(min_tile, 2 * pad + blend + step, size_rule.minimum)
        self.min_tile = -(-smallest // step) * step
        self.tile = self._fit(tile)

    def _fit(self, tile: int) -> int:
        """``tile`` rounded down to the size rule's step, and no smaller than ``min_tile``."""
        step = self.size_rule.tile_step
        return max(self.min_tile, tile // step * step)

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
                self.tile = self._fit(self.tile // 2)  # and keep the smaller size for the images that follow

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
        plan = plan_tiles(h, w, self.tile, self.overlap, self.size_rule.align)
        th, tw = plan.tile_h, plan.tile_w
        col_w = [_ramp(tw * s, i > 0, i < len(plan.xs) - 1, self.pad * s, self.blend * s) for i in range(len(plan.xs))]
        # Tiles form a full grid, so the blend weight of a pixel is (row weights summed over tile
        # rows) x (column weights summed over tile columns): two vectors, not a weight plane.
        col_sum = np.zeros(w * s, np.float32)
        for x, cw in zip(plan.xs, col_w):
            col_sum[x * s : (x + tw) * s] += cw[: w * s - x * s]
        # One band of accumulators, as tall as a tile row's output; it slides down the image.
        band_h = th * s
        out = acc = None
        weight = np.zeros(band_h, np.float32)  # row weights of the band
        band_top = 0
        for row, y in enumerate(plan.ys):
            top, bottom = y * s, min((y + th) * s, h * s)
            shift = top - band_top
            if shift > 0:  # rows above this tile row receive nothing more: finish them, slide the band
                self._finish(out, acc[:, :shift], weight[:shift], col_sum, band_top)
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
            weight[rows] += row_w
            for start, xs in _batches(plan.xs, tw, w, self.batch_size):
                batch = np.stack([self._tile(image, y, x, th, tw) for x in xs]).astype(np.float32, copy=False)
                results = self.run_batch(np.ascontiguousarray(batch))
                if out is None:
                    c = results.shape[1]
                    out = self.allocate(h * s, w * s, c, out_dtype)
                    acc = np.zeros((c, band_h, w * s), np.float32)
                for x, result, cw in zip(xs, results, col_w[start : start + len(xs)]):
                    left, right = x * s, min((x + tw) * s, w * s)
                    wt = row_w[:, None] * cw[None, : right - left]
                    acc[:, rows, left:right] += result[:, : bottom - top, : right - left] * wt
                del results
                if on_tiles is not None:
                    on_tiles(row * len(plan.xs) + start + len(xs), len(plan.ys) * len(plan.xs))
        self._finish(out, acc[:, : h * s - band_top], weight[: h * s - band_top], col_sum, band_top)
        return out

    def _finish(self, out: np.ndarray, acc: np.ndarray, row_sum: np.ndarray, col_sum: np.ndarray, top: int) -> None:
        """Normalise finished rows in place (no band-sized temporaries) and store them in ``out``."""
        np.divide(acc, np.maximum(row_sum, 1e-12)[None, :, None], out=acc)
        np.divide(acc, np.maximum(col_sum, 1e-12)[None, None, :], out=acc)
        if out.dtype != np.float32:
            peak = np.iinfo(out.dtype).max
            np.clip(acc, 0, 1, out=acc)
            acc *= peak
            acc += 0.5
            np.floor(acc, out=acc)
        out[top : top + acc.shape[1]] = acc.transpose(1, 2, 0)  # casts to out's dtype


def _empty(height: int, width: int, channels: int, dtype) -> np.ndarray:
    return np.empty((height, width, channels), dtype)


def _batches(xs: tuple[int, ...], tile: int, width: int, size: int):
    """(index of the first, starts) of each batch of at most ``size`` tiles of one row; a tile cut
    short by the image edge goes in a batch of its own (a batch is one array)."""
    start = 0
    while start < len(xs):
        end = min(start + size, len(xs))
        short = [i for i in range(start, end) if xs[i] + tile > width]
        if short:
            end = max(short[0], start + 1)
        yield start, xs[start:end]
        start = end
