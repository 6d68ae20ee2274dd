"""Quick check of a training run against the crosshatch: the artifact measure, PSNR-Y and ST-LPIPS
(VGG) on the ten BSD100 crops of ``tests/data/crosshatch_x4`` (centre 320 px of the first ten images).

    python train/artifact_check.py runs/perc_x4/checkpoints/last.ckpt pixel perceptual -x 4

Each model is a built-in name, an .onnx file, or a training checkpoint (.ckpt, exported to a temporary
ONNX file first). A model upscales each LR crop with 8 LR pixels of context; scores are on the 320 px
HR crop. ``old`` stands for the crosshatch outputs kept in that folder (x4 only). The artifact column
is the median over the crops of ``metrics.spectral_excess`` (over 0.5 flags a painted pattern).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from sr_tool.evaluate import upscale_region
from sr_tool.image_io import read_image, to_tensor
from sr_tool.losses.deep import load_st_lpips
from sr_tool.metrics import ARTIFACT_THRESHOLD, deep_distance, psnr_y, spectral_excess
from sr_tool.upscale import Upscaler

REPO = Path(__file__).resolve().parents[1]
CROPS = sorted((REPO / "tests" / "data" / "crosshatch_x4").glob("*.png"))
SIDE, CONTEXT = 320, 8


def crop_outputs(model: str, scale: int, data: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(SR crop, HR crop) for each of the ten crops."""
    up = None if model == "old" else Upscaler(model, scale, device="cpu")
    pairs = []
    for path in CROPS:
        stem, x, y = path.stem.split("_")
        x, y = int(x[1:]), int(y[1:])
        hr = read_image(data / "BSD100" / "HR" / f"{stem}.jpg").array[y : y + SIDE, x : x + SIDE]
        if up is None:
            pairs.append((read_image(path).array, hr))
            continue
        lr = read_image(data / "BSD100" / "LR_bicubic" / f"X{scale}" / f"{stem}x{scale}.png")
        pairs.append((upscale_region(up, lr, x, y, SIDE, CONTEXT), hr))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="built-in name, .onnx, .ckpt, or old")
    parser.add_argument("-x", "--scale", type=int, default=4)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    vgg = load_st_lpips("vgg")
    print(f"{'model':<44} {'artifact':>8} {'max':>6} {'PSNR-Y':>7} {'ST-LPIPS VGG':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            name = model
            if model.endswith(".ckpt"):
                from sr_tool.training import export_checkpoint

                name = f"{Path(model).parent.parent.name}/{Path(model).stem}"
                model = str(export_checkpoint(model, Path(tmp) / f"{len(name)}_{Path(model).stem}.onnx")[0])
            rows = []
            for sr, hr in crop_outputs(model, args.scale, args.data):
                a, b = to_tensor(sr), to_tensor(hr)
                rows.append((float(spectral_excess(a, b)), float(psnr_y(a, b, args.scale)),
                             float(deep_distance(a, b, vgg, args.scale))))  # fmt: skip
            excess, psnr, judge = np.array(rows).T
            flag = "!" if np.median(excess) > ARTIFACT_THRESHOLD else " "
            print(f"{name:<44} {np.median(excess):7.2f}{flag} {excess.max():6.2f} {psnr.mean():7.2f} {judge.mean():13.4f}",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
