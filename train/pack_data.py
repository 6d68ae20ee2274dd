"""Pack image folders as lossless WebP, checked pixel for pixel, to carry training data to a remote
GPU machine (T91 + BSD200: 60 MB of PNG become about 41 MB).

    python train/pack_data.py ../shared/data/train gpu_pack/train
    python train/pack_data.py ../shared/data/Set5/HR gpu_pack/val/Set5

The folder structure is kept; srtool trains on .webp files as on .png. 8-bit images only (WebP has
no 16-bit samples): anything else is refused rather than silently changed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from sr_tool.data import find_images
from sr_tool.image_io import read_image, write_image


def pack(source: Path, dest: Path) -> tuple[int, int, int]:
    """Returns (images, bytes before, bytes after)."""
    files = find_images([source])
    before = after = 0
    for path in files:
        image = read_image(path)
        if image.array.dtype != np.uint8:
            raise SystemExit(f"{path}: {image.array.dtype} samples; WebP holds 8-bit only")
        target = dest / path.relative_to(source).with_suffix(".webp")
        target.parent.mkdir(parents=True, exist_ok=True)
        write_image(target, image.array, alpha=image.alpha_array, quality=100)
        back, original = read_image(target).array, image.array
        if original.shape[2] == 1:  # WebP decodes gray as RGB; srtool reads gray as RGB too
            original = np.repeat(original, 3, axis=2)
        if back.shape != original.shape or not np.array_equal(back, original):
            raise SystemExit(f"{path}: the WebP copy differs from the original")
        before, after = before + path.stat().st_size, after + target.stat().st_size
    return len(files), before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    args = parser.parse_args()
    n, before, after = pack(args.source, args.dest)
    print(f"{n} images: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB lossless WebP in {args.dest}", file=sys.stderr)


if __name__ == "__main__":
    main()
