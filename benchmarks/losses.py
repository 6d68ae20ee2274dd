"""Forward + backward time of srtool's MS-SSIM and ST-LPIPS losses against the reference packages.

    python benchmarks/losses.py [--batch 16] [--size 96] [--repeats 5]

Batch 16x3x96x96 on CPU by default. pytorch-msssim refuses images of 160 px or less, so the MS-SSIM
rows compare on 176 px (both use 5 scales there) and list srtool alone at 96 px. The ST-LPIPS
reference needs the test extras (IPython, torchsummary): pip install -e '.[test]'.
"""

from __future__ import annotations

import argparse
import time

import torch

from sr_tool.losses.deep import DeepFeatureLoss, load_st_lpips
from sr_tool.losses.ssim import ms_ssim


def time_backward(fn, pred, target, repeats: int) -> float:
    """Median seconds of fn(pred, target).backward(), after one warm-up call."""
    times = []
    for i in range(repeats + 1):
        x = pred.clone().requires_grad_(True)
        start = time.perf_counter()
        fn(x, target).backward()
        if i:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []

    import pytorch_msssim

    big = 176
    pred, target = torch.rand(args.batch, 3, big, big), torch.rand(args.batch, 3, big, big)
    ours = time_backward(lambda a, b: 1 - ms_ssim(a, b), pred, target, args.repeats)
    ref = time_backward(lambda a, b: 1 - pytorch_msssim.ms_ssim(a, b, data_range=1.0), pred, target, args.repeats)
    rows.append((f"MS-SSIM {args.batch}x3x{big}x{big}", ours, ref, "pytorch-msssim"))
    pred, target = torch.rand(args.batch, 3, args.size, args.size), torch.rand(args.batch, 3, args.size, args.size)
    ours = time_backward(lambda a, b: 1 - ms_ssim(a, b), pred, target, args.repeats)
    rows.append((f"MS-SSIM {args.batch}x3x{args.size}x{args.size}", ours, None, "(reference refuses <= 160 px)"))

    for net in ("alex", "vgg"):
        loss = DeepFeatureLoss(load_st_lpips(net))
        ours = time_backward(loss, pred, target, args.repeats)
        try:
            from stlpips_pytorch.stlpips import LPIPS

            reference = LPIPS(net=net, variant="shift_tolerant", verbose=False).requires_grad_(False)
            ref = time_backward(lambda a, b: reference(a, b, normalize=True).mean(), pred, target, args.repeats)
        except ImportError:
            ref = None
        rows.append((f"ST-LPIPS {net} {args.batch}x3x{args.size}x{args.size}", ours, ref, "stlpips-pytorch"))

    print(f"{'loss, forward + backward':<34} {'srtool s':>9} {'reference s':>11} {'speed-up':>9}  reference")
    for name, ours, ref, ref_name in rows:
        ref_s = f"{ref:11.3f}" if ref else f"{'-':>11}"
        ratio = f"{ref / ours:8.2f}x" if ref else f"{'-':>9}"
        print(f"{name:<34} {ours:9.3f} {ref_s} {ratio}  {ref_name}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")


if __name__ == "__main__":
    main()
