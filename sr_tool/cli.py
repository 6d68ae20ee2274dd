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
