"""Reproduce the published bicubic baselines: PSNR-Y / SSIM-Y of MATLAB-made LR files upscaled with
srtool's MATLAB-compatible imresize, scored with srtool's paper-protocol metrics.

    python benchmarks/bicubic_baseline.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sr_tool.image_io import read_image
from sr_tool.metrics import psnr_y, ssim_y
from sr_tool.resize import imresize

PUBLISHED = {
    ("Set5", 2): 33.66, ("Set5", 3): 30.39, ("Set5", 4): 28.42,
    ("Set14", 2): 30.24, ("Set14", 3): 27.55, ("Set14", 4): 26.00,
    ("BSD100", 2): 29.56, ("BSD100", 3): 27.21, ("BSD100", 4): 25.96,
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    print(f"{'set':<8} {'scale':>5} {'PSNR-Y':>8} {'published':>9} {'diff':>7} {'SSIM-Y':>7}")
    for (name, scale), published in PUBLISHED.items():
        psnrs, ssims = [], []
        for hr_path in sorted((args.data / name / "HR").iterdir()):
            hr = read_image(hr_path).pixels
            h, w = hr.shape[-2:]
            hr = hr[..., : h - h % scale, : w - w % scale]  # mod-crop, keeping the top-left corner
            lr = read_image(args.data / name / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}.png").pixels
            sr = imresize(lr, scale)
            psnrs.append(psnr_y(sr, hr, shave=scale).item())
            ssims.append(ssim_y(sr, hr, shave=scale).item())
        psnr, ssim = sum(psnrs) / len(psnrs), sum(ssims) / len(ssims)
        print(f"{name:<8} {scale:>5} {psnr:8.3f} {published:9.2f} {psnr - published:+7.3f} {ssim:7.4f}")


if __name__ == "__main__":
    main()
