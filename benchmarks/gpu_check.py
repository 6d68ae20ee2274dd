"""The GPU check (issue #13): speed per model, precision and path, parity with the CPU, folder throughput.

    python benchmarks/gpu_check.py [--models models/pixel_x4.onnx,models/pixel_x2.onnx] [--images 200]
        [--image-size 1920x1080] [--tile 512] [--compile] [--json report.json]

On whatever card the machine has (named in the report), for each model:
- compute: the model alone on a batch of tiles already on the device, output MP/s;
- paths: one in-memory 1920x1080 image through srtool's Upscaler, output MP/s, for torch fp32 / fp16 /
  bf16 with host tiling (numpy) and device tiling, ONNX Runtime CUDA (IO binding) and TensorRT where
  their providers load (else the reason);
- parity: each path's 8-bit output against the CPU's (torch, fp32), max level difference;
- folder: ``--images`` generated JPEGs, files in to PNG files out through ``run_batch`` with the
  fastest device path, output MP/s and the share of time inference waited for decoding/encoding.

Without a GPU it runs the CPU paths (tiny sizes make it a quick end-to-end test: tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sr_tool.batch import Job, run_batch
from sr_tool.engine import EngineError
from sr_tool.engine import read_metadata
from sr_tool.image_io import ImageInfo, LoadedImage, write_image
from sr_tool.upscale import TileSettings, Upscaler

ROOT = Path(__file__).resolve().parents[1]


def photo_like(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random picture with fine grain (uint8 HxWx3): compresses and upscales like a photo."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((1, 3, height // 32 + 2, width // 32 + 2), dtype=np.float32))
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0]
    grain = rng.normal(0, 0.03, (3, height, width)).astype(np.float32)
    return (np.clip(smooth.numpy() + grain, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0).copy()


def synchronise() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs, after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        synchronise()
        start = time.perf_counter()
        fn()
        synchronise()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def compute_rate(up: Upscaler, tile: int, batch: int, repeats: int) -> float:
    """Output MP/s of the model alone on ``batch`` tiles already on its device."""
    engine = up.engine
    dtype = engine.dtype if engine.name == "torch" else torch.float32
    x = torch.rand(batch, 3, tile, tile, device=engine.device, dtype=dtype)
    if engine.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    seconds = timed(lambda: engine.run_tensor(x), repeats)
    return batch * tile * tile * engine.scale**2 / 1e6 / seconds


def variants(model: Path, device: str, tile: int, compile_too: bool) -> list[tuple[str, dict]]:
    """(label, Upscaler keyword arguments) of each path to measure on ``device``."""
    host, on_device = TileSettings(tile=tile, on_device=False), TileSettings(tile=tile, on_device=True)
    found = [("torch fp32, host tiling", dict(engine="torch", tiles=host)),
             ("torch fp32, device tiling", dict(engine="torch", tiles=on_device)),
             ("onnxruntime, device tiling", dict(engine="onnxruntime", tiles=on_device))]  # fmt: skip
    if device.startswith("cuda"):
        found += [("torch fp16, host tiling", dict(engine="torch", fp16=True, tiles=host)),
                  ("torch fp16, device tiling", dict(engine="torch", fp16=True, tiles=on_device)),
                  ("tensorrt fp16, device tiling", dict(engine="tensorrt", tiles=on_device))]  # fmt: skip
        if compile_too:
            found.append(("torch fp16 compiled, device tiling", dict(engine="torch", fp16=True, compile=True, tiles=on_device)))
    return found


def folder_rate(up: Upscaler, folder: Path, count: int, size: tuple[int, int]) -> dict:
    """Files in to files out: ``count`` generated JPEGs through run_batch, PNGs written."""
    inputs, outputs = folder / "in", folder / "out"
    inputs.mkdir(exist_ok=True)
    outputs.mkdir(exist_ok=True)
    base = photo_like(size[1] + 64, size[0] + 64, seed=7)
    jobs = []
    for i in range(count):  # shifted crops: every file different, generated quickly
        source = inputs / f"{i:04d}.jpg"
        if not source.exists():
            dy, dx = (i * 7) % 64, (i * 13) % 64
            write_image(source, base[dy : dy + size[1], dx : dx + size[0]], quality=92)
        jobs.append(Job(source, outputs / f"{i:04d}.png"))
    result = run_batch(jobs, [up], overwrite=True)
    decode, encode = result.idle_share
    return {"images": len(result.done), "failed": len(result.failed), "seconds": round(result.seconds, 2),
            "output_mp_per_s": round(result.megapixels / result.seconds, 2), "waited_for_decode": round(decode, 3),
            "waited_for_encode": round(encode, 3)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=f"{ROOT / 'models/pixel_x4.onnx'},{ROOT / 'models/pixel_x2.onnx'}")
    parser.add_argument("--device", default="auto", help="auto (cuda if PyTorch sees one), cpu or cuda:N")
    parser.add_argument("--image-size", default="1920x1080", help="WxH of the path and folder images")
    parser.add_argument("--images", type=int, default=200, help="files in the folder run (0: skip it)")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8, help="tiles per batch in the compute run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also torch.compile (minutes of compilation)")
    parser.add_argument("--json", type=Path, default=None, help="write the report here too")
    args = parser.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    width, height = (int(v) for v in args.image_size.lower().split("x"))
    card = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "CPU"
    report: dict = {"card": card, "device": device, "torch": torch.__version__, "image_size": [width, height],
                    "tile": args.tile, "models": {}}  # fmt: skip
    print(f"card: {card}; torch {torch.__version__}; image {width}x{height}, tile {args.tile}", flush=True)
    image = LoadedImage(photo_like(height, width, seed=1), None, ImageInfo())
    small = LoadedImage(image.array[:96, :128].copy(), None, ImageInfo())
    failed = False
    for model in [Path(m) for m in args.models.split(",") if m]:
        scale = int(read_metadata(model)["scale"])  # native: no resize after the model
        reference = Upscaler(str(model), scale, engine="torch", device="cpu").upscale(small).pixels.astype(int)
        rows = report["models"][model.name] = {}
        best = None
        for label, kwargs in variants(model, device, args.tile, args.compile):
            try:
                up = Upscaler(str(model), scale, device=device, **kwargs)
            except (EngineError, ValueError) as err:
                rows[label] = {"unavailable": str(err)}
                print(f"{model.name:<18} {label:<36} unavailable: {err}", flush=True)
                continue
            diff = int(np.abs(up.upscale(small).pixels.astype(int) - reference).max())
            limit = 1 if "fp32" in label or label.startswith("onnxruntime") else 4
            seconds = timed(lambda up=up: up.upscale(image), args.repeats)
            path = width * height * scale**2 / 1e6 / seconds
            row = {"path_mp_per_s": round(path, 2), "parity_max_levels": diff, "parity_limit": limit}
            if "device tiling" in label:
                row["compute_mp_per_s"] = round(compute_rate(up, args.tile, args.batch, args.repeats), 2)
            rows[label] = row
            failed |= diff > limit
            print(f"{model.name:<18} {label:<36} path {path:8.2f} MP/s  compute {row.get('compute_mp_per_s', '-'):>8} MP/s  "
                  f"parity {diff} level(s){' FAILED' if diff > limit else ''}", flush=True)  # fmt: skip
            if "device tiling" in label and (best is None or path > best[1]):
                best = (up, path, label)
        if args.images and best is not None:
            with tempfile.TemporaryDirectory() as tmp:
                rows["folder"] = {"path": best[2], **folder_rate(best[0], Path(tmp), args.images, (width, height))}
            print(f"{model.name:<18} folder ({best[2]}): {rows['folder']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
