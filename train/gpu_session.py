"""Train srtool's models in one short session on one GPU machine.

``--plan shipped`` (default; about 8.5 minutes) trains the six shipped models from the recipes of
train/recipes/, in three stages, each model with a wall-time budget to which srtool fits its step
count (``--time-budget``), so the learning-rate schedules end in time:

    1. pixel_x4                                  (alone: the long run)
    2. pixel_x2, msssim_x4, perceptual_x4        (side by side)
    3. msssim_x2, perceptual_x2                  (side by side)

Each recipe continues from its shipped weights (its ``init``), so sessions add up; ``--init
pixel_x4=FILE`` starts a model from other weights instead. The data: ``PACK/train``, plus
``PACK/photos`` where it was carried (the free photo set of train/data, packed with
train/pack_data.py), which the rep-l recipes (pixel, msssim) train on.

``--plan frontier`` trains only the efficient family's two models (rep-l), longer: pixel_x4, then
pixel_x2, each from its shipped weights.

``--plan perceptual-gan`` trains two adversarial candidates for perceptual x4 side by side
(train/recipes/gan/: the shipped perceptual loss plus a patch discriminator at weight 0.01 and 0.05),
each from the shipped perceptual x4; no model of the plan ships until its crops were looked at.

``--plan photo`` trains photo x4 and x2 side by side (train/recipes/gpu/: the photo recipes at batch
64 on real-photo LR made on the GPU), each from its shipped weights; it ships where it beats the
shipped photo on BSD100-JPEG75, -noise10 and clean (README: "Real-photo inputs") and its crops pass.

After each model it writes ``OUT/<name>.ckpt`` (a slim checkpoint: EMA weights, config, step,
hardware, wall time, validation metrics; ~6 MB) and refreshes ``OUT/logs.tar.gz`` (every log and
``summary.json``), so a session cut short still returns what finished. Export afterwards with
``srtool export OUT/<name>.ckpt -o models/<name>.onnx --parity-image examples/zebra.png``.

The data comes packed by train/pack_data.py (``PACK/train``, ``PACK/val/Set5``, ``PACK/val/Set14``);
``PACK/site`` goes on PYTHONPATH (stlpips-pytorch's AlexNet weight file, pypng). A CPU dry run
of the whole chain, a minute or so per stage (``--init ''``: tiny models cannot start from the
shipped weights):

    python train/gpu_session.py --pack gpu_pack --out /tmp/gpu-out --time-scale 0.2 \\
        --extra "--accelerator cpu --preset srresnet-tiny --init '' --batch-size 4 --patch-size 48 --num-workers 1"
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

# Per plan: stages of (recipe under train/recipes, the model of this session it starts from, wall
# seconds, data workers); the models of a stage run side by side, each named by its recipe's file.
PLANS = {
    "shipped": [
        [("pixel_x4", None, 270, 12)],
        [("pixel_x2", None, 130, 6), ("msssim_x4", None, 90, 4), ("perceptual_x4", None, 90, 4)],
        [("msssim_x2", None, 75, 6), ("perceptual_x2", None, 75, 6)],
    ],
    # Untried on a GPU so far: the budgets are a first guess for one 15-minute device session.
    "frontier": [
        [("pixel_x4", None, 420, 14)],
        [("pixel_x2", None, 240, 14)],
    ],
    # Issue #10: two adversarial perceptual x4 candidates side by side (gan weight 0.01 and 0.05),
    # from the shipped perceptual x4; the crops where each differs most from pixel decide.
    "perceptual-gan": [
        [("gan/perceptual_x4", None, 420, 7), ("gan/perceptual_strong_x4", None, 420, 7)],
    ],
    # Issue #11: photo x4 and x2 side by side at GPU batch size, each from its shipped weights.
    "photo": [
        [("gpu/photo_x4", None, 420, 7), ("gpu/photo_x2", None, 420, 7)],
    ],
}  # fmt: skip
GRACE_S = 45  # process start, data decoding, the last validation and checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pack", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/srtool-gpu-session"))
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiplies every budget (dry runs)")
    parser.add_argument("--extra", default="", help="extra `srtool train` options for every model")
    parser.add_argument("--only", nargs="*", help="run just these models (their parents must be in OUT)")
    parser.add_argument("--plan", choices=PLANS, default="shipped", help="which models: %(choices)s")
    parser.add_argument("--init", nargs="*", default=[], metavar="MODEL=FILE",
                        help="start a first-stage model from earlier weights, e.g. pixel_x4=models/pixel_x4.onnx")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    pack = args.pack.resolve()
    paths = [str(REPO), str(pack / "site")]
    sys.path[:0] = paths  # for slim_checkpoint here
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]))
    summary = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "models": {}}
    stages = PLANS[args.plan]
    earlier = dict(item.split("=", 1) for item in args.init)
    summary["plan"] = args.plan
    for stage in stages:
        jobs = []
        for recipe, parent, budget, workers in stage:
            name = Path(recipe).name
            if args.only and name not in args.only:
                continue
            init = args.out / f"{parent}.ckpt" if parent else (Path(earlier[name]) if name in earlier else None)
            if parent and not init.is_file():
                summary["models"][name] = {"status": f"skipped: {parent} did not finish"}
                continue
            budget *= args.time_scale
            data = Path(os.path.relpath(pack, REPO))  # paths as the cards will record them
            recipe_path = REPO / "train" / "recipes" / f"{recipe}.yaml"
            wants_photos = "train/data/photos" in yaml.safe_load(recipe_path.read_text()).get("train_dirs", [])
            photos = ["--data", str(data / "photos")] if wants_photos and (pack / "photos").is_dir() else []
            cmd = [
                sys.executable, "-m", "sr_tool", "train", "--config", str(recipe_path.relative_to(REPO)),
                "--data", str(data / "train"), *photos, "--val", str(data / "val" / "Set5"), "--val", str(data / "val" / "Set14"),
                "--out", str(args.work / name), "--time-budget", f"{budget:.0f}", "--num-workers", str(workers),
                "--no-export", *(["--init", str(init)] if init else []), *shlex.split(args.extra),
            ]  # fmt: skip
            log = open(args.work / f"{name}.log", "w")
            log.write(" ".join(cmd) + "\n\n")
            log.flush()
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
            jobs.append((name, proc, log, time.time(), budget))
        for name, proc, log, started, budget in jobs:
            try:
                rc = proc.wait(timeout=max(1.0, started + budget + GRACE_S - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = "killed: over budget"
            log.close()
            summary["models"][name] = _collect(name, rc, time.time() - started, args)
            print(name, json.dumps(summary["models"][name]), flush=True)
            if rc != 0:  # show why, in the session's own output
                print("".join((args.work / f"{name}.log").read_text().splitlines(True)[-25:]), flush=True)
        _write_logs(summary, args)


def _collect(name: str, rc, seconds: float, args) -> dict:
    """Slim the best checkpoint of a finished (or killed) run into OUT/<name>.ckpt."""
    from sr_tool.training import slim_checkpoint

    ckpts = args.work / name / "checkpoints"
    best = sorted(ckpts.glob("best-*.ckpt")) or sorted(ckpts.glob("last.ckpt"))
    info = {"returncode": rc, "wall_s": round(seconds, 1)}
    if not best:
        return {**info, "status": "no checkpoint"}
    slim_checkpoint(best[-1], args.out / f"{name}.ckpt")
    import torch

    ckpt = torch.load(args.out / f"{name}.ckpt", map_location="cpu", weights_only=True)
    return {**info, "status": "ok", "checkpoint": best[-1].name, "step": ckpt.get("global_step"),
            "max_steps": ckpt["hyper_parameters"]["train_config"]["max_steps"], "val": ckpt.get("srtool_val")}  # fmt: skip


def _write_logs(summary: dict, args) -> None:
    (args.work / "summary.json").write_text(json.dumps(summary, indent=2))
    tmp = args.out / "logs.tar.gz.partial"
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(args.work / "summary.json", arcname="summary.json")
        for path in sorted(args.work.glob("*.log")):
            tar.add(path, arcname=path.name)
        for path in sorted(args.work.glob("*/logs/*/metrics.csv")):
            tar.add(path, arcname=str(path.relative_to(args.work)))
    tmp.replace(args.out / "logs.tar.gz")


if __name__ == "__main__":
    main()
