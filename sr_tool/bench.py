"""Throughput of upscalers: output megapixels per second on a synthetic image."""

from __future__ import annotations

import time

import numpy as np

from sr_tool.image_io import ImageInfo, LoadedImage


def bench_upscaler(upscaler, *, width: int = 256, height: int = 256, repeats: int = 3) -> tuple[float, float]:
    """(median seconds per image, output MP/s), after one warm-up run."""
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = LoadedImage(pixels, None, ImageInfo())
    upscaler.upscale(image)  # warm-up: sessions, allocators, algorithm search
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        upscaler.upscale(image)
        times.append(time.perf_counter() - start)
    median = sorted(times)[len(times) // 2]
    out_w, out_h = upscaler.target_size(width, height)
    return median, out_w * out_h / 1e6 / median
