"""Baseline JPEG compression as tensor operations: batched, on any device, per-image quality.

Input and output: Bx3xHxW float RGB in [0, 1]; ``quality``: B integers in 1..100 (IJG scale, as
Pillow's ``quality=``). What it reproduces of a real encoder/decoder pair (libjpeg as Pillow uses it):

- 8-bit input, JFIF full-range YCbCr, 4:2:0 chroma (2x2 averages), edges replicated to whole MCUs;
- the IJG standard quantisation tables scaled by quality, 8x8 DCT, rounding to the table;
- decoding with "fancy" (triangle) chroma upsampling and 8-bit output.

Entropy coding is lossless, so it is left out. What differs from libjpeg is integer arithmetic in its
DCT and colour conversion: a level here and there (``benchmarks/jpeg_vs_pillow.py`` measures it).
Rounding passes gradients straight through, so the module is differentiable where that is wanted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sr_tool.jpeg_trace import dct_matrix

# ITU T.81 Annex K: the example tables that libjpeg scales by quality.
_LUMA_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61), (12, 12, 14, 19, 26, 58, 60, 55), (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62), (18, 22, 37, 56, 68, 109, 103, 77), (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101), (72, 92, 95, 98, 112, 100, 103, 99),
)  # fmt: skip
_CHROMA_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99), (18, 21, 26, 66, 99, 99, 99, 99), (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99), *((99,) * 8,) * 4,
)  # fmt: skip


def quantisation_tables(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Luma and chroma tables (Bx8x8) for IJG ``quality`` values (B integers, 1..100), as libjpeg
    makes them for baseline files: scaled, rounded, clamped to 1..255."""
    q = quality.to(torch.float64).clamp(1, 100)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q)[:, None, None]
    tables = []
    for base in (_LUMA_TABLE, _CHROMA_TABLE):
        base = torch.tensor(base, dtype=torch.float64, device=quality.device)
        tables.append(torch.floor((base * scale + 50) / 100).clamp(1, 255).float())
    return tables[0], tables[1]


def _dct_matrix(device) -> torch.Tensor:
    """Orthonormal 8-point DCT-II (:func:`sr_tool.jpeg_trace.dct_matrix`) as a tensor: rows are frequencies."""
    return torch.from_numpy(dct_matrix()).float().to(device)


def _round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()  # straight-through: rounds, yet passes gradients


def _blocks_round_trip(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Quantise the 8x8 DCT of a Bx1xHxW plane (0..255, H and W multiples of 8) with Bx8x8 tables."""
    b, _, h, w = plane.shape
    d = _dct_matrix(plane.device)
    blocks = (plane - 128).reshape(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)
    coeffs = d @ blocks @ d.T
    table = table[:, None, None]
    coeffs = _round(coeffs / table) * table
    blocks = d.T @ coeffs @ d
    return blocks.permute(0, 1, 3, 2, 4).reshape(b, 1, h, w) + 128


def _upsample_chroma(plane: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """libjpeg's fancy h2v2 upsampling: a 3/4-1/4 triangle filter, edges replicated."""
    up = F.interpolate(plane, scale_factor=2, mode="bilinear", align_corners=False)
    return up[..., : size[0], : size[1]]


def jpeg(images: torch.Tensor, quality: torch.Tensor | int) -> torch.Tensor:
    """``images`` (Bx3xHxW, [0, 1]) after JPEG compression at ``quality`` (int or B ints, 1..100)."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"jpeg takes Bx3xHxW RGB, got shape {tuple(images.shape)}")
    b, _, h, w = images.shape
    quality = torch.as_tensor(quality, device=images.device).expand(b)  # an int, or one per image
    luma_table, chroma_table = quantisation_tables(quality)
    rgb = _round(images.float().clamp(0, 1) * 255)
    # Whole 16x16 MCUs, edges replicated, as the encoder pads.
    pad_h, pad_w = -h % 16, -w % 16
    rgb = F.pad(rgb, (0, pad_w, 0, pad_h), mode="replicate")
    r, g, bl = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    y = 0.299 * r + 0.587 * g + 0.114 * bl
    cb = -0.168736 * r - 0.331264 * g + 0.5 * bl + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * bl + 128
    y = _round(y).clamp(0, 255)
    chroma = _round(F.avg_pool2d(torch.cat([cb, cr], 0), 2)).clamp(0, 255)
    y = _round(_blocks_round_trip(y, luma_table)).clamp(0, 255)
    chroma = _round(_blocks_round_trip(chroma, chroma_table.repeat(2, 1, 1))).clamp(0, 255)
    chroma = _upsample_chroma(chroma, y.shape[-2:])
    cb, cr = chroma[:b] - 128, chroma[b:] - 128
    out = torch.cat([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
    return (_round(out).clamp(0, 255) / 255)[..., :h, :w].to(images.dtype)
