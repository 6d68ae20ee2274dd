"""MATLAB-compatible bicubic ``imresize`` in PyTorch.

Reproduces MATLAB's ``imresize(img, scale, 'bicubic')``: Keys cubic kernel (a = -0.5), antialiased when
downscaling (the kernel is stretched by 1/scale), symmetric (mirror) borders, and the dimension with
the smaller scale factor resized first. Each 1-D pass is a matrix product with a precomputed weight
matrix, so it is batched, differentiable and runs on any device. With ``round_8bit=True`` the result
is rounded to 8-bit levels (half away from zero) after each pass, as MATLAB does for uint8 images;
this reproduces the MATLAB-made LR files of the SR benchmarks.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

import torch


def imresize(
    images: torch.Tensor,
    scale: float | None = None,
    *,
    size: tuple[int, int] | None = None,
    round_8bit: bool = False,
    antialias: bool = True,
) -> torch.Tensor:
    """Resize ``images`` (..., H, W), float values in [0, 1], by ``scale`` or to ``size`` = (H, W).

    With ``scale``, the output is ceil(H * scale) x ceil(W * scale), as in MATLAB. Values are not
    clamped, except in ``round_8bit`` mode, which also clamps to [0, 1] as a uint8 cast does.
    """
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale and size")
    if not images.is_floating_point():
        raise TypeError(f"imresize takes a float tensor in [0, 1], got {images.dtype}")
    in_h, in_w = images.shape[-2:]
    if size is None:
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        scale_h = scale_w = float(scale)
        out_h, out_w = math.ceil(in_h * scale), math.ceil(in_w * scale)
    else:
        out_h, out_w = size
        if out_h <= 0 or out_w <= 0:
            raise ValueError(f"size must be positive, got {size}")
        scale_h, scale_w = out_h / in_h, out_w / in_w

    passes = [(-2, scale_h, in_h, out_h), (-1, scale_w, in_w, out_w)]
    passes.sort(key=lambda p: p[1])  # MATLAB resizes along the smaller scale first (stable for ties)
    out = images
    for dim, s, n_in, n_out in passes:
        if n_in == n_out and s == 1:
            continue
        out = _resize_dim(out, dim, n_in, n_out, s, antialias)
        if round_8bit:
            out = torch.floor(out.clamp(0, 1) * 255 + 0.5) / 255  # values are >= 0: half away from zero
    return out


def cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


#: A pass multiplies by a dense (n_out x n_in) weight matrix while it has at most this many entries
#: (fastest for training crops); larger passes gather their few taps instead, whose cost grows with
#: n_out alone (a 750 -> 3000 pass: 6 taps instead of 750 per output pixel). benchmarks/resize.py
DENSE_MAX = 1 << 18


def _resize_dim(x: torch.Tensor, dim: int, n_in: int, n_out: int, scale: float, antialias: bool) -> torch.Tensor:
    if n_in * n_out <= DENSE_MAX:
        weights = _dense_weights(n_in, n_out, scale, antialias, x.device, x.dtype)
        return torch.matmul(weights, x) if dim == -2 else torch.matmul(x, weights.t())
    # Sparse (CSR) weights times the image with the resized axis first: optimised SpMM kernels.
    weights = _sparse_weights(n_in, n_out, scale, antialias, x.device, x.dtype)
    moved = x.movedim(dim, 0)
    out = torch.sparse.mm(weights, moved.reshape(n_in, -1))
    return out.reshape(n_out, *moved.shape[1:]).movedim(0, dim)


@lru_cache(maxsize=256)
def _contributions(n_in: int, n_out: int, scale: float, antialias: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """MATLAB's ``contributions``: for each output pixel, input columns (0-based) and float64 weights."""
    kernel_width = 4.0
    stretch = antialias and scale < 1
    if stretch:
        kernel_width /= scale
    x = torch.arange(1, n_out + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centre in input coordinates (1-based)
    left = torch.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    distance = u[:, None] - indices
    weights = scale * cubic(scale * distance) if stretch else cubic(distance)
    weights = weights / weights.sum(dim=1, keepdim=True)
    # Symmetric padding: index i outside 1..n_in mirrors back in, with the edge pixel repeated.
    mirror = torch.cat([torch.arange(n_in), torch.arange(n_in - 1, -1, -1)])
    columns = mirror[(indices.long() - 1) % (2 * n_in)]
    return columns, weights


@lru_cache(maxsize=256)
def _dense_weights(n_in: int, n_out: int, scale: float, antialias: bool, device, dtype) -> torch.Tensor:
    columns, weights = _contributions(n_in, n_out, scale, antialias)
    matrix = torch.zeros(n_out, n_in, dtype=torch.float64).scatter_add_(1, columns, weights)
    return matrix.to(device=device, dtype=dtype)


@lru_cache(maxsize=64)
def _sparse_weights(n_in: int, n_out: int, scale: float, antialias: bool, device, dtype) -> torch.Tensor:
    columns, weights = _contributions(n_in, n_out, scale, antialias)
    rows = torch.arange(n_out).repeat_interleave(columns.shape[1])
    indices = torch.stack([rows, columns.flatten()])
    with warnings.catch_warnings():  # "CSR support is in beta": the SpMM used here is long stable
        warnings.simplefilter("ignore", UserWarning)
        coo = torch.sparse_coo_tensor(indices, weights.flatten(), (n_out, n_in), check_invariants=True)
        return coo.coalesce().to(dtype).to_sparse_csr().to(device)  # coalesce sums mirrored duplicates
