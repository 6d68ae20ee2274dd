"""What does sr_tool.jpeg_trace read, and what does it miss?

1. BSD100's x4 LR files through Pillow JPEG at each quality (as ``srtool make-lr --jpeg Q`` makes
   them): how many it reads exactly, within 2, further off, or not at all.
2. Images that were never JPEG'd at their present size (it must read nothing): the benchmarks' clean
   LR files, the same with Gaussian noise, and lossy WebP.
3. Any folders given with ``--scan``: what it reads in each file, and the time per megapixel.

    python benchmarks/jpeg_trace.py [--data ../shared/data] [--scan FOLDER ...]
"""

from __future__ import annotations

import argparse
import io
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from sr_tool.image_io import jpeg_round_trip, read_image
from sr_tool.jpeg_trace import past_jpeg_quality

QUALITIES = (20, 30, 40, 50, 60, 75, 85, 90, 92, 95)


def _webp(array: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="WEBP", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--scan", nargs="*", default=[], help="folders of images to read")
    args = parser.parse_args()
    data = Path(args.data)
    lr = [read_image(p).array for p in sorted((data / "BSD100" / "LR_bicubic" / "X4").glob("*.png"))]

    print(f"BSD100 x4 LR ({len(lr)} images) through JPEG: read exactly / within 2 / further / nothing")
    for quality in QUALITIES:
        read = [past_jpeg_quality(jpeg_round_trip(a, quality)) for a in lr]
        exact = sum(q == quality for q in read)
        near = sum(q is not None and 0 < abs(q - quality) <= 2 for q in read)
        off = sum(q is not None and abs(q - quality) > 2 for q in read)
        print(f"  quality {quality:3d}: {exact:3d} / {near:3d} / {off:3d} / {read.count(None):3d}")

    clean = [read_image(p).array for s in ("BSD100", "Set14") for p in sorted((data / s / "LR_bicubic").rglob("*.png"))]
    rng = np.random.default_rng(0)
    never = {
        "clean LR (BSD100, Set14; x2, x3, x4)": clean,
        "clean x4 LR + noise sigma 5": [np.clip(a + rng.normal(0, 5, a.shape), 0, 255).round().astype(np.uint8) for a in lr],
        "clean x4 LR + noise sigma 10": [np.clip(a + rng.normal(0, 10, a.shape), 0, 255).round().astype(np.uint8) for a in lr],
        "x4 LR as lossy WebP 75": [_webp(a, 75) for a in lr],
    }
    print("never JPEG'd at this size: images where a quality was read")
    for name, arrays in never.items():
        read = [q for q in map(past_jpeg_quality, arrays) if q is not None]
        print(f"  {name}: {len(read)} of {len(arrays)}{' ' + str(sorted(read)) if read else ''}")

    for folder in args.scan:
        files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".bmp"))
        read, seconds, megapixels = Counter(), 0.0, 0.0
        for path in files:
            array = read_image(path).array
            start = time.perf_counter()
            quality = past_jpeg_quality(array)
            seconds += time.perf_counter() - start
            megapixels += array.shape[0] * array.shape[1] / 1e6
            read[quality] += 1
            if quality is not None:
                print(f"  {path}: {quality}")
        counts = ", ".join(f"{q}: {n}" for q, n in sorted(read.items(), key=lambda kv: (kv[0] is not None, kv[0] or 0)))
        print(f"{folder}: {len(files)} files ({counts}); {seconds / max(megapixels, 1e-9):.3f} s per megapixel")


if __name__ == "__main__":
    main()
