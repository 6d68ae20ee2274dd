"""How close is srtool's tensor JPEG (sr_tool.jpeg, used by the training degradations) to Pillow's?

For each quality: PSNR (RGB, 8-bit) between our round trip and Pillow's of the same image, the share
of samples that agree exactly and within one level, and, for scale, what the compression itself
costs (Pillow's output against its input). Images: the BSD100 x4 LR files (the size that the
degradations compress) and the Set14 HR images.

    python benchmarks/jpeg_vs_pillow.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sr_tool.image_io import read_image, quantise
from sr_tool.jpeg import jpeg


def _pillow(rgb: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)  # Pillow's defaults: 4:2:0 below 90 too
    with Image.open(io.BytesIO(buffer.getvalue())) as img:
        return np.asarray(img.convert("RGB"))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean()
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data")
    args = parser.parse_args()
    data = Path(args.data)
    files = sorted((data / "BSD100" / "LR_bicubic" / "X4").glob("*.png")) + sorted((data / "Set14" / "HR").glob("*.png"))
    images = []
    for path in files:
        pixels = read_image(path).pixels
        images.append(quantise(pixels.expand(-1, 3, -1, -1)[0].permute(1, 2, 0).numpy(), np.uint8))
    print(f"{len(images)} images; ours against Pillow {Image.__version__}")
    print(f"{'quality':>7} {'PSNR ours-Pillow':>16} {'equal':>6} {'<=1 level':>9} {'PSNR Pillow-input':>17}")
    for quality in (30, 50, 75, 90, 95):
        psnrs, equal, near, costs = [], [], [], []
        for rgb in images:
            reference = _pillow(rgb, quality)
            x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255
            ours = quantise(jpeg(x, quality)[0].permute(1, 2, 0).numpy(), np.uint8)
            diff = np.abs(ours.astype(int) - reference.astype(int))
            psnrs.append(_psnr(ours, reference))
            equal.append((diff == 0).mean())
            near.append((diff <= 1).mean())
            costs.append(_psnr(reference, rgb))
        print(f"{quality:>7} {np.mean(psnrs):>13.2f} dB {np.mean(equal):>6.1%} {np.mean(near):>9.1%} {np.mean(costs):>14.2f} dB")


if __name__ == "__main__":
    main()
