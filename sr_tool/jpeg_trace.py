"""Traces of an earlier JPEG compression in decoded pixels: whether an image (a PNG, say, or a JPEG
re-saved at a higher quality) went through JPEG on its way here, and at what quality.

JPEG rounds each 8x8 block's DCT coefficients to multiples of a step (its quantisation table), so
the coefficients of decoded pixels, recomputed on the same block grid, still sit at multiples of
those steps, up to the decoder's rounding (about 0.4 levels). A photo that was never compressed has
smoothly spread coefficients. The test follows Fan & de Queiroz (2003, "Identification of bitmap
compression history"):

1. The block grid: on it most high-frequency coefficients are exactly zero (quantised away), while
   blocks at the other 63 offsets straddle block edges. The offset with the most zeros wins.
2. For a dozen low-frequency coefficients, the step at whose multiples the values cluster most tightly:
   the mean of cos(2 pi c / step) over values outside the zero bin is near 1 there, near 0 for
   smoothly spread values.
3. The IJG quality (libjpeg's, Pillow's, most tools') whose luminance table is nearest those steps.

Qualities above about 92 leave steps of 1 or 2, too close to the rounding to tell: not reported.
Resizing or blurring after the compression moves the grid: not reported either (nor do its blocks
show much then). Pure numpy; no file access.
"""

from __future__ import annotations

import math

import numpy as np

from sr_tool.image_io import IJG_LUMINANCE_TABLES

#: The coefficients whose steps are read, (row, column) in the 8x8 block: the lowest frequencies
#: after DC, which are rarely quantised to zero (DC is left out: flat areas put it on a grid of 8 by
#: themselves).
STEP_POSITIONS = ((0, 1), (1, 0), (1, 1), (0, 2), (2, 0), (1, 2), (2, 1), (2, 2), (0, 3), (3, 0), (1, 3), (3, 1))
#: A trace needs this many positions with a step, and an IJG table that fits them within a mean
#: absolute difference, relative to the steps' mean, of ...
MIN_STEPS = 5
#: ... this where all but a few positions have a step (other encoders' tables fit within 0.14) ...
MAX_TABLE_MISFIT = 0.2
MANY_STEPS = 9
#: ... and this where fewer do: libjpeg's own tables fit exactly, while a chart or icon (flat
#: colours, anti-aliased edges) can show a handful of chance steps that fit loosely.
MAX_TABLE_MISFIT_FEW_STEPS = 0.05
#: The grid is searched on this many evenly spread 16-row bands of the image, and the steps read on
#: up to this many (a 12-megapixel photo takes about 0.5 s).
SEARCH_BANDS, STEP_BANDS = 12, 64
LARGEST_STEP = 64
#: A step is read where the clustering score beats this, and chance by a wide margin.
MIN_CLUSTERING = 0.3
MIN_VALUES = 30

_IJG_TABLES = IJG_LUMINANCE_TABLES.reshape(-1, 8, 8)  # [q - 1, u, v]: quality q


def dct_matrix() -> np.ndarray:
    """Orthonormal 8-point DCT-II, as JPEG uses it: rows are frequencies."""
    n = np.arange(8)
    m = np.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m


#: The 2-D DCT of a flattened 8x8 block as one 64x64 matrix: coefficients = blocks (Nx64) @ this,
#: coefficient (u, v) in column 8u + v. One matrix product for all blocks is far faster than 8x8 ones.
_DCT_2D = np.kron(dct_matrix(), dct_matrix()).T
_HIGH_FREQUENCIES = (np.add.outer(np.arange(8), np.arange(8)) >= 7).ravel()


def past_jpeg_quality(array: np.ndarray) -> int | None:
    """The IJG quality (1..100) of a JPEG compression these pixels went through on an 8x8 grid, or None
    where they show no such trace. After several on one grid the heaviest shows: a JPEG re-saved at
    a higher quality reads as its first.

    ``array``: HxW or HxWxC (C = 1 gray, 3 RGB; more are ignored), uint8, uint16 (8-bit content scaled
    by 257, as 16-bit files made from 8-bit ones are) or float in [0, 1]. Colour is read as JPEG's luma.
    """
    height, width = array.shape[:2]
    if height < 16 or width < 16:
        return None
    search = _Bands(array, _band_starts(height, SEARCH_BANDS))
    high = _DCT_2D[:, _HIGH_FREQUENCIES]
    zeros = np.array([[_zero_share(search.blocks(dy, dx) @ high) for dx in range(8)] for dy in range(8)])
    dy, dx = np.unravel_index(int(np.argmax(zeros)), zeros.shape)
    columns = [8 * u + v for u, v in STEP_POSITIONS]
    on_grid = _Bands(array, dy + _band_starts(height - dy, STEP_BANDS, 8), 8)  # rows of blocks on the grid
    coefficients = on_grid.blocks(0, dx) @ _DCT_2D[:, columns]
    steps = {position: step for position, values in zip(STEP_POSITIONS, coefficients.T) if (step := _step(values))}
    if len(steps) < MIN_STEPS:
        return None
    rows, cols = np.array(list(steps)).T
    found = np.array(list(steps.values()), dtype=np.float64)
    # An image turned by 90 degrees after its JPEG (EXIF orientation, an edit) has its table transposed.
    misfit = np.minimum(np.abs(_IJG_TABLES[:, rows, cols] - found).mean(axis=1),
                        np.abs(_IJG_TABLES[:, cols, rows] - found).mean(axis=1))  # fmt: skip
    tied = np.flatnonzero(misfit == misfit.min())  # qualities whose tables round to the same steps
    best = int(tied[len(tied) // 2])
    allowed = MAX_TABLE_MISFIT if len(steps) >= MANY_STEPS else MAX_TABLE_MISFIT_FEW_STEPS
    return best + 1 if misfit[best] <= allowed * found.mean() else None


def _eight_bit_levels(array: np.ndarray) -> np.ndarray:
    """``array`` (as :func:`past_jpeg_quality` takes it) as HxWxC float32 in 0..255 levels, C 1 or 3."""
    if array.ndim == 2:
        array = array[:, :, None]
    array = array[:, :, :3] if array.shape[2] >= 3 else array[:, :, :1]
    if array.dtype == np.uint8:
        return array.astype(np.float32)
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 257
    return array.astype(np.float32) * 255


def _band_starts(height: int, count: int, rows: int = 16) -> np.ndarray:
    """Row starts, multiples of 8, of up to ``count`` evenly spread bands of ``rows`` rows (in bands of
    16, any grid offset finds a row of whole blocks)."""
    bands = (height - rows) // 8 + 1
    return 8 * np.unique(np.linspace(0, bands - 1, min(bands, count)).round().astype(int))


class _Bands:
    """Bands of ``band_height`` rows of an image's luma, starting at ``starts``, from which the 8x8
    blocks at a grid offset are cut (one row of blocks per band)."""

    def __init__(self, array: np.ndarray, starts: np.ndarray, band_height: int = 16):
        rows = (starts[:, None] + np.arange(band_height)).ravel()
        samples = _eight_bit_levels(array[rows])  # (bands * band_height) x W x C
        # clipped samples hide the quantisation: blocks with any are left out
        self.clipped = ((samples <= 0) | (samples >= 255)).any(axis=2).reshape(len(starts), -1, samples.shape[1])
        luma = samples[..., 0] if samples.shape[2] == 1 else samples @ np.array([0.299, 0.587, 0.114], np.float32)
        self.luma = luma.astype(np.float64).reshape(self.clipped.shape) - 128  # JPEG codes samples less 128

    def blocks(self, dy: int, dx: int) -> np.ndarray:
        """The blocks whose corner is at offset (dy, dx), flattened (Nx64); blocks with clipped samples
        or no variation say nothing about steps and are left out."""
        bands, _, width = self.luma.shape
        across = (width - dx) // 8

        def cut(a: np.ndarray) -> np.ndarray:
            return a[:, dy : dy + 8, dx : dx + 8 * across].reshape(bands, 8, across, 8).transpose(0, 2, 1, 3).reshape(-1, 64)

        blocks = cut(self.luma)
        informative = ~cut(self.clipped).any(axis=1) & (np.ptp(blocks, axis=1) > 0)
        return blocks[informative]


def _zero_share(coefficients: np.ndarray) -> float:
    """The share of ``coefficients`` within half a level of zero."""
    return float((np.abs(coefficients) < 0.5).mean()) if coefficients.size else 0.0


def _step(values: np.ndarray) -> int | None:
    """The step (2..LARGEST_STEP) at whose multiples ``values`` cluster most tightly, or None where
    none stands out from chance. Values in each step's zero bin are left out: zeros are multiples of
    every step. The true step beats its neighbours (their multiples drift off the values) and its
    divisors (the decoder's rounding is a larger share of a smaller step)."""
    found, best = None, 0.0
    for step in range(2, LARGEST_STEP + 1):
        outside = values[np.abs(values) >= 0.5 * step]
        if outside.size < MIN_VALUES:
            break
        clustering = np.cos(2 * np.pi * outside / step).mean()
        if clustering > max(MIN_CLUSTERING, 5 / math.sqrt(outside.size), best):  # 5 sigma above chance
            found, best = step, clustering
    return found
