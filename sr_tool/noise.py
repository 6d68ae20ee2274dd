"""How noisy an image is: a blind estimate of additive white noise, for choosing a denoise strength.

The estimator is Immerkær's (1996, "Fast noise variance estimation"): the image is filtered with
the difference of two Laplacians, which cancels every linear ramp and leaves white noise at 6x its
standard deviation. Edges and texture leak through that filter too, so, as in Tai & Yang (2008), the
measure is taken where the image is smoothest: it is computed per block and the quietest blocks
decide. Clean photos of textured scenes still score a few levels; noise of sigma 5 and more stands
out above that.

Pure numpy; no file access.
"""

from __future__ import annotations

import math

import numpy as np

#: Side of the square blocks, in pixels, each of which gives one estimate.
BLOCK = 16
#: The share of blocks, the quietest, whose estimates are pooled.
QUIET_SHARE = 0.1
#: Pooling the quietest tenth of pure-noise blocks reads this much below the true sigma (measured on
#: 90,000 blocks of Gaussian noise); the estimate is divided by it.
_QUIET_BIAS = 0.856
#: Blocks with more of their samples at 0 or 255 than this are not measured.
MAX_CLIPPED_SHARE = 0.1
#: Images with fewer blocks than this (smaller than about 70x70 px) read 0 (clean): their quietest
#: blocks are still textured, and thumbnails of clean photos read 5 to 20. Noise is rare at that size,
#: as downscaling averages it away. (BSD100's x4 LR files have 24 to 28 blocks, Set14's 12 to 48.)
MIN_BLOCKS = 12
#: Whole-image estimates stop improving long before phone-sized images; larger inputs are
#: measured on this many evenly spread rows of blocks (0.2 s for a 12-megapixel photo).
MAX_BLOCK_ROWS = 64


def _laplacian_difference(plane: np.ndarray) -> np.ndarray:
    """``plane`` (HxW float) filtered with [[1,-2,1],[-2,4,-2],[1,-2,1]], valid part: (H-2)x(W-2)."""
    rows = plane[:-2] - 2 * plane[1:-1] + plane[2:]  # second difference down the columns
    return rows[:, :-2] - 2 * rows[:, 1:-1] + rows[:, 2:]  # then along the rows


def block_sigmas(plane: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """One noise estimate per ``block`` x ``block`` tile of a HxW plane in 0-255 levels (1-D array).
    Tiles with more than :data:`MAX_CLIPPED_SHARE` of their samples at 0 or 255 are left out:
    clipping hides noise, so black and blown-out areas would read clean."""
    plane = np.asarray(plane, dtype=np.float32)  # no copy of a float32 band
    response = np.abs(_laplacian_difference(plane))
    h, w = (response.shape[0] // block) * block, (response.shape[1] // block) * block
    if not h or not w:
        return np.empty(0, np.float32)

    def tiles(a: np.ndarray) -> np.ndarray:
        return a[:h, :w].reshape(h // block, block, w // block, block).swapaxes(1, 2).reshape(-1, block * block)

    inner = tiles(plane[1:-1, 1:-1])  # the samples each response is centred on
    unclipped = ((inner <= 0) | (inner >= 255)).mean(axis=1) <= MAX_CLIPPED_SHARE
    return tiles(response)[unclipped].mean(axis=1) * math.sqrt(math.pi / 2) / 6


def estimate_noise_sigma(array: np.ndarray) -> float:
    """The standard deviation of additive white noise in an image, in 8-bit levels (0-255).

    ``array``: HxW or HxWxC samples, uint8, uint16 (scaled to 0-255) or float in [0, 1]. Colour images
    are measured per channel and the channels averaged. Returns 0.0 where there is too little to
    measure: images of fewer than :data:`MIN_BLOCKS` blocks, or clipped everywhere.
    """
    if array.ndim == 2:
        array = array[:, :, None]
    scale = {np.dtype(np.uint8): 1.0, np.dtype(np.uint16): 255 / 65535}.get(array.dtype, 255.0)
    band = BLOCK + 2
    if (array.shape[0] // band) * ((array.shape[1] - 2) // BLOCK) < MIN_BLOCKS:
        return 0.0
    if array.shape[0] // band > MAX_BLOCK_ROWS:  # spread the measured rows of blocks over the whole height
        starts = np.linspace(0, array.shape[0] - band, MAX_BLOCK_ROWS).astype(int)
        array = np.concatenate([array[s : s + band] for s in starts])
    estimates = []
    for c in range(array.shape[2]):
        bands = range(0, array.shape[0] - band + 1, band)
        sigmas = [block_sigmas(array[s : s + band, :, c].astype(np.float32) * scale) for s in bands]
        sigmas = np.sort(np.concatenate(sigmas)) if sigmas else np.empty(0)
        if sigmas.size:
            estimates.append(float(sigmas[: max(1, round(sigmas.size * QUIET_SHARE))].mean()) / _QUIET_BIAS)
    return float(np.mean(estimates)) if estimates else 0.0
