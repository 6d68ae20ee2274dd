"""Training throughput: srtool's Lightning path against a plain PyTorch loop doing the same work,
and the time per step of each loss. CPU, batch 16, 96 px HR crops, x4, `srresnet-light`.

    python benchmarks/train_throughput.py [--steps 40] [--data ../shared/data/train]

Both paths use the same dataset, sampler, model, Adam + cosine schedule, EMA update and on-the-fly
MATLAB-bicubic LR; timing starts after 5 warm-up steps. Goal: Lightning / plain >= 0.95.
LPIPS rows use a random backbone (ImageNet weights cannot be fetched offline): same compute.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from sr_tool.archs import build_model, preset_config
from sr_tool.data import EpochSampler, HRCropDataset, as_unit_float, find_images
from sr_tool.losses import LOSSES, build_loss
from sr_tool.resize import imresize
from sr_tool.training import TrainConfig, lr_factor, train

WARMUP = 5


class StepTimer(pl.Callback):
    def __init__(self):
        self.start = self.end = None
        self.steps = 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == WARMUP:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.start is not None:
            self.steps += 1
            self.end = time.perf_counter()


def lightning_steps_per_s(data: Path, steps: int, out: Path) -> float:
    timer = StepTimer()
    cfg = TrainConfig(train_dirs=[str(data)], out_dir=str(out), scale=4, preset="srresnet-light", loss="l1",
                      patch_size=96, batch_size=16, max_steps=steps + WARMUP, steps_per_epoch=10_000,
                      num_workers=0, export=False, accelerator="cpu", devices="1")  # fmt: skip
    train(cfg, callbacks=[timer])
    return timer.steps / (timer.end - timer.start)


def plain_steps_per_s(data: Path, steps: int) -> float:
    torch.manual_seed(0)
    cfg = TrainConfig(max_steps=steps + WARMUP)
    dataset = HRCropDataset(find_images([data]), scale=4, patch_size=96, samples_per_epoch=16 * (steps + WARMUP))
    loader = DataLoader(dataset, batch_size=16, sampler=EpochSampler(16 * (steps + WARMUP)), drop_last=True)
    model = build_model(preset_config("srresnet-light", 4))
    ema = copy.deepcopy(model).requires_grad_(False)
    loss_fn = build_loss("l1")
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg))
    start = None
    for step, batch in enumerate(loader):
        if step == WARMUP:
            start = time.perf_counter()
        hr = as_unit_float(batch)["hr"]
        lr = imresize(hr, 1 / 4, round_8bit=True)
        loss = loss_fn(model(lr), hr)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))
            for e, p in zip(ema.parameters(), model.parameters()):
                e.lerp_(p, 1 - decay)
    return steps / (time.perf_counter() - start)


def loss_step_seconds(name: str, repeats: int = 3) -> float:
    if name.startswith("lpips-"):
        import torchvision

        import sr_tool.losses.deep as deep

        def random_trunk(net, weights):
            trunk = torchvision.models.alexnet() if net == "alex" else torchvision.models.vgg16()
            return {k[9:]: v for k, v in trunk.state_dict().items() if k.startswith("features.")}

        deep._imagenet_trunk_state = random_trunk
    torch.manual_seed(0)
    model = build_model(preset_config("srresnet-light", 4))
    loss_fn = build_loss(name)
    optimizer = torch.optim.Adam(model.parameters())
    hr = torch.rand(16, 3, 96, 96)
    lr = imresize(hr, 1 / 4, round_8bit=True)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        loss = loss_fn(model(lr), hr)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "train")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        plain_a = plain_steps_per_s(args.data, args.steps)
        lightning = lightning_steps_per_s(args.data, args.steps, Path(tmp) / "run")
        plain_b = plain_steps_per_s(args.data, args.steps)  # before and after: drift shows
    plain = (plain_a + plain_b) / 2
    print(f"{'path (batch 16, 96 px, x4, srresnet-light)':<44} {'steps/s':>8}")
    print(f"{'plain PyTorch loop (mean of before/after)':<44} {plain:8.3f}   ({plain_a:.3f}, {plain_b:.3f})")
    print(f"{'srtool Lightning path':<44} {lightning:8.3f}")
    print(f"{'  Lightning / plain':<44} {lightning / plain:8.2f}   goal >= 0.95")
    print()
    print(f"{'loss':<16} {'s/step':>7}  (forward + backward + Adam, batch 16, 96 px HR)")
    for name in LOSSES:
        print(f"{name:<16} {loss_step_seconds(name):7.3f}" + ("  random backbone" if name.startswith("lpips") else ""))
    print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}")


if __name__ == "__main__":
    main()
