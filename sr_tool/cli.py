"""The ``srtool`` command line: parse, call the library, print. No logic of its own lives here."""

from __future__ import annotations

import typer

from sr_tool import __version__

app = typer.Typer(
    name="srtool",
    help="Super-resolution: upscale images with SRResNet models trained on pixel, MS-SSIM or deep-feature losses.",
    no_args_is_help=True,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"srtool {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """srtool: honest, fast super-resolution."""


@app.command()
def presets() -> None:
    """List the architecture presets with their sizes and parameter counts."""
    from sr_tool.archs import PRESETS, build_model, parameter_count, preset_config

    typer.echo(f"{'preset':<16} {'channels':>8} {'blocks':>6} {'params x2':>11} {'params x4':>11}")
    for name, size in PRESETS.items():
        counts = [parameter_count(build_model(preset_config(name, s))) for s in (2, 4)]
        typer.echo(f"{name:<16} {size['channels']:>8} {size['blocks']:>6} {counts[0]:>11,} {counts[1]:>11,}")


@app.command()
def train(
    data: list[str] = typer.Option(None, "--data", help="HR training folder (repeatable; searched recursively)."),
    val: list[str] = typer.Option(None, "--val", help="HR validation folder (repeatable)."),
    lr_data: list[str] = typer.Option(None, "--lr-data", help="Paired LR folder, one per --data."),
    config: str = typer.Option(None, "--config", help="YAML recipe, e.g. train/recipes/pixel_x4.yaml."),
    out: str = typer.Option(None, "--out", "-o", help="Output folder (checkpoints, logs, model.onnx, card)."),
    scale: int = typer.Option(None, "-x", "--scale", help="Upscaling factor: 2, 3, 4 or 8."),
    preset: str = typer.Option(None, help="Architecture preset (see `srtool presets`)."),
    loss: str = typer.Option(None, help="Loss spec, e.g. l1, msssim+l1, 'l1+0.1*stlpips-vgg'."),
    patch_size: int = typer.Option(None, help="HR crop size in pixels."),
    batch_size: int = typer.Option(None),
    max_steps: int = typer.Option(None),
    steps_per_epoch: int = typer.Option(None, help="Validation and checkpoints every this many steps."),
    learning_rate: float = typer.Option(None, "--lr", help="Adam learning rate."),
    schedule: str = typer.Option(None, help="cosine, step or constant."),
    warmup_steps: int = typer.Option(None),
    ema_decay: float = typer.Option(None),
    grad_clip: float = typer.Option(None, help="Max gradient norm (0 = off)."),
    precision: str = typer.Option(None, help="auto, 32-true, bf16-mixed, 16-mixed."),
    channels_last: bool = typer.Option(None, "--channels-last/--no-channels-last"),
    compile: bool = typer.Option(None, "--compile/--no-compile", help="torch.compile the model."),
    init: str = typer.Option(None, "--init", help="Start from this model (.pt, .ckpt, .onnx)."),
    resume: bool = typer.Option(None, "--resume/--no-resume", help="Continue from OUT/checkpoints/last.ckpt."),
    monitor: str = typer.Option(None, help="Best-checkpoint metric: psnr_y, ssim_y, ms_ssim, st_lpips."),
    seed: int = typer.Option(None),
    num_workers: int = typer.Option(None),
    degradations: bool = typer.Option(None, "--degradations/--no-degradations", help="Real-photo LR."),
    accelerator: str = typer.Option(None, help="auto, cpu, gpu."),
    devices: str = typer.Option(None, help="Number of devices, or a list such as 0,1."),
    num_nodes: int = typer.Option(None),
    strategy: str = typer.Option(None, help="auto, ddp, ddp_spawn, ..."),
) -> None:
    """Train an upscaler with Lightning; ends with model.onnx, model.pt and model_card.json in --out."""
    import logging

    from sr_tool.training import TrainConfig, TrainingError
    from sr_tool.training import train as run_training

    settings: dict = {}
    if config:
        import yaml

        with open(config) as f:
            settings = yaml.safe_load(f) or {}
        settings["recipe"] = config
    overrides = {
        "train_dirs": data or None, "val_dirs": val or None, "lr_dirs": lr_data or None, "out_dir": out,
        "scale": scale, "preset": preset, "loss": loss, "patch_size": patch_size, "batch_size": batch_size,
        "max_steps": max_steps, "steps_per_epoch": steps_per_epoch, "lr": learning_rate, "schedule": schedule,
        "warmup_steps": warmup_steps, "ema_decay": ema_decay, "grad_clip": grad_clip, "precision": precision,
        "channels_last": channels_last, "compile": compile, "init": init, "resume": resume, "monitor": monitor,
        "seed": seed, "num_workers": num_workers, "degradations": degradations, "accelerator": accelerator,
        "devices": devices, "num_nodes": num_nodes, "strategy": strategy,
    }  # fmt: skip
    settings.update({k: v for k, v in overrides.items() if v is not None})
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        cfg = TrainConfig.from_dict(settings)
        if not cfg.train_dirs:
            raise ValueError("no training data: give --data FOLDER or a --config recipe with train_dirs")
        result = run_training(cfg)
    except (ValueError, TrainingError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2 if isinstance(err, ValueError) else 1) from None
    if result.card:
        typer.echo(f"model: {result.onnx}\ncard:  {result.card}")
        for key, value in result.metrics.items():
            typer.echo(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}")
