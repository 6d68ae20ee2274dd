"""Inference benchmarks, measured side by side in one run; prints a table.

    python benchmarks/inference.py [--skip-rss] [--images 50] [--only engines,folder,rss]

1. ONNX Runtime (CPU) against PyTorch eager on the `srresnet` preset (random weights: speed does not
   depend on them), one 256x256 image to 1024x1024, output megapixels/s. Goal: ONNX Runtime >= PyTorch.
2. Folder throughput as a fraction of pure compute: `run_batch` on N PNG files (decode, upscale,
   encode overlapped) against the sum of upscale times on the same images already decoded.
   `srresnet-light` x4, 128x128 inputs. Goal: >= 0.9.
3. Peak RSS of `srtool upscale --model perceptual` (the shipped `srresnet` x4) on a 3000x2000 image
   (a 12000x8000 output), CPU, measured with /usr/bin/time -v. Goal: < 1.5 GB.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sr_tool.archs import build_model, preset_config
from sr_tool.batch import collect_inputs, plan_jobs, run_batch
from sr_tool.bench import bench_upscaler
from sr_tool.export import export_onnx
from sr_tool.image_io import read_image, write_image
from sr_tool.upscale import TileSettings, Upscaler

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def exported(preset: str, scale: int, folder: Path) -> Path:
    torch.manual_seed(0)
    path = folder / f"{preset}_x{scale}.onnx"
    export_onnx(build_model(preset_config(preset, scale)), path)
    return path


def natural_crops(count: int, size: int, folder: Path) -> None:
    """``count`` crops of real photos (BSD100 HR) as PNG files, or noise if the data is absent."""
    sources = sorted((DATA / "BSD100" / "HR").glob("*.jpg"))
    rng = np.random.default_rng(0)
    for i in range(count):
        if sources:
            image = read_image(sources[i % len(sources)]).pixels[..., :size, :size]
        else:
            image = torch.from_numpy(rng.random((1, 3, size, size), dtype=np.float32))
        write_image(folder / f"{i:03d}.png", image)


def engines_row(folder: Path, rows: list, rounds: int = 5) -> None:
    """Both engines warmed up, then timed alternately (one image each per round), medians compared:
    on a 2-core machine the order matters (one runtime's idle threads spin while the other works)."""
    model = exported("srresnet", 4, folder)
    upscalers = {e: Upscaler(str(model), 4, engine=e, device="cpu", tiles=TileSettings(tile=256))
                 for e in ("onnxruntime", "torch")}  # fmt: skip
    times: dict[str, list[float]] = {e: [] for e in upscalers}
    for _ in range(rounds):
        for engine, up in upscalers.items():
            times[engine].append(bench_upscaler(up, width=256, height=256, repeats=1)[0])
    rates = {}
    for engine, values in times.items():
        seconds = sorted(values)[len(values) // 2]
        rates[engine] = 1024 * 1024 / 1e6 / seconds
        rows.append((f"srresnet x4 256->1024, {engine}", f"{rates[engine]:.3f} MP/s", f"{seconds:.2f} s/image, median of {rounds}"))
    rows.append(("  ONNX Runtime / PyTorch eager", f"{rates['onnxruntime'] / rates['torch']:.2f}x", "goal >= 1.0"))


def folder_row(folder: Path, count: int, rows: list) -> None:
    model = exported("srresnet-light", 4, folder)
    images = folder / "images"
    images.mkdir()
    natural_crops(count, 128, images)
    up = Upscaler(str(model), 4, device="cpu")
    decoded = [read_image(p) for p in sorted(images.glob("*.png"))]
    up.upscale(decoded[0])  # warm-up
    start = time.perf_counter()
    for image in decoded:
        up.upscale(image)
    compute = time.perf_counter() - start
    jobs = plan_jobs(collect_inputs([str(images)]).files, folder / "out", suffix="_x4")
    result = run_batch(jobs, [up])
    assert len(result.done) == count, result.failed
    rows.append((f"folder of {count} PNGs 128->512, pure compute", f"{compute:.2f} s", ""))
    rows.append((f"folder of {count} PNGs 128->512, run_batch", f"{result.seconds:.2f} s", ""))
    rows.append(("  throughput / pure compute", f"{compute / result.seconds:.2f}", "goal >= 0.9"))


def rss_row(folder: Path, rows: list) -> None:
    model = "perceptual"  # what `srtool upscale` runs by default: the shipped srresnet x4
    source = folder / "big.png"
    photo = sorted((DATA / "BSD100" / "HR").glob("*.jpg"))
    if photo:  # a real photo, enlarged to 3000x2000 so the content is natural
        from sr_tool.resize import imresize

        base = read_image(photo[0]).pixels
        write_image(source, imresize(base, size=(2000, 3000)).clamp(0, 1))
    else:
        write_image(source, torch.rand(1, 3, 2000, 3000))
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "sr_tool", "upscale", str(source), "-x", "4",
           "--model", model, "-o", str(folder / "big_x4.jpg"), "--device", "cpu", "-q"]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    rows.append(("3000x2000 x4 -> 12000x8000 JPEG (shipped perceptual), peak RSS", f"{kb / 1024 / 1024:.2f} GB", f"{seconds:.0f} s; goal < 1.5 GB"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--only", default="engines,folder,rss", help="comma-separated sections to run")
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, fn in (("engines", engines_row), ("folder", folder_row), ("rss", rss_row)):
            if (name == "rss" and args.skip_rss) or name not in args.only.split(","):
                continue
            sub = tmp / name
            sub.mkdir()
            if name == "folder":
                fn(sub, args.images, rows)
            else:
                fn(sub, rows)
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  {'value':>12}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>12}  {note}")
    print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}")


if __name__ == "__main__":
    main()
