"""The ``srtool`` command line: parse, call the library, print. No logic of its own lives here."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Annotated

import typer
from typer import Option as Opt

from sr_tool import __version__

# Option groups of the long commands' help
_DATA, _RUN, _MODEL, _OPTIM, _HARDWARE = "Data", "Run", "Model and loss", "Optimisation", "Hardware"
_INPUT, _OUTPUT, _PICTURE = "Inputs", "Outputs", "Comparison pictures"
_FLAG = ""  # metavar of on/off flags: no value placeholder in the help
_ENGINE_HELP = "auto (ONNX Runtime for .onnx files, PyTorch for .pth/.safetensors), onnxruntime, torch, or tensorrt (ONNX Runtime's TensorRT provider, fp16; engines cached in ~/.cache/srtool/tensorrt)."
ModelsDir = Annotated[str | None, Opt("--models-dir", metavar="FOLDER", help="Folder of your own models (.onnx, .pth, .safetensors, ...), which --model then takes by file name; default: $SRTOOL_MODELS_DIR.")]

class _NoHelpMarker:
    """Typer's commands print a ``<bool>`` type marker on their own --help line: not ours."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = _FLAG
        return option


class _Command(_NoHelpMarker, typer.core.TyperCommand):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for param in self.params:  # positionals: their metavar says what they are, not Python's "<list[str]>"
            if isinstance(param, typer.core.TyperArgument):
                param.display_type_rich = lambda ctx: None


class _Group(_NoHelpMarker, typer.core.TyperGroup):
    pass


app = typer.Typer(
    cls=_Group,
    name="srtool",
    help="Super-resolution: upscale images with models trained on pixel, MS-SSIM or deep-feature losses, and on real-photo degradations (JPEG, noise).",
    no_args_is_help=True,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"srtool {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, Opt("--version", metavar=_FLAG, callback=_print_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """srtool: honest, fast super-resolution."""


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command(cls=_Command)
def upscale(
    inputs: Annotated[list[str], typer.Argument(metavar="INPUTS", help="Image files, folders or globs.", show_default=False)],
    output: Annotated[str | None, Opt("-o", "--output", metavar="PATH", help="Output file (one input) or folder; default: beside each input.", rich_help_panel=_OUTPUT)] = None,
    scale: Annotated[float | None, Opt("-x", "--scale", metavar="S", help="Upscaling factor; any value above 1 (e.g. 2, 3, 4, 1.5). Default: 4 for the built-in models, a model file's own scale.", show_default=False)] = None,
    model: Annotated[str | None, Opt("--model", "-m", metavar="MODEL", help="pixel, msssim, perceptual, photo (for JPEG and noisy photos), bicubic, a model file (.onnx; .pth or .safetensors of any architecture spandrel knows; a training checkpoint .ckpt), or a file's name in --models-dir; default: msssim, and for JPEG, lossy WebP and noisy inputs photo mixed with pixel at a strength set by the file's JPEG quality (1 up to quality 65, 0.75 up to 82, 0.5 up to 92, 0.25 above), read in the pixels where they show an earlier JPEG's 8x8 grid (a PNG saved from a JPEG, a JPEG re-saved at a higher quality), its lossy WebP quality (estimated from the quantisers, within about 10: 0.75 up to 62, 0.5 up to 82, 0.25 above) or the image's noise where that asks for more (0.5 from sigma 5, 1 from sigma 8, in 8-bit levels): it removes the blocks, ringing and noise the others sharpen.")] = None,
    strength: Annotated[float | None, Opt("--strength", metavar="S", min=0, max=1, help="Denoise strength, 0..1, of a model trained on noisy, compressed input whose card names a clean partner (the photo model and pixel): mixes their weights; 1 = the model as trained, 0 = the partner. Alone: photo at this strength for every input (without it, JPEG, lossy WebP and noisy inputs get a strength set by their quality and noise).")] = None,
    recursive: Annotated[bool, Opt("--recursive", "-r", metavar=_FLAG, help="Descend into sub-folders.", rich_help_panel=_INPUT)] = False,
    max_pixels: Annotated[int, Opt(metavar="N", help="Refuse inputs with more pixels (decompression bombs).", rich_help_panel=_INPUT)] = 150_000_000,
    shard_spec: Annotated[str | None, Opt("--shard", metavar="K/N", help="Process only the K-th of N disjoint shards, counted from 1 (1/8 .. 8/8; e.g. $SLURM_ARRAY_TASK_ID/8 with --array=1-8).", rich_help_panel=_INPUT)] = None,
    suffix: Annotated[str | None, Opt(metavar="TEXT", help="Added to output names; default _x<scale>.", rich_help_panel=_OUTPUT)] = None,
    fmt: Annotated[str | None, Opt("--format", metavar="FORMAT", help="png, jpg, webp or tif; default: the input's (PNG for GIF and BMP inputs).", rich_help_panel=_OUTPUT)] = None,
    quality: Annotated[int, Opt(metavar="Q", min=1, max=100, help="JPEG/WebP quality (WebP 100 = lossless).", rich_help_panel=_OUTPUT)] = 95,
    overwrite: Annotated[bool, Opt("--overwrite", metavar=_FLAG, help="Replace existing outputs (default: skip them).", rich_help_panel=_OUTPUT)] = False,
    device: Annotated[str, Opt(metavar="DEVICE", help="auto, cpu, cuda, cuda:N, or cuda:0,cuda:1 for several GPUs.", rich_help_panel=_HARDWARE)] = "auto",
    engine: Annotated[str, Opt(metavar="ENGINE", help=_ENGINE_HELP, rich_help_panel=_HARDWARE)] = "auto",
    models_dir: ModelsDir = None,
    tile: Annotated[int, Opt(metavar="PX", help="Tile size in input pixels; 0 = from free memory.", rich_help_panel=_HARDWARE)] = 0,
    tile_pad: Annotated[int, Opt(metavar="PX", help="Context pixels discarded at inner tile edges.", rich_help_panel=_HARDWARE)] = 16,
    batch_size: Annotated[int, Opt(metavar="N", help="Tiles per run; 0 = 1 on CPU, 8 on GPU.", rich_help_panel=_HARDWARE)] = 0,
    threads: Annotated[int, Opt(metavar="N", help="CPU threads for inference; 0 = all.", rich_help_panel=_HARDWARE)] = 0,
    fp16: Annotated[bool, Opt("--fp16", metavar=_FLAG, help="Half precision (torch engine on CUDA).", rich_help_panel=_HARDWARE)] = False,
    compile_model: Annotated[bool, Opt("--compile", metavar=_FLAG, help="torch.compile the model (torch engine; pays off on a GPU over many tiles).", rich_help_panel=_HARDWARE)] = False,
    quiet: Annotated[bool, Opt("--quiet", "-q", metavar=_FLAG, help="Print only warnings and errors: no model line, progress bar, summary or route line.")] = False,
    verbose: Annotated[bool, Opt("--verbose", "-v", metavar=_FLAG, help="For each file, say where the default route sent it and what it read there (JPEG or WebP quality, a past JPEG, noise).")] = False,
) -> None:
    """Upscale images. Exit code 0: all done; 1: some files failed; 2: usage error; 130: interrupted."""
    from sr_tool.batch import INPUT_SUFFIXES, BatchError, check_writable, collect_inputs, parse_shard, plan_jobs, run_batch, shard
    from sr_tool.engine import EngineError, parse_devices
    from sr_tool.upscale import ModelNotFound, TileSettings, Upscaler, default_photo_model, default_route

    try:
        if model is None and strength is not None:  # --strength is the photo model's
            model = default_photo_model()
            if model is None:
                raise ModelNotFound("--strength: the photo model is not installed")
        found = collect_inputs(inputs, recursive)
        if not found.files and not found.own_outputs:
            raise BatchError(f"no images found in {', '.join(inputs)} (looked for {', '.join(sorted(INPUT_SUFFIXES))}"
                             + ("" if recursive else "; -r descends into sub-folders") + ")")  # fmt: skip
        tiles = TileSettings(tile=tile or None, pad=tile_pad, batch_size=batch_size or None)

        def make(name, d, strength=strength):
            return Upscaler(name, scale, engine=engine, device=d, tiles=tiles, threads=threads or None, fp16=fp16,
                            strength=strength, models_dir=models_dir, compile=compile_model)  # fmt: skip

        is_jpeg = {source.suffix.lower() in (".jpg", ".jpeg") for source, _ in found.files}

        def for_device(d):
            if model is None:  # the default route; for a batch of JPEGs, the photo model alone
                return default_route(lambda name, strength: make(name, d, strength), jpeg_only=False not in is_jpeg)
            return make(model, d)

        upscalers = [for_device(d) for d in parse_devices(device)]
        scale = upscalers[0].scale  # without -x: the model file's own
        jobs = plan_jobs(found.files, output, suffix=suffix if suffix is not None else f"_x{scale:g}", fmt=fmt)
        own_outputs = len(found.own_outputs) + len(found.files) - len(jobs)
        check_writable(jobs)
        if shard_spec:
            jobs = shard(jobs, *parse_shard(shard_spec))
    except (BatchError, EngineError, ModelNotFound, ValueError) as err:  # CommunityModelError is a ValueError
        _fail(str(err))
    if own_outputs:
        typer.echo(f"note: {own_outputs} file(s) are srtool outputs (marked by srtool, or another input's output "
                   "name): not upscaled again; name a file on its own to upscale it anyway", err=True)  # fmt: skip
    for u in upscalers:
        for warning in u.warnings:
            typer.echo(f"warning: {warning}", err=True)
    if not quiet:
        typer.echo(f"model: {upscalers[0].description}" + (f" (+{len(upscalers) - 1} more devices)" if len(upscalers) > 1 else ""), err=True)

    progress = _Progress(quiet, verbose)
    import signal

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a scheduler's stop acts like Ctrl-C
    with progress:
        result = run_batch(jobs, upscalers, overwrite=overwrite, quality=quality, max_pixels=max_pixels,
                           on_event=progress.event)  # fmt: skip
    if result.failed:
        typer.echo(f"{len(result.failed)} failed:", err=True)
    for failure in result.failed:  # printed as they happened too; repeated here for the record
        typer.echo(f"error: {failure.source}: {failure.reason}", err=True)
    rate = result.megapixels / result.seconds if result.seconds else 0.0
    busy = f", {len(result.busy)} left to another run writing them" if result.busy else ""
    existing = " (outputs already exist; --overwrite replaces them)" if result.skipped else ""
    summary = (f"{len(result.done)} written, {len(result.skipped)} skipped{existing}{busy}, "
               f"{len(result.failed)} failed in {result.seconds:.1f} s ({rate:.2f} output MP/s)")  # fmt: skip
    if result.interrupted:
        typer.echo(f"interrupted: {summary}; rerun the same command to continue", err=True)
        raise typer.Exit(130)
    if not quiet or result.failed:
        typer.echo(summary, err=True)
    routed = sum((getattr(u, "routed", Counter()) for u in upscalers), Counter())
    if not quiet and routed:  # the default route: which model, at which strength, each image got
        typer.echo(f"route: {_route_counts(routed)}", err=True)
    waited_decode, waited_encode = result.idle_share
    if not quiet and len(result.done) > 1:  # a folder: did decoding or encoding hold the accelerator back?
        typer.echo(f"inference waited {waited_decode:.0%} of its time for decoding and {waited_encode:.0%} for "
                   "encoding (the rest it was busy)", err=True)  # fmt: skip
    raise typer.Exit(1 if result.failed else 0)


def _route_counts(routed: Counter) -> str:
    """The default route's choices, most used first: "5 to msssim_x4.onnx, 2 to photo_x4 at 0.75"."""
    return ", ".join(f"{n} to {label}" for label, n in sorted(routed.items(), key=lambda kv: (-kv[1], kv[0])))


@contextlib.contextmanager
def _task_bar(total: int, title: str):
    """A progress bar on stderr for ``total`` steps; yields ``step(description)``, called as each starts."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn(title), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   TextColumn("{task.description}"), console=Console(stderr=True), transient=True)  # fmt: skip
    with bar:
        task = bar.add_task("", total=total)
        started = [False]

        def step(description: str) -> None:
            bar.update(task, advance=1 if started[0] else 0, description=description)
            started[0] = True

        yield step


class _Progress:
    """A rich progress bar on stderr: files, output megapixels/s, ETA."""

    def __init__(self, quiet: bool, verbose: bool = False):
        self.quiet, self.verbose = quiet, verbose
        self.bar = None
        self.task = None
        self.tile_task = None
        self.megapixels = 0.0
        self.started = 0.0

    def __enter__(self):
        if not self.quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                console=Console(stderr=True), transient=False)  # fmt: skip
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def event(self, kind: str, job, data: dict) -> None:
        import time

        message = None
        if kind in ("failed", "warning"):  # at once, not only in the summary: a long batch shows them as they come
            message = f"error: {job.source}: {data['reason']}" if kind == "failed" else f"warning: {job.source}: {data['message']}"
        elif kind == "done" and self.verbose and data.get("route"):
            message = f"{job.source}: {data['route']}"
        if message:
            self.bar.console.print(message, markup=False, highlight=False, soft_wrap=True) if self.bar else typer.echo(message, err=True)
        if self.bar is None:
            return
        if kind == "start":
            self.started = time.perf_counter()
            self.task = self.bar.add_task("upscaling", total=data["total"], rate="")
        elif kind == "tiles":  # a big image: its own line, tile by tile, so that "0/1" is not all one sees
            if self.tile_task is None:
                self.tile_task = self.bar.add_task("", total=data["total"], rate="tiles")
            self.bar.update(self.tile_task, description=f"  {job.source.name}", completed=data["done"],
                            total=data["total"], visible=data["done"] < data["total"])  # fmt: skip
        elif kind in ("done", "skipped", "failed"):
            self.megapixels += data.get("megapixels", 0.0)
            elapsed = max(time.perf_counter() - self.started, 1e-9)
            self.bar.update(self.task, advance=1, rate=f"{self.megapixels / elapsed:.2f} MP/s")


@app.command(cls=_Command)
def models(models_dir: ModelsDir = None) -> None:
    """List the built-in models with their scales and cards, and the models in your models folder."""
    from sr_tool.upscale import BUILTIN_MODELS, ModelNotFound, list_builtin_models, list_user_models, user_models_dir

    folder = user_models_dir(models_dir)
    if folder is not None and not folder.is_dir():
        _fail(f"{folder}: the models folder does not exist")
    entries = list_builtin_models()
    if not entries:
        typer.echo(f"no built-in models installed (expected {', '.join(BUILTIN_MODELS)})")
    else:
        loss_w = max(22, *(len(str(e["card"].get("loss", "?"))) for e in entries))  # long mixes stay aligned
        typer.echo(f"{'name':<11} {'scale':>5} {'loss':<{loss_w}} {'val PSNR-Y':>11} {'params':>9} {'steps':>7}  file")
        for e in entries:
            card = e["card"]
            psnr = card.get("validation", {}).get("val/psnr_y")
            psnr_text = f"{psnr:.2f}" if isinstance(psnr, float) else "-"
            typer.echo(f"{e['name']:<11} x{e['scale']:<4} {card.get('loss', '?'):<{loss_w}} {psnr_text:>11} "
                       f"{card.get('parameters', 0):>9,} {card.get('steps', 0):>7}  {e['path']}")  # fmt: skip
        typer.echo("val PSNR-Y: on the recipe's validation sets (Set5 + Set14), from the card; see README for benchmarks")
    if folder is None:
        typer.echo("your own models: --models-dir FOLDER or $SRTOOL_MODELS_DIR lists them here")
        return
    try:
        users = list_user_models(folder)
    except ModelNotFound as err:
        _fail(str(err))
    typer.echo(f"\nyour models in {folder}: {len(users)}" + (" (none: .onnx, .pth, .safetensors files go here)" if not users else ""))
    if users:
        name_w = max(11, *(len(u["name"]) for u in users))
        loss_w = max(4, *(len(str(u["card"].get("loss", "-"))) for u in users))
        typer.echo(f"{'name':<{name_w}} {'scale':>5}  {'architecture':<40} {'loss':<{loss_w}} {'steps':>7}  file")
        for u in users:
            scale = f"x{u['scale']}" if u["scale"] else "?"
            about = f"cannot run: {u['error'].split(';')[0]}" if u["error"] else (u["architecture"] or "foreign ONNX")
            card = u["card"]  # loss and steps from the card beside the file, where there is one
            typer.echo(f"{u['name']:<{name_w}} {scale:>5}  {about:<40} {card.get('loss', '-'):<{loss_w}} "
                       f"{card.get('steps', '-'):>7}  {u['path']}")  # fmt: skip


@app.command(name="eval", cls=_Command)
def evaluate_models(
    model: Annotated[list[str], Opt("--model", "-m", metavar="MODEL", help="Model to score (repeatable): built-in name, model file (.onnx, .pth, .safetensors), a name in --models-dir, or default: what srtool upscale runs without --model (photo for JPEG, lossy WebP and noisy inputs, and PNGs that were JPEGs).")],
    data: Annotated[str, Opt("--data", metavar="FOLDER", help="Folder of HR images (or with HR/ and LR_bicubic/X<s>/).")],
    scale: Annotated[int, Opt("-x", "--scale", metavar="S", help="Upscaling factor.")] = 4,
    lr: Annotated[str | None, Opt("--lr", metavar="FOLDER", help="LR folder to upscale instead (<stem>x<s>.* or <stem>.*, e.g. from `srtool make-lr`).")] = None,
    metrics: Annotated[str, Opt(metavar="LIST", help="Comma-separated metrics; on request st_lpips_vgg, and lpips_alex, lpips_vgg (need torchvision's ImageNet weights).")] = "psnr_y,ssim_y,ms_ssim,st_lpips,artifact",
    csv_path: Annotated[str | None, Opt("--csv", metavar="FILE", help="Per-image CSV; default eval_<data>_x<s>.csv (eval_<data>-<lr>_x<s>.csv with --lr).")] = None,
    compare: Annotated[str | None, Opt("--compare", metavar="PNG", help="Write a comparison picture here.", rich_help_panel=_PICTURE)] = None,
    compare_models: Annotated[str | None, Opt(metavar="A,B", help="The picture shows, for the images where models A and B differ most, the crop where they do.", rich_help_panel=_PICTURE)] = None,
    compare_count: Annotated[int | None, Opt(metavar="N", min=1, help="Rows (images) of the --compare-models picture (default 10), or pairs of the --blind test (default 20).", rich_help_panel=_PICTURE)] = None,
    compare_image: Annotated[str | None, Opt(metavar="STEM", help="Without --compare-models: the image to crop; default the first.", rich_help_panel=_PICTURE)] = None,
    crop: Annotated[str | None, Opt(metavar="X,Y,SIZE", help="Without --compare-models: the crop in HR pixels; default centred 128.", rich_help_panel=_PICTURE)] = None,
    blind: Annotated[str | None, Opt("--blind", metavar="FOLDER", help="Write a blind pairwise test of the --compare-models pair here: for images drawn at random, the crop where the two differ most, as A | ground truth | B with the sides shuffled; a judge fills answers.csv, then srtool blind-score FOLDER.", rich_help_panel=_PICTURE)] = None,
    device: Annotated[str, Opt(metavar="DEVICE", help="auto, cpu, cuda or cuda:N.", rich_help_panel=_HARDWARE)] = "auto",
    engine: Annotated[str, Opt(metavar="ENGINE", help=_ENGINE_HELP, rich_help_panel=_HARDWARE)] = "auto",
    threads: Annotated[int, Opt(metavar="N", min=0, help="CPU threads for the models and the metrics; 0 = all.", rich_help_panel=_HARDWARE)] = 0,
    models_dir: ModelsDir = None,
) -> None:
    """Score models (bicubic included) on a benchmark folder: PSNR-Y, SSIM-Y, MS-SSIM, ST-LPIPS, the
    artifact check (median spectral excess; over 0.5 flags a painted periodic pattern)."""
    from pathlib import Path

    from sr_tool.engine import EngineError
    from sr_tool.evaluate import (comparison_picture, difference_picture, evaluate, judges_trained_on, load_pairs,
                                  summarise, write_csv)  # fmt: skip
    from sr_tool.image_io import ImageReadError
    from sr_tool.metrics import ARTIFACT_THRESHOLD
    from sr_tool.upscale import DEFAULT_ROUTE, MODEL_SUFFIXES, ModelNotFound, Upscaler, default_route

    names = (["bicubic"] if "bicubic" not in model else []) + list(model)
    labels = [Path(n).stem if Path(n).suffix.lower() in MODEL_SUFFIXES else n for n in names]
    for longer in ([Path(n).name for n in names], names):  # one row per model: file name, else path
        labels = [b if labels.count(a) > 1 else a for a, b in zip(labels, longer)]
    # options first, so that a typo fails before minutes of work
    box = None
    if crop:
        try:
            box = tuple(int(v) for v in crop.split(","))
        except ValueError:
            box = ()
        if len(box) != 3:
            _fail(f"--crop {crop}: expected x,y,size (three integers), e.g. 40,290,128")
    pair_to_compare = [m.strip() for m in compare_models.split(",")] if compare_models else None
    if pair_to_compare and (len(pair_to_compare) != 2 or not set(pair_to_compare) <= set(labels)):
        _fail(f"--compare-models {compare_models}: expected two of the models scored ({', '.join(labels)})")
    picture_options = [name for name, value in (("--compare-models", compare_models), ("--compare-image", compare_image),
                                                 ("--crop", crop)) if value]  # fmt: skip
    if blind:
        from sr_tool.blind import check_new_test_folder

        if not pair_to_compare:
            _fail(f"--blind {blind}: name the two models to judge with --compare-models A,B")
        try:
            check_new_test_folder(blind)
        except ValueError as err:
            _fail(f"--blind {err}")
    if picture_options and not (compare or (blind and picture_options == ["--compare-models"])):
        _fail(f"{', '.join(picture_options)}: these shape the --compare picture; give --compare FILE.png too")
    try:
        pairs = load_pairs(data, scale, lr)
        if compare and not pair_to_compare:  # the crop's image and bounds, before the scoring
            pair = next((p for p in pairs if p.name == compare_image), None) if compare_image else pairs[0]
            if pair is None:
                raise ValueError(f"--compare-image {compare_image}: not in {data}")
            h, w = pair.hr.shape[-2:]
            if box and (box[0] < 0 or box[1] < 0 or box[2] < 1 or box[0] + box[2] > w or box[1] + box[2] > h):
                raise ValueError(f"--crop {crop}: outside the {w}x{h} image {pair.name}")
        if threads:  # the metrics' networks run in torch whatever the engine
            import torch

            torch.set_num_threads(threads)
        def make(name, strength=None):
            return Upscaler(name, scale, engine=engine, device=device, threads=threads or None, strength=strength,
                            models_dir=models_dir)  # fmt: skip

        upscalers = {label: default_route(make) if n == DEFAULT_ROUTE else make(n) for label, n in zip(labels, names)}
        for warning in dict.fromkeys(w for u in upscalers.values() for w in u.warnings):
            typer.echo(f"warning: {warning}", err=True)  # e.g. an x2 model scored at -x 4
        with _task_bar(len(pairs) * len(upscalers), "scoring") as step:
            rows, outputs = evaluate(upscalers, pairs, scale, metrics=[m.strip() for m in metrics.split(",") if m.strip()],
                                     on_image=lambda name, image: step(f"{name}: {image}"))  # fmt: skip
    except (ValueError, EngineError, ModelNotFound, ImageReadError, OSError) as err:
        _fail(str(err))
    data_name = Path(data).resolve().name + (f"-{Path(lr).resolve().name}" if lr else "")
    csv_file = Path(csv_path or f"eval_{data_name}_x{scale}.csv")
    write_csv(rows, csv_file)
    table = summarise(rows)
    typer.echo(f"{data_name} x{scale}, {len(pairs)} images (per-image values: {csv_file})")
    columns = [("psnr_y", "PSNR-Y", 7, 2), ("ssim_y", "SSIM-Y", 7, 4), ("ms_ssim", "MS-SSIM", 8, 4),
               ("st_lpips", "ST-LPIPS", 9, 4), ("st_lpips_vgg", "ST-LPIPS-VGG", 13, 4), ("lpips_alex", "LPIPS-alex", 11, 4),
               ("lpips_vgg", "LPIPS-VGG", 10, 4), ("artifact", "artifact", 9, 2)]  # fmt: skip
    columns = [c for c in columns if any(m[c[0]] is not None for m in table.values())]
    typer.echo(f"{'model':<24} " + " ".join(f"{title:>{w}}" for _, title, w, _ in columns))
    trained = {label: judges_trained_on(getattr(up, "model_path", None)) for label, up in upscalers.items()}
    for name, means in table.items():
        cells = []
        for key, _, w, d in columns:
            mark = "*" if key in trained[name] else ""
            value = means[key]
            text = f"{'-':>{w}}" if value is None else f"{value:.{d}f}{mark}"
            if key == "artifact" and value is not None and value > ARTIFACT_THRESHOLD:
                text += "!"
            cells.append(f"{text:>{w}}")
        typer.echo(f"{name:<24} " + " ".join(cells))
    for name, up in upscalers.items():
        if getattr(up, "routed", None):  # -m default: where its images went
            typer.echo(f"{name}: route: {_route_counts(up.routed)}")
    if any(key in trained[name] for name in table for key, *_ in columns):  # a * was printed
        typer.echo("* the model's loss trained on this judge's network: not an independent judge")
    if any((m["artifact"] or 0) > ARTIFACT_THRESHOLD for m in table.values()):  # None when not requested
        typer.echo(f"! artifact: the median image has a periodic pattern the ground truth lacks "
                   f"(spectral excess > {ARTIFACT_THRESHOLD}); look with --compare-models")  # fmt: skip
    if compare:
        try:
            if pair_to_compare:
                difference_picture(outputs, pairs, *pair_to_compare, compare, count=compare_count or 10)
            else:
                comparison_picture(outputs, pair, compare, box=box)
        except ValueError as err:
            _fail(str(err))
        typer.echo(f"comparison: {compare}")
    if blind:
        from sr_tool.blind import write_blind_test

        try:
            written = write_blind_test(outputs, pairs, *pair_to_compare, blind, count=compare_count or 20)
        except (ValueError, OSError) as err:
            _fail(str(err))
        typer.echo(f"blind test: {written} pairs in {Path(blind) / 'pairs'}; give the judge that "
                   f"folder (judge.html in a browser saves answers.csv), not key.csv; with {Path(blind) / 'answers.csv'} "
                   f"filled (A or B: which is closer to the ground truth): srtool blind-score {blind}")  # fmt: skip


@app.command(name="blind-score", cls=_Command)
def blind_score(
    folder: Annotated[str, typer.Argument(metavar="FOLDER", help="A folder written by srtool eval --blind, its answers.csv filled.", show_default=False)],
) -> None:
    """Score a blind pairwise test (srtool eval --blind): how often the judge preferred each model."""
    from sr_tool.blind import score_blind_test

    try:
        score = score_blind_test(folder)
    except (ValueError, OSError) as err:
        _fail(str(err))
    for name, wins in score.wins.items():
        share = f" ({100 * wins / score.answered:.0f}%)" if score.answered else ""
        typer.echo(f"{name}: preferred in {wins} of {score.answered} pairs{share}")
    typer.echo(f"p = {score.p_value:.3f} (two-sided binomial test of no preference); {score.unanswered} unanswered")


@app.command(name="make-lr", cls=_Command)
def make_lr(
    data: Annotated[str, typer.Argument(metavar="DATA", help="Benchmark folder (HR/ and LR_bicubic/X<s>/, or HR images).", show_default=False)],
    out: Annotated[str, typer.Argument(metavar="OUT", help="Folder for the LR files.", show_default=False)],
    scale: Annotated[int, Opt("-x", "--scale", metavar="S", help="Upscaling factor.")] = 4,
    jpeg_quality: Annotated[int | None, Opt("--jpeg", metavar="Q", min=1, max=100, help="Save as JPEG of this quality (Pillow, 4:2:0); default: PNG.")] = None,
    webp_quality: Annotated[int | None, Opt("--webp", metavar="Q", min=1, max=99, help="Save as lossy WebP of this quality (Pillow's libwebp).")] = None,
    noise: Annotated[float, Opt("--noise", metavar="SIGMA", min=0, help="Gaussian noise sigma on the LR, 0-255 scale.")] = 0.0,
    seed: Annotated[int, Opt(metavar="N", help="Seed of the noise.")] = 0,
    blur: Annotated[float, Opt("--blur", metavar="SIGMA", min=0, help="Blur the HR with a Gaussian of this sigma (HR pixels) before the bicubic: a soft photo.")] = 0.0,
    as_png: Annotated[bool, Opt("--png", metavar=_FLAG, help="With --jpeg: save the JPEG's pixels as PNG (a PNG that was a JPEG).")] = False,
    resave: Annotated[int | None, Opt("--resave", metavar="Q", min=1, max=100, help="With --jpeg: save the JPEG's pixels as a JPEG again, of this quality.")] = None,
) -> None:
    """Degraded LR test sets for `srtool eval --lr`: the benchmark's bicubic LR (of the blurred HR), plus noise, then JPEG or WebP.

    BSD100 x4 with JPEG 75: srtool make-lr ../shared/data/BSD100 evals/lr/BSD100_x4_jpeg75 -x 4 --jpeg 75"""
    from sr_tool.evaluate import make_lr_set
    from sr_tool.image_io import ImageReadError, ImageWriteError

    if (as_png or resave is not None) and jpeg_quality is None:
        _fail("--png and --resave go on from a JPEG: give its quality with --jpeg Q too")
    try:
        written = make_lr_set(data, out, scale, jpeg_quality=jpeg_quality, webp_quality=webp_quality, noise_sigma=noise,
                              seed=seed, resave_quality=resave, as_png=as_png, blur_sigma=blur)  # fmt: skip
    except (ValueError, ImageReadError, ImageWriteError, OSError) as err:
        _fail(str(err))
    typer.echo(f"{len(written)} LR images in {out}")


@app.command(cls=_Command)
def bench(
    model: Annotated[list[str], Opt("--model", "-m", metavar="MODEL", help="Model(s) to time (repeatable).")] = ["perceptual"],  # noqa: B006
    scale: Annotated[int, Opt("-x", "--scale", metavar="S", help="Upscaling factor.")] = 4,
    size: Annotated[str, Opt(metavar="WxH", help="Input size.")] = "256x256",
    repeats: Annotated[int, Opt(metavar="N", min=1, help="Timed runs per measurement (the median is reported), after one warm-up.")] = 3,
    device: Annotated[list[str], Opt("--device", metavar="DEVICE", help="Device(s) (repeatable).", rich_help_panel=_HARDWARE)] = ["auto"],  # noqa: B006
    engine: Annotated[list[str], Opt("--engine", metavar="ENGINE", help="Engine(s) (repeatable): onnxruntime, torch; auto for model files that only one runs.", rich_help_panel=_HARDWARE)] = ["onnxruntime", "torch"],  # noqa: B006
    tile: Annotated[list[int], Opt("--tile", metavar="PX", help="Tile size(s); 0 = automatic (repeatable).", rich_help_panel=_HARDWARE)] = [0],  # noqa: B006
    threads: Annotated[int, Opt(metavar="N", help="CPU threads; 0 = all.", rich_help_panel=_HARDWARE)] = 0,
) -> None:
    """Megapixels/s for each model x device x tile x engine (ONNX Runtime against PyTorch eager)."""
    from sr_tool.bench import bench_upscaler
    from sr_tool.community import is_weights_file
    from sr_tool.engine import EngineError
    from sr_tool.upscale import ModelNotFound, TileSettings, Upscaler

    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        _fail(f"--size takes WxH, e.g. 256x256, got {size!r}")
    typer.echo(f"input {width}x{height}, x{scale}; output megapixels per second, median of {repeats}")
    typer.echo(f"{'model':<16} {'engine':<12} {'device':<8} {'tile':>5} {'s/image':>8} {'MP/s':>7}  runs on")
    failed = False
    for m in model:
        for d in device:
            for t in tile:
                for e in engine:
                    if e in ("onnxruntime", "tensorrt") and is_weights_file(m):
                        typer.echo(f"{m:<16} {e:<12} {d:<8} {t or 'auto':>5} {'-':>8} {'-':>7}  runs .onnx files "
                                   f"(srtool export {m} -o model.onnx converts it)")  # fmt: skip
                        continue
                    typer.echo(f"timing {m} on {e}, {d}, tile {t or 'auto'}: a warm-up and {repeats} runs ...", err=True)
                    try:
                        up = Upscaler(m, scale, engine=e, device=d, tiles=TileSettings(tile=t or None),
                                      threads=threads or None)  # fmt: skip
                        seconds, rate = bench_upscaler(up, width=width, height=height, repeats=repeats)
                    except (EngineError, ModelNotFound, ValueError) as err:
                        typer.echo(f"{m:<16} {e:<12} {d:<8} {t or 'auto':>5} {'-':>8} {'-':>7}  {err}")
                        failed = True
                        continue
                    tile_used = up.runner.tile if up.runner else 0
                    typer.echo(f"{m:<16} {e:<12} {d:<8} {tile_used:>5} {seconds:8.3f} {rate:7.2f}  {up.description}")
    raise typer.Exit(1 if failed else 0)


@app.command(cls=_Command)
def export(
    checkpoint: Annotated[str, typer.Argument(metavar="MODEL", help="Training checkpoint (.ckpt), srtool model file (.pt), or a community model (.pth, .safetensors) of an architecture spandrel knows.", show_default=False)],
    output: Annotated[str, Opt("-o", "--output", metavar="ONNX", help="ONNX file to write; the card goes beside it as .json.")],
    fp16: Annotated[bool, Opt("--fp16", metavar=_FLAG, help="fp16 weights inside, fp32 inputs and outputs (for GPUs).")] = False,
    parity_image: Annotated[str | None, Opt(metavar="IMAGE", help="Image for the PyTorch/ONNX parity check (default: a packaged photo).")] = None,
) -> None:
    """Export a checkpoint or model file to ONNX (dynamic N, H, W; metadata inside; checked for parity)."""
    from pathlib import Path

    import torch

    from sr_tool.export import ExportError
    from sr_tool.image_io import ImageReadError, read_image
    from sr_tool.training import TrainingError

    source = Path(checkpoint)
    if not source.is_file():
        _fail(f"{checkpoint}: no such file")
    if source.suffix.lower() == ".onnx":
        _fail(f"{checkpoint}: already an ONNX model, nothing to export (srtool runs it as it is: --model {checkpoint})")
    if Path(output).suffix.lower() != ".onnx":
        _fail(f"-o {output}: the export is an ONNX file; name it .onnx (e.g. -o {Path(output).with_suffix('.onnx').name})")
    image = None
    try:
        if parity_image:
            pixels = read_image(parity_image).pixels
            image = (pixels.expand(-1, 3, -1, -1) if pixels.shape[1] == 1 else pixels)[..., :128, :128].contiguous()
        if source.suffix == ".ckpt":
            from sr_tool.training import export_checkpoint

            onnx_path, card = export_checkpoint(source, output, fp16=fp16, parity_image=image)
        else:
            from sr_tool.export import export_model_file

            onnx_path, card = export_model_file(source, output, fp16=fp16, parity_image=image)
        typer.echo(f"wrote {onnx_path} and {card}")
    except TrainingError as err:
        _fail(f"{checkpoint}: {err}")
    except ExportError as err:
        _fail(str(err) if checkpoint in str(err) else f"{checkpoint}: {err}", code=1)
    except (ImageReadError, ValueError, OSError) as err:
        _fail(str(err) if checkpoint in str(err) else f"{checkpoint}: {err}")
    except (RuntimeError, KeyError, EOFError, torch.serialization.pickle.UnpicklingError) as err:  # torch.load on other files
        _fail(f"{checkpoint}: not a checkpoint or model file that srtool wrote, or it holds objects that safe "
              f"(weights-only) loading refuses ({type(err).__name__})")  # fmt: skip


@app.command(cls=_Command)
def average(
    models: Annotated[list[str], typer.Argument(metavar="MODELS", help="ONNX models of one architecture and scale, fine-tuned from one start (export checkpoints first: srtool export CKPT -o X.onnx).", show_default=False)],
    output: Annotated[str, Opt("-o", "--output", metavar="ONNX", help="ONNX file to write; the card goes beside it as .json.")],
    weights: Annotated[str | None, Opt("--weights", metavar="W,W,...", help="One weight per model (normalised to sum 1); default: equal.")] = None,
) -> None:
    """Average the weights of several fine-tunes of one model (a "model soup"): often better than each."""
    from sr_tool.interpolate import write_average

    try:
        parsed = None if weights is None else [float(w) for w in weights.split(",")]
    except ValueError:
        _fail(f"--weights {weights}: expected numbers separated by commas, e.g. 1,1,2")
    for model in models:
        if not model.lower().endswith(".onnx"):
            _fail(f"{model}: srtool averages ONNX models; export it first (srtool export {model} -o NAME.onnx)")
    try:
        onnx_path, card = write_average(models, output, parsed)
    except FileNotFoundError as err:
        _fail(f"{err.filename}: no such file")
    except OSError as err:
        _fail(f"{err.filename}: {err.strerror}")
    except ValueError as err:
        _fail(str(err))
    typer.echo(f"wrote {onnx_path} and {card} (the mean of {len(models)} models)")


@app.command(cls=_Command)
def presets() -> None:
    """List the architecture presets with their sizes and parameter counts (as exported: folded)."""
    from sr_tool.archs import PRESETS, build_model, fold, parameter_count, preset_config

    typer.echo(f"{'preset':<16} {'family':<10} {'channels':>8} {'blocks':>6} {'params x2':>11} {'params x4':>11}")
    for name, size in PRESETS.items():
        counts = [parameter_count(fold(build_model(preset_config(name, s)))) for s in (2, 4)]
        typer.echo(f"{name:<16} {size['arch']:<10} {size['channels']:>8} {size['blocks']:>6} {counts[0]:>11,} {counts[1]:>11,}")


@app.command(cls=_Command)
def train(
    data: Annotated[list[str] | None, Opt("--data", metavar="FOLDER", help="HR training folder (repeatable; searched recursively).", rich_help_panel=_DATA)] = None,
    val: Annotated[list[str] | None, Opt("--val", metavar="FOLDER", help="HR validation folder (repeatable); none: no validation.", rich_help_panel=_DATA)] = None,
    lr_data: Annotated[list[str] | None, Opt("--lr-data", metavar="FOLDER", help="Paired LR folder, one per --data (default: LR made with the MATLAB bicubic).", rich_help_panel=_DATA)] = None,
    patch_size: Annotated[int | None, Opt(metavar="PX", help="HR crop size in pixels (default: 96).", rich_help_panel=_DATA)] = None,
    batch_size: Annotated[int | None, Opt(metavar="N", help="Crops per step (default: 16).", rich_help_panel=_DATA)] = None,
    num_workers: Annotated[int | None, Opt(metavar="N", help="Data loader processes (default: 2).", rich_help_panel=_DATA)] = None,
    degradations: Annotated[str | None, Opt("--degradations", metavar="PRESET", help="LR made from the HR: clean (MATLAB bicubic), jpeg, first-order or second-order (real-photo blur, resizing, noise, JPEG); a recipe can also change the ranges (default: clean).", rich_help_panel=_DATA)] = None,
    config: Annotated[str | None, Opt("--config", metavar="YAML", help="Recipe, e.g. train/recipes/pixel_x4.yaml; options given here override it.", rich_help_panel=_RUN)] = None,
    out: Annotated[str | None, Opt("--out", "-o", metavar="FOLDER", help="Output folder: checkpoints, logs, model.onnx, card (default: runs/srtool).", rich_help_panel=_RUN)] = None,
    max_steps: Annotated[int | None, Opt(metavar="N", help="Training steps (default: 100000).", rich_help_panel=_RUN)] = None,
    time_budget: Annotated[float | None, Opt("--time-budget", metavar="SECONDS", help="Wall time for this run: max-steps is fitted so the schedule ends in time (default: off).", rich_help_panel=_RUN)] = None,
    steps_per_epoch: Annotated[int | None, Opt(metavar="N", help="Validation and checkpoints every this many steps (default: 1000; a shorter run is one epoch).", rich_help_panel=_RUN)] = None,
    monitor: Annotated[str | None, Opt(metavar="METRIC", help="Best-checkpoint metric: psnr_y, ssim_y, ms_ssim, st_lpips (default: psnr_y).", rich_help_panel=_RUN)] = None,
    init: Annotated[str | None, Opt("--init", metavar="MODEL", help="Start from this model (.pt, .ckpt, .onnx or a built-in name; matching layers). Default: random; --init '' overrides a recipe's init.", rich_help_panel=_RUN)] = None,
    resume: Annotated[bool | None, Opt("--resume/--no-resume", metavar=_FLAG, help="Continue exactly from OUT/checkpoints/last.ckpt (default: no).", rich_help_panel=_RUN)] = None,
    seed: Annotated[int | None, Opt(metavar="N", help="Random seed (default: 0).", rich_help_panel=_RUN)] = None,
    export: Annotated[bool | None, Opt("--export/--no-export", metavar=_FLAG, help="Export model.onnx, model.pt and the card at the end (default: yes).", rich_help_panel=_RUN)] = None,
    scale: Annotated[int | None, Opt("-x", "--scale", metavar="S", help="Upscaling factor: 2, 3, 4 or 8 (default: 4).", rich_help_panel=_MODEL)] = None,
    preset: Annotated[str | None, Opt(metavar="NAME", help="Architecture preset, see `srtool presets` (default: srresnet-light).", rich_help_panel=_MODEL)] = None,
    loss: Annotated[str | None, Opt(metavar="SPEC", help="Loss spec: weighted terms joined by +, e.g. l1, msssim+l1 (the Zhao mix), 'l1+0.1*elpips-alex+spectral-excess+0.005*gan'. Terms: l1, l2, charbonnier, l1-low, ssim, msssim, msssim-l1, spectral-excess, stlpips-alex, stlpips-vgg, elpips-alex, elpips-vgg, lpips-alex, lpips-vgg, texture-alex, texture-vgg, gan, ldl (default: l1).", rich_help_panel=_MODEL)] = None,
    lpips_backbone: Annotated[str | None, Opt(metavar="FILE", help="Local torchvision AlexNet/VGG16 weights for lpips-* losses (default: torchvision's, fetched once).", rich_help_panel=_MODEL)] = None,
    learning_rate: Annotated[float | None, Opt("--lr", metavar="LR", help="Adam learning rate (default: 0.0002).", rich_help_panel=_OPTIM)] = None,
    schedule: Annotated[str | None, Opt(metavar="NAME", help="cosine, step or constant (default: cosine).", rich_help_panel=_OPTIM)] = None,
    warmup_steps: Annotated[int | None, Opt(metavar="N", help="Linear learning-rate warmup (default: 0).", rich_help_panel=_OPTIM)] = None,
    ema_decay: Annotated[float | None, Opt(metavar="D", help="Decay of the weights' moving average, which is validated and exported (default: 0.999).", rich_help_panel=_OPTIM)] = None,
    grad_clip: Annotated[float | None, Opt(metavar="NORM", help="Max gradient norm, 0 = off (default: 0.0).", rich_help_panel=_OPTIM)] = None,
    precision: Annotated[str | None, Opt(metavar="P", help="auto (bf16-mixed on a GPU that has it), 32-true, bf16-mixed, 16-mixed (default: auto).", rich_help_panel=_HARDWARE)] = None,
    channels_last: Annotated[bool | None, Opt("--channels-last/--no-channels-last", metavar=_FLAG, help="channels_last memory layout (default: no).", rich_help_panel=_HARDWARE)] = None,
    compile: Annotated[bool | None, Opt("--compile/--no-compile", metavar=_FLAG, help="torch.compile the model (default: no).", rich_help_panel=_HARDWARE)] = None,
    accelerator: Annotated[str | None, Opt(metavar="NAME", help="auto, cpu, gpu (default: auto).", rich_help_panel=_HARDWARE)] = None,
    devices: Annotated[str | None, Opt(metavar="N|LIST", help="Number of devices, or a list such as 0,1 (default: auto).", rich_help_panel=_HARDWARE)] = None,
    num_nodes: Annotated[int | None, Opt(metavar="N", help="Machines (default: 1).", rich_help_panel=_HARDWARE)] = None,
    strategy: Annotated[str | None, Opt(metavar="NAME", help="auto, ddp, ddp_spawn, ... (default: auto).", rich_help_panel=_HARDWARE)] = None,
) -> None:
    """Train an upscaler with Lightning; ends with model.onnx, its card model.json and model.pt in --out.
    SIGTERM or Ctrl-C saves the step reached (exit code 130): the same command with --resume continues."""
    import logging

    from sr_tool.training import TrainConfig, TrainingError, TrainingInterrupted
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
        "devices": devices, "num_nodes": num_nodes, "strategy": strategy, "lpips_backbone": lpips_backbone,
        "time_budget_s": time_budget, "export": export,
    }  # fmt: skip
    settings.update({k: v for k, v in overrides.items() if v is not None})
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        cfg = TrainConfig.from_dict(settings)
        if not cfg.train_dirs:
            raise ValueError("no training data: give --data FOLDER or a --config recipe with train_dirs")
        result = run_training(cfg)
    except TrainingInterrupted as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(130) from None
    except (ValueError, TrainingError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2 if isinstance(err, ValueError) else 1) from None
    if result.card:
        typer.echo(f"model: {result.onnx}\ncard:  {result.card}")
    else:  # --no-export
        kept = result.best_checkpoint or result.last_checkpoint
        typer.echo(f"checkpoint: {kept} (srtool export {kept} -o MODEL.onnx makes a model of it)")
    for key, value in result.metrics.items():
        typer.echo(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}")
