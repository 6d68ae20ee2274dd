"""Does bf16 cost a shipped model accuracy? PSNR-Y by the paper protocol with the forward pass in
fp32 and in bf16 autocast (CPU autocast: the same bf16 rounding of convolutions as on a GPU), and
how far apart the two outputs are, in 8-bit levels.

    python benchmarks/bf16_forward.py [--model models/pixel_x4.onnx] [--data ../shared/data]

The shipped models trained in bf16-mixed; if bf16 rounding were near their error, it could be what
stopped pixel x4's validation PSNR from rising (train/README.md).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from sr_tool.evaluate import load_pairs
from sr_tool.export import model_from_onnx
from sr_tool.metrics import psnr_y, quantise_8bit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/pixel_x4.onnx")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--sets", nargs="+", default=["Set5", "Set14"])
    args = parser.parse_args()
    model = model_from_onnx(args.model).eval()
    scale = model.config.scale
    print(f"{args.model}, x{scale}: PSNR-Y (dB) with the forward pass in fp32 and in bf16 autocast")
    print(f"{'set':<8} {'fp32':>7} {'bf16':>7} {'mean |diff|':>12} {'max |diff|':>11}  (levels)")
    for name in args.sets:
        pairs = load_pairs(f"{args.data}/{name}", scale)
        psnr = {"fp32": [], "bf16": []}
        diffs = []
        for pair in pairs:
            out = {precision: _upscale(model, pair.lr.pixels, precision == "bf16") for precision in psnr}
            for precision, sr in out.items():
                psnr[precision].append(float(psnr_y(quantise_8bit(sr), pair.hr, scale)))
            diffs.append(((out["fp32"] - out["bf16"]).abs() * 255).flatten())
        diff, fp32, bf16 = torch.cat(diffs), np.mean(psnr["fp32"]), np.mean(psnr["bf16"])
        print(f"{name:<8} {fp32:>7.3f} {bf16:>7.3f} {diff.mean():>12.3f} {diff.max():>11.2f}")


def _upscale(model, lr: torch.Tensor, bf16: bool) -> torch.Tensor:
    gray = lr.shape[1] == 1  # through the RGB model as three equal channels, as srtool does
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        sr = model(lr.expand(-1, 3, -1, -1) if gray else lr).float().clamp(0, 1)
    return sr.mean(1, keepdim=True) if gray else sr

if __name__ == "__main__":
    main()
