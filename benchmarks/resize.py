"""Speed of srtool's MATLAB-compatible imresize against PyTorch's F.interpolate(bicubic, antialias).

    python benchmarks/resize.py

F.interpolate is not MATLAB-exact (a = -0.75, other border handling); it is the fastest built-in
reference for the same job. Rows: a training batch of HR crops to LR, and a photo-sized upscale.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from sr_tool.resize import imresize


def median_seconds(fn, repeats: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    cases = [
        ("16x3x96x96 -> 24x24 (x1/4, uint8 rounding)", torch.rand(16, 3, 96, 96), 0.25, True),
        ("16x3x192x192 -> 48x48 (x1/4)", torch.rand(16, 3, 192, 192), 0.25, False),
        ("1x3x500x750 -> 2000x3000 (x4)", torch.rand(1, 3, 500, 750), 4.0, False),
    ]
    print(f"{'case':<44} {'srtool ms':>10} {'F.interpolate ms':>17} {'ratio':>7}")
    for name, x, scale, rounding in cases:
        ours = median_seconds(lambda: imresize(x, scale, round_8bit=rounding))
        size = (round(x.shape[-2] * scale), round(x.shape[-1] * scale))
        ref = median_seconds(lambda: F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False))
        print(f"{name:<44} {ours * 1e3:10.2f} {ref * 1e3:17.2f} {ref / ours:6.2f}x")
    print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}")


if __name__ == "__main__":
    main()
