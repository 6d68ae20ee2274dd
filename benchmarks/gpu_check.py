"""GPU check for the torch engine: CUDA output against CPU output, and megapixels/s in fp32 and fp16.

    python benchmarks/gpu_check.py [--model models/pixel_x4.onnx] [--size 512]

Prepared for a session with a GPU machine (onnxruntime-gpu is too large to carry there, so this
checks the PyTorch engine, which runs the same ONNX file's weights). Without CUDA it says so and
exits 1 after checking the CPU path, so it can be tried anywhere first.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sr_tool.engine import TorchEngine
from sr_tool.tiling import TiledRunner


def rate(engine, image: np.ndarray, tile: int, repeats: int = 5) -> float:
    runner = TiledRunner(engine.run_batch, engine.scale, tile=tile, batch_size=4)
    runner(image)  # warm-up (cuDNN autotuning, allocator)
    if engine.on_gpu:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        runner(image)
    if engine.on_gpu:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / repeats
    return image.shape[0] * image.shape[1] * engine.scale**2 / 1e6 / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path(__file__).resolve().parents[1] / "models" / "pixel_x4.onnx")
    parser.add_argument("--size", type=int, default=512, help="input side for the speed runs")
    args = parser.parse_args()
    image = np.random.default_rng(0).random((96, 128, 3), dtype=np.float32)
    cpu = TorchEngine(args.model, "cpu")
    reference = cpu.run_batch(np.ascontiguousarray(image.transpose(2, 0, 1))[None])
    print(f"model {args.model.name} x{cpu.scale}; torch {torch.__version__}")
    if not torch.cuda.is_available():
        print("no CUDA device: only the CPU path was checked")
        return 1
    print(f"card: {torch.cuda.get_device_name(0)}")
    big = np.random.default_rng(1).random((args.size, args.size, 3), dtype=np.float32)
    for fp16 in (False, True):
        gpu = TorchEngine(args.model, "cuda", fp16=fp16)
        out = gpu.run_batch(np.ascontiguousarray(image.transpose(2, 0, 1))[None])
        diff = float(np.abs(out - reference).max())
        limit = 2e-2 if fp16 else 1e-3  # TF32/cuDNN kernels differ slightly from CPU; fp16 more
        mps = {tile: rate(gpu, big, tile) for tile in (256, 512)}
        print(f"{'fp16' if fp16 else 'fp32'}: max |cuda - cpu| = {diff:.2e} (limit {limit:.0e}) "
              + ", ".join(f"tile {t}: {v:.1f} MP/s" for t, v in mps.items()))  # fmt: skip
        if diff > limit:
            print("PARITY FAILED")
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
