"""Does bf16 cost a shipped model accuracy? PSNR-Y by the paper protocol with the forward pass in
fp32 and in bf16 autocast (CPU autocast: the same bf16 rounding of convolutions as on a GPU), and
how far apart the two outputs are, in 8-bit levels.

    python benchmarks/bf16_forward.py [--model models/pixel_x4.onnx] [--data ../shared/data]

The shipped models trained in bf16-mixed; if bf16 rounding were near their error, it could be what
stopped pixel x4's validation PSNR from rising (train/README.md).
"""

from __future__ import annotations

import argparse

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
        psnr = {"fp32": 0.0, "bf16": 0.0}
        diff_sum = diff_max = pixels = 0.0
        pairs = load_pairs(f"{args.data}/{name}", scale)
        for pair in pairs:
            lr = pair.lr.pixels.float()
            gray = lr.shape[1] == 1  # through the RGB model as three equal channels, as srtool does
            out = {}
            for precision in psnr:
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                    sr = model(lr.expand(-1, 3, -1, -1) if gray else lr).float().clamp(0, 1)
                out[precision] = sr.mean(1, keepdim=True) if gray else sr
                psnr[precision] += float(psnr_y(quantise_8bit(out[precision]), pair.hr, scale)) / len(pairs)
            diff = (out["fp32"] - out["bf16"]).abs() * 255
            diff_sum, pixels, diff_max = diff_sum + float(diff.sum()), pixels + diff.numel(), max(diff_max, float(diff.max()))
        print(f"{name:<8} {psnr['fp32']:>7.3f} {psnr['bf16']:>7.3f} {diff_sum / pixels:>12.3f} {diff_max:>11.2f}")


if __name__ == "__main__":
    main()
