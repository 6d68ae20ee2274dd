"""The quality-per-CPU-second frontier of srtool's models, measured side by side in one run.

For each shipped x4 model, each trained model given with --model, and each architecture preset:
parameters (as exported: re-parameterised branches folded), PSNR-Y on Set5 / Set14 / BSD100 x4 by
the paper protocol (trained models only; a preset alone has random weights), and CPU milliseconds
per output megapixel through ONNX Runtime. Every model is timed with the same threads on the same
input, in rounds that alternate between the models (on a small machine, the order otherwise
matters), and the median is reported.

    python benchmarks/frontier.py [--threads 2] [--model runs/rep_m_x4/model.onnx ...] [--sets Set5 Set14 BSD100]

Only srtool's own models are timed here; the README quotes other projects' numbers as published.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sr_tool.archs import PRESETS, build_model, fold, parameter_count, preset_config
from sr_tool.evaluate import evaluate, load_pairs, summarise
from sr_tool.export import export_onnx, model_from_onnx
from sr_tool.upscale import Upscaler, list_builtin_models

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SCALE = 4


def _time_rounds(sessions: dict, lr: np.ndarray, rounds: int) -> dict[str, float]:
    """Median seconds per run of each ONNX Runtime session on ``lr``, alternating between them."""
    for session in sessions.values():
        session.run(None, {session.get_inputs()[0].name: lr})  # warm-up
    times = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, {session.get_inputs()[0].name: lr})
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", action="append", default=[], help="Trained x4 ONNX model to add (repeatable).")
    parser.add_argument("--sets", nargs="*", default=["Set5", "Set14", "BSD100"])
    parser.add_argument("--size", type=int, default=128, help="LR side for timing (output is 4x).")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    models: dict[str, Path] = {}
    trained: set[str] = set()
    for entry in list_builtin_models():
        if entry["scale"] == SCALE:
            models[entry["name"]] = entry["path"]
            trained.add(entry["name"])
    for path in args.model:
        models[Path(path).stem] = Path(path)
        trained.add(Path(path).stem)
    tmp = Path(tempfile.mkdtemp(prefix="srtool-frontier-"))
    for preset in PRESETS:
        if preset.endswith("-tiny"):
            continue
        torch.manual_seed(0)
        path = tmp / f"{preset}.onnx"
        export_onnx(build_model(preset_config(preset, SCALE)), path)
        models[f"preset {preset}"] = path

    params = {name: parameter_count(fold(model_from_onnx(path))) for name, path in models.items()}
    lr = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)
    seconds = _time_rounds({name: _session(path, args.threads) for name, path in models.items()}, lr, args.rounds)
    megapixels = (args.size * SCALE) ** 2 / 1e6

    psnr: dict[str, dict[str, float]] = {name: {} for name in models}
    for data_set in args.sets:
        folder = DATA / data_set
        if not folder.is_dir():
            continue
        pairs = load_pairs(folder, SCALE)
        upscalers = {name: Upscaler(str(models[name]), SCALE, device="cpu", threads=args.threads) for name in trained}
        rows, _ = evaluate(upscalers, pairs, SCALE, metrics=["psnr_y"])
        for name, summary in summarise(rows).items():
            psnr[name][data_set] = summary["psnr_y"]

    print(f"x{SCALE}, ONNX Runtime CPU, {args.threads} threads, {args.size}x{args.size} -> "
          f"{args.size * SCALE}x{args.size * SCALE}, median of {args.rounds} alternating rounds; PSNR-Y by the paper protocol")  # fmt: skip
    header = f"{'model':<22} {'params':>9} " + " ".join(f"{s:>7}" for s in args.sets) + f" {'ms/MP':>8} {'vs srresnet':>11}"
    print(header)
    reference = seconds["preset srresnet"]  # the architecture of the pixel x4 that shipped first
    for name in sorted(models, key=lambda n: seconds[n]):
        quality = " ".join(f"{psnr[name][s]:7.2f}" if s in psnr[name] else f"{'-':>7}" for s in args.sets)
        ms = seconds[name] * 1000 / megapixels
        print(f"{name:<22} {params[name]:>9,} {quality} {ms:8.1f} {seconds[name] / reference:>10.2f}x")


if __name__ == "__main__":
    main()
