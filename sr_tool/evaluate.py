"""Scoring models on a benchmark folder the way published SR tables do (see :mod:`sr_tool.metrics`).

A data folder holds HR images, either directly or in ``HR/``. LR inputs are read from
``LR_bicubic/X<s>/<stem>x<s>.png`` when that folder exists (the MATLAB-made files of the benchmark
sets), else made from the mod-cropped HR with the MATLAB-compatible bicubic (uint8 rounding).
Every model upscales the same LR; outputs are quantised to 8 bits before scoring.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from sr_tool.degrade import apply_kernels, gaussian_kernel
from sr_tool.files import atomic_output
from sr_tool.image_io import LoadedImage, jpeg_round_trip, quantise, read_image, to_tensor, write_image
from sr_tool.metrics import deep_distance, deep_target, ms_ssim_rgb, psnr_y, spectral_excess, ssim_y
from sr_tool.resize import imresize

METRICS = ("psnr_y", "ssim_y", "ms_ssim", "st_lpips", "artifact", "st_lpips_vgg", "lpips_alex", "lpips_vgg")
# st_lpips is AlexNet ST-LPIPS (the usual metric); st_lpips_vgg, on request, is a second deep-feature
# judge for models trained on the AlexNet one; lpips_alex / lpips_vgg (classic LPIPS) need torchvision's
# ImageNet weights, fetched once. artifact is metrics.spectral_excess: its summary is the median over
# images (a model is flagged when it exceeds metrics.ARTIFACT_THRESHOLD), the others' the mean.
DEFAULT_METRICS = METRICS[:5]
#: The deep network of each judge (see sr_tool.losses.LOSS_NETWORKS), to mark judges a model trained on.
JUDGE_NETWORKS = {"st_lpips": "st-lpips-alex", "st_lpips_vgg": "st-lpips-vgg", "lpips_alex": "lpips-alex",
                  "lpips_vgg": "lpips-vgg"}  # fmt: skip
_MEDIAN_METRICS = {"artifact"}
_DEEP = {"st_lpips": ("st", "alex"), "st_lpips_vgg": ("st", "vgg"), "lpips_alex": ("classic", "alex"),
         "lpips_vgg": ("classic", "vgg")}  # fmt: skip
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class Pair:
    name: str
    hr: torch.Tensor  # 1xCxHxW, mod-cropped
    lr: LoadedImage


@dataclass
class EvalRow:
    model: str
    image: str
    psnr_y: float | None
    ssim_y: float | None
    ms_ssim: float | None
    st_lpips: float | None
    artifact: float | None = None
    st_lpips_vgg: float | None = None
    lpips_alex: float | None = None
    lpips_vgg: float | None = None


def judges_trained_on(model_file: str | Path | None) -> set[str]:
    """The metrics whose network the model's loss trained on, from its card (``<model>.json``)."""
    from sr_tool.losses import loss_networks

    card_path = Path(model_file).with_suffix(".json") if model_file else None
    if card_path is None or not card_path.is_file():
        return set()
    loss = json.loads(card_path.read_text()).get("loss")
    try:
        networks = set(loss_networks(loss)) if loss else set()
    except ValueError:  # a loss this version does not know: nothing to mark
        return set()
    return {metric for metric, network in JUDGE_NETWORKS.items() if network in networks}


def load_pairs(data_dir: str | Path, scale: int, lr_dir: str | Path | None = None) -> list[Pair]:
    """HR images of a benchmark folder (``HR/`` or the folder itself), mod-cropped to ``scale``, each
    with its LR: from ``lr_dir`` if given (``<stem>x<scale>.*`` or ``<stem>.*``, any image format),
    else ``LR_bicubic/X<scale>/<stem>x<scale>.png``, else made with the MATLAB bicubic."""
    data_dir = Path(data_dir)
    hr_dir = data_dir / "HR" if (data_dir / "HR").is_dir() else data_dir
    files = sorted(p for p in hr_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{hr_dir}: no HR images")
    if lr_dir is not None and not Path(lr_dir).is_dir():
        raise ValueError(f"{lr_dir}: not a folder")
    pairs = []
    for path in files:
        image = read_image(path)
        h, w = image.pixels.shape[-2:]
        hr = image.pixels[..., : h - h % scale, : w - w % scale]
        lr_path = _lr_file(path.stem, scale, Path(lr_dir) if lr_dir else data_dir / "LR_bicubic" / f"X{scale}")
        if lr_path is not None:
            lr = read_image(lr_path)
        elif lr_dir is not None:
            raise ValueError(f"{lr_dir}: no LR image for {path.name} ({path.stem}x{scale}.* or {path.stem}.*)")
        else:
            lr = LoadedImage.from_tensors(imresize(hr, 1 / scale, round_8bit=True).clamp(0, 1), None, image.info)
        if lr.pixels.shape[1] != hr.shape[1]:
            raise ValueError(f"{lr_path}: {lr.pixels.shape[1]} channels, but its HR image has {hr.shape[1]}")
        expected = (hr.shape[-2] // scale, hr.shape[-1] // scale)
        if tuple(lr.pixels.shape[-2:]) != expected:
            raise ValueError(f"{lr_path}: {lr.pixels.shape[-1]}x{lr.pixels.shape[-2]} px, expected "
                             f"{expected[1]}x{expected[0]} for x{scale} of {path.name}")  # fmt: skip
        pairs.append(Pair(path.stem, hr, lr))
    return pairs


def _lr_file(stem: str, scale: int, folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    for name in (f"{stem}x{scale}", stem):
        found = sorted(p for p in folder.glob(f"{name}.*") if p.suffix.lower() in _IMAGE_SUFFIXES)
        if found:
            return found[0]
    return None


def make_lr_set(
    data_dir: str | Path,
    out_dir: str | Path,
    scale: int,
    *,
    jpeg_quality: int | None = None,
    webp_quality: int | None = None,
    noise_sigma: float = 0.0,
    seed: int = 0,
    resave_quality: int | None = None,
    as_png: bool = False,
    blur_sigma: float = 0.0,
) -> list[Path]:
    """Write a degraded LR test set: each image's benchmark LR (as :func:`load_pairs` finds it; with
    ``blur_sigma``, made from the HR blurred by a Gaussian of that sigma in HR pixels, a soft photo),
    plus Gaussian noise of ``noise_sigma`` (0-255 scale, seeded per image, rounded to 8 bits), then saved
    as a real JPEG of ``jpeg_quality`` (Pillow, 4:2:0), a lossy WebP of ``webp_quality`` (Pillow's
    libwebp, 1..99), or as PNG. Names: ``<stem>x<scale>.jpg|webp|png``. A JPEG's pixels can go on as a
    PNG (``as_png``: a PNG that was a JPEG) or as a JPEG again at ``resave_quality`` (a re-saved one)."""
    if jpeg_quality is not None and webp_quality is not None:
        raise ValueError("an LR set is JPEG or WebP, not both")
    if (as_png or resave_quality is not None) and jpeg_quality is None:
        raise ValueError("saving as PNG or re-saving applies to a JPEG set: give its quality")
    if as_png and resave_quality is not None:
        raise ValueError("a JPEG set goes on as a PNG or as a re-saved JPEG, not both")
    if resave_quality is not None and not 1 <= resave_quality <= 100:
        raise ValueError(f"JPEG quality must be 1..100, got {resave_quality}")
    if jpeg_quality is not None and not 1 <= jpeg_quality <= 100:
        raise ValueError(f"JPEG quality must be 1..100, got {jpeg_quality}")
    if webp_quality is not None and not 1 <= webp_quality <= 99:
        raise ValueError(f"WebP quality must be 1..99 (100 is lossless), got {webp_quality}")
    if noise_sigma < 0:
        raise ValueError(f"noise sigma must be >= 0, got {noise_sigma}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    kernel = gaussian_kernel(blur_sigma) if blur_sigma else None
    for i, pair in enumerate(load_pairs(data_dir, scale)):
        if kernel is None:
            lr = pair.lr.pixels.float()
        else:
            lr = imresize(apply_kernels(pair.hr, kernel[None]), 1 / scale, round_8bit=True).clamp(0, 1)
        if noise_sigma:
            gen = torch.Generator().manual_seed(seed * 1_000_003 + i)
            lr = lr + torch.randn(lr.shape, generator=gen) * noise_sigma / 255
        lr = torch.floor(lr.clamp(0, 1) * 255 + 0.5) / 255
        quality = jpeg_quality or webp_quality or 95
        if as_png or resave_quality is not None:
            lr, quality = jpeg_round_trip(lr, jpeg_quality), resave_quality or 95
        suffix = ".png" if as_png else ".jpg" if jpeg_quality is not None else ".webp" if webp_quality is not None else ".png"
        # not marked as srtool's output: an LR set is there to be upscaled, folder and all
        written.append(write_image(out_dir / f"{pair.name}x{scale}{suffix}", lr, quality=quality, bit_depth=8, mark=False))
    return written


def evaluate(
    upscalers: dict[str, object],
    pairs: Sequence[Pair],
    scale: int,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    on_image: Callable[[str, str], None] | None = None,
) -> tuple[list[EvalRow], dict[str, dict[str, np.ndarray]]]:
    """Score each upscaler (name -> Upscaler) on each pair. Returns the rows and the 8-bit outputs
    (model -> image -> HxWxC uint8), for comparison pictures."""
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {', '.join(METRICS)}")
    from sr_tool.losses.deep import WeightsUnavailable, load_lpips, load_st_lpips

    distances = {}
    for metric, (kind, net) in _DEEP.items():
        if metric in metrics:
            try:
                distances[metric] = load_st_lpips(net) if kind == "st" else load_lpips(net)
            except WeightsUnavailable as err:  # classic LPIPS offline without cached ImageNet weights
                raise ValueError(f"{metric}: {err}") from err
    rows, outputs = [], {name: {} for name in upscalers}
    for pair in pairs:  # image by image: the ground truth's deep features are computed once for all models
        targets = {metric: deep_target(pair.hr, d, scale) for metric, d in distances.items()}
        for name, upscaler in upscalers.items():
            if on_image:
                on_image(name, pair.name)
            result = upscaler.upscale(pair.lr)
            pixels = quantise(result.pixels, np.uint8)
            outputs[name][pair.name] = pixels
            sr = to_tensor(pixels)
            if sr.shape != pair.hr.shape:
                raise ValueError(f"{name} on {pair.name}: output {tuple(sr.shape)} but HR {tuple(pair.hr.shape)}")
            scored_side = min(sr.shape[-2:]) - 2 * scale
            deep = {m: float(deep_distance(sr, pair.hr, distances[m], scale, target=t)) for m, t in targets.items()}
            rows.append(
                EvalRow(
                    model=name,
                    image=pair.name,
                    psnr_y=float(psnr_y(sr, pair.hr, scale)) if "psnr_y" in metrics else None,
                    ssim_y=float(ssim_y(sr, pair.hr, scale)) if "ssim_y" in metrics else None,
                    ms_ssim=float(ms_ssim_rgb(sr, pair.hr, scale)) if "ms_ssim" in metrics and scored_side >= 11 else None,
                    st_lpips=deep.get("st_lpips"),
                    artifact=float(spectral_excess(sr, pair.hr, scale)) if "artifact" in metrics else None,
                    st_lpips_vgg=deep.get("st_lpips_vgg"),
                    lpips_alex=deep.get("lpips_alex"),
                    lpips_vgg=deep.get("lpips_vgg"),
                )
            )
    order = {name: i for i, name in enumerate(upscalers)}
    rows.sort(key=lambda row: order[row.model])  # model by model, images in order (a stable sort)
    return rows, outputs


def upscale_region(upscaler, lr: LoadedImage, x: int, y: int, size: int, context: int = 8) -> np.ndarray:
    """The ``size`` x ``size`` output crop whose top-left is (x, y) in output pixels, made from the
    LR region under it plus ``context`` LR pixels each side (less at image borders), as a tile sees
    it: a quick look at part of a big image. Returns HxWxC samples as the upscaler writes them."""
    if upscaler.scale != int(upscaler.scale):
        raise ValueError(f"upscale_region needs a whole-number scale, not {upscaler.scale:g}")
    scale = int(upscaler.scale)
    x0, y0 = max(x // scale - context, 0), max(y // scale - context, 0)
    x1, y1 = -(-(x + size) // scale) + context, -(-(y + size) // scale) + context  # LR under the crop's far edge, rounded up
    part = lr.pixels[..., y0:y1, x0:x1]
    out = upscaler.upscale(LoadedImage.from_tensors(part, None, lr.info)).pixels
    ox, oy = x - x0 * scale, y - y0 * scale
    return out[oy : oy + size, ox : ox + size]


def summarise(rows: Sequence[EvalRow]) -> dict[str, dict[str, float | None]]:
    """Mean of each metric per model (in first-seen model order); the median for ``artifact``."""
    table: dict[str, dict[str, float | None]] = {}
    for model in dict.fromkeys(r.model for r in rows):
        mine = [r for r in rows if r.model == model]
        table[model] = {}
        for metric in METRICS:
            values = [getattr(r, metric) for r in mine if getattr(r, metric) is not None]
            values = [v for v in values if not np.isnan(v)]
            average = np.median if metric in _MEDIAN_METRICS else np.mean
            table[model][metric] = float(average(values)) if values else None
    return table


def write_csv(rows: Sequence[EvalRow], path: str | Path) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["model", "image", *METRICS])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else (f"{v:.6f}" if isinstance(v, float) else v)) for k, v in asdict(row).items()})


def read_csv(path: str | Path) -> list[EvalRow]:
    """The rows of a CSV written by :func:`write_csv`."""
    with open(path, newline="") as f:
        return [
            EvalRow(model=r["model"], image=r["image"], **{m: float(r[m]) if r.get(m) else None for m in METRICS})
            for r in csv.DictReader(f)
        ]


def comparison_picture(
    outputs: dict[str, dict[str, np.ndarray]],
    pair: Pair,
    path: str | Path,
    *,
    box: tuple[int, int, int] | None = None,
    zoom: int = 2,
) -> Path:
    """The same crop (x, y, size in HR pixels; default: a centred square) of the HR image and each
    model's output, side by side and labelled, enlarged ``zoom`` times with nearest neighbour."""
    hr = hr_pixels(pair)
    h, w = hr.shape[:2]
    if box is None:
        size = min(h, w, 128)
        box = ((w - size) // 2, (h - size) // 2, size)
    x, y, size = box
    if not (0 <= x and 0 <= y and x + size <= w and y + size <= h):
        raise ValueError(f"crop {box} is outside the {w}x{h} image {pair.name}")
    panels = [(name, images[pair.name]) for name, images in outputs.items()] + [("HR", hr)]
    return write_image(path, zoomed_strip(panels, box, zoom, gap=4))


def hr_pixels(pair: Pair) -> np.ndarray:
    """The pair's HR image as HxWxC uint8, like the models' outputs that :func:`evaluate` returns."""
    return quantise(pair.hr[0].permute(1, 2, 0).numpy(), np.uint8)


def zoomed_strip(panels: Sequence[tuple[str, np.ndarray]], box: tuple[int, int, int], zoom: int, gap: int) -> np.ndarray:
    """The same (x, y, size) crop of each (label, HxWxC uint8 image) panel, enlarged ``zoom`` times
    with nearest neighbour and labelled, side by side with ``gap`` white pixels between."""
    tiles = [_zoomed_crop(image, box, zoom, label) for label, image in panels]
    space = np.full((tiles[0].shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([t for tile in tiles for t in (tile, space)][:-1], axis=1)


def _zoomed_crop(image: np.ndarray, box: tuple[int, int, int], zoom: int, label: str) -> np.ndarray:
    """The (x, y, size) crop of an HxWxC uint8 image as RGB, enlarged with nearest neighbour, labelled."""
    from sr_tool.image_io import label_image

    x, y, size = box
    crop = image[y : y + size, x : x + size]
    crop = np.repeat(crop, 3, axis=2) if crop.shape[2] == 1 else crop
    return label_image(crop.repeat(zoom, axis=0).repeat(zoom, axis=1), label)


def most_different_box(a: np.ndarray, b: np.ndarray, size: int) -> tuple[int, int, int, float]:
    """The ``size`` x ``size`` window where two HxWxC images differ most: (x, y, size, mean |a - b|
    in 8-bit levels). ``size`` is clipped to the image."""
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64)).mean(axis=2)
    size = min(size, *diff.shape)
    integral = np.pad(diff.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]
    y, x = np.unravel_index(int(sums.argmax()), sums.shape)
    return int(x), int(y), size, float(sums[y, x] / size**2)


def difference_picture(
    outputs: dict[str, dict[str, np.ndarray]],
    pairs: Sequence[Pair],
    first: str,
    second: str,
    path: str | Path,
    *,
    count: int = 10,
    size: int = 96,
    zoom: int = 3,
) -> Path:
    """Where two models differ most: for the ``count`` images on which ``first`` and ``second``
    differ most, the window where they do, as ``first | second | HR``, one row per image, enlarged
    ``zoom`` times with nearest neighbour (artifacts show at this zoom; averages hide them)."""
    for name in (first, second):
        if name not in outputs:
            raise ValueError(f"--compare-models: {name!r} is not one of the models scored ({', '.join(outputs)})")
    found = []
    for pair in pairs:
        x, y, side, mean_diff = most_different_box(outputs[first][pair.name], outputs[second][pair.name], size)
        found.append((mean_diff, pair, (x, y, side)))
    found.sort(key=lambda item: -item[0])
    rows = []
    for _, pair, (x, y, side) in found[:count]:
        panels = ((f"{first}  ({pair.name}, x={x} y={y})", outputs[first][pair.name]),
                  (second, outputs[second][pair.name]), ("HR", hr_pixels(pair)))  # fmt: skip
        rows.append(zoomed_strip(panels, (x, y, side), zoom, gap=6))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return write_image(path, np.concatenate(rows, axis=0))
