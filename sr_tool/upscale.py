"""Upscaling images with a model: the library API behind ``srtool upscale``.

:class:`Upscaler` resolves a model (a built-in name, an ONNX or weights file, a file's name in the
user's models folder, or ``bicubic``), picks its engine and tiling, and turns a
:class:`~sr_tool.image_io.LoadedImage` into an :class:`UpscaledImage`.
Any scale works: a model's native scale directly, otherwise the nearest larger model followed by an
antialiased MATLAB-bicubic downscale (e.g. -x3 or -x1.5 with an x4 model). Gray images run through the
RGB model as three equal channels and come back gray; alpha is upscaled separately with bicubic;
bit depth, ICC and EXIF are carried through.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from sr_tool.community import WEIGHT_SUFFIXES
from sr_tool.engine import auto_tile, available_memory, make_engine
from sr_tool.image_io import ImageInfo, LoadedImage, new_pixels, quantise, read_image, unit_float, write_image
from sr_tool.jpeg_trace import past_jpeg_quality
from sr_tool.noise import estimate_noise_sigma
from sr_tool.tiling import TiledRunner

BUILTIN_MODELS = ("pixel", "msssim", "perceptual", "photo")
#: ``srtool upscale`` without --model: the first installed of these ...
DEFAULT_MODELS = ("msssim", "perceptual", "pixel")  # perceptual x4 still paints a mesh (issue #10)
#: ... and for JPEG and noisy inputs, the model trained on JPEG, noise and blur, mixed with its clean
#: partner (pixel) ...
DEFAULT_PHOTO_MODELS = ("photo",)
DEFAULT_JPEG_STRENGTH = 0.5  # where a file's quality is unknown
#: ... at a strength set by the JPEG's quality (the IJG quality nearest its quantisation tables):
#: (highest quality, strength) pairs. On BSD100 x4 the best strength by PSNR-Y was 1 at quality 50
#: and 60, 0.75 at 75, 0.5 at 90 and 0.25 at 95 (README: "Real-photo inputs"); the bounds lie between.
JPEG_STRENGTHS = ((65, 1.0), (82, 0.75), (92, 0.5), (100, 0.25))
#: Lossy WebP likewise, by the libwebp quality read from its quantisers: its in-loop deblocking
#: leaves milder artifacts, so less of photo is best (BSD100 x4: 0.75 at quality 50, 0.5 at 75,
#: 0.25 at 90 and 95; README: "Real-photo inputs").
WEBP_STRENGTHS = ((62, 0.75), (82, 0.5), (100, 0.25))
#: ... or by the image's noise, where that asks for more (sigma in 8-bit levels, as
#: :func:`sr_tool.noise.estimate_noise_sigma` reads it): (lowest sigma, strength) pairs. Below the
#: first, a non-JPEG image is clean and gets the clean model. Clean photos read up to about 7 where
#: they are textured all over; on those the 0.5 mix scores level with msssim (README: "Noisy inputs").
NOISE_STRENGTHS = ((5.0, 0.5), (8.0, 1.0))
#: A JPEG whose pixels show an earlier compression more than this far below its own quality was
#: re-saved (an edit, a messenger): the earlier one sets the strength.
RESAVE_MARGIN = 5
#: After an output this large, the engine's memory arena is shrunk (small images reuse it for speed).
RELEASE_ABOVE_PIXELS = 4_000_000
BICUBIC = "bicubic"
#: The user's models folder (``--models-dir`` overrides it): its files can be named without path or suffix.
MODELS_DIR_VARIABLE = "SRTOOL_MODELS_DIR"
MODEL_SUFFIXES = (".onnx", *WEIGHT_SUFFIXES)


class ModelNotFound(ValueError):
    pass


def shipped_models_dir() -> Path:
    """The folder of the models installed with the package (the repository's ``models/``)."""
    return Path(str(resources.files("sr_tool.shipped")))


def builtin_model_files(name: str) -> dict[int, Path]:
    """{scale: onnx path} of a built-in model, e.g. ``pixel`` -> {2: pixel_x2.onnx, 4: pixel_x4.onnx}."""
    folder = shipped_models_dir()
    files = {}
    for path in folder.glob(f"{name}_x*.onnx"):
        suffix = path.stem[len(name) + 2 :]
        if suffix.isdigit():
            files[int(suffix)] = path
    return dict(sorted(files.items()))


def list_builtin_models() -> list[dict]:
    """One entry per shipped model file: name, scale, path and its card (if any)."""
    entries = []
    for name in BUILTIN_MODELS:
        for scale, path in builtin_model_files(name).items():
            entries.append({"name": name, "scale": scale, "path": path, "card": _card(path)})
    return entries


def default_model() -> str:
    """The default built-in model for clean inputs: msssim, else perceptual, else pixel."""
    for name in DEFAULT_MODELS:
        if builtin_model_files(name):
            return name
    raise ModelNotFound(f"no built-in model is installed (looked for {', '.join(DEFAULT_MODELS)} in {shipped_models_dir()})")


def default_photo_model() -> str | None:
    """The built-in model for JPEG and noisy inputs (photo), or None where it is not installed."""
    return next((name for name in DEFAULT_PHOTO_MODELS if builtin_model_files(name)), None)


def user_models_dir(models_dir: str | Path | None = None) -> Path | None:
    """``models_dir``, else the folder named by $SRTOOL_MODELS_DIR, else None."""
    folder = models_dir or os.environ.get(MODELS_DIR_VARIABLE)
    return Path(folder).expanduser() if folder else None


def user_model_files(models_dir: str | Path | None = None) -> list[Path]:
    """The model files (.onnx, .pth, .safetensors, ...) in the user's models folder and its sub-folders."""
    folder = user_models_dir(models_dir)
    if folder is None:
        return []
    if not folder.is_dir():
        raise ModelNotFound(f"{folder}: the models folder does not exist")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in MODEL_SUFFIXES and p.is_file())


def _card(model_file: Path) -> dict:
    try:
        card = json.loads(model_file.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}
    return card if isinstance(card, dict) else {}


def list_user_models(models_dir: str | Path | None = None) -> list[dict]:
    """One entry per file of the user's models folder: name (to give to --model), path, scale and
    architecture (None where unknown), ``card``: the card beside it (``<name>.json``, as ``srtool
    export`` and training write; {} if none), and ``error``: why the file cannot run (None if it can)."""
    entries = []
    for path in user_model_files(models_dir):
        entry = {"name": path.stem, "path": path, "scale": None, "architecture": None, "card": _card(path), "error": None}
        try:
            if path.suffix.lower() == ".onnx":
                from sr_tool.engine import read_metadata

                meta = read_metadata(path)
                config = json.loads(meta.get("config", "{}"))
                entry["scale"] = int(meta.get("scale", 0)) or None
                entry["architecture"] = meta.get("architecture") or (f"srtool {config['arch']}" if "arch" in config else None)
            else:
                from sr_tool.community import load_community_model

                loaded = load_community_model(path)
                entry["scale"], entry["architecture"] = loaded.scale, loaded.kind
        except Exception as exc:  # one unreadable file must not hide the others
            entry["error"] = str(exc).removeprefix(f"{path}: ")
        entries.append(entry)
    return entries


def resolve_model(model: str, scale: float, models_dir: str | Path | None = None) -> Path | None:
    """The file for ``model`` at ``scale`` (a built-in's smallest scale >= ``scale``, else its
    largest; a path; or a file's name, with or without suffix, in the models folder), or None for bicubic."""
    if model == BICUBIC:
        return None
    if model in BUILTIN_MODELS:
        files = builtin_model_files(model)
        if not files:
            raise ModelNotFound(f"built-in model {model!r} is not installed (no {model}_x*.onnx in {shipped_models_dir()})")
        larger = [s for s in files if s >= scale]
        return files[min(larger) if larger else max(files)]
    path = Path(model)
    if path.is_file():
        return path
    named = [p for p in user_model_files(models_dir) if model in (p.name, p.stem)]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise ModelNotFound(f"{model}: several files in the models folder have this name ({', '.join(map(str, named))}); "
                            "give the path")  # fmt: skip
    if path.suffix.lower() in MODEL_SUFFIXES or len(path.parts) > 1:
        raise ModelNotFound(f"{model}: no such file")
    installed = [name for name in BUILTIN_MODELS if builtin_model_files(name)]
    import difflib

    close = difflib.get_close_matches(model, installed + [p.stem for p in user_model_files(models_dir)], n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    where = f" or the name of a file in {user_models_dir(models_dir)}" if user_models_dir(models_dir) else ""
    raise ModelNotFound(f"{model}: no such model; {hint}use {', '.join(installed)}, {BICUBIC}, a model file "
                        f"({', '.join(MODEL_SUFFIXES)}){where}")  # fmt: skip


def strength_partner(model_path: Path) -> Path:
    """The clean model that ``--strength`` mixes ``model_path`` with, as its card names it: a
    built-in name (taken at the same scale) or a file beside the card."""
    card_path = model_path.with_suffix(".json")
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    partner = card.get("strength_partner")
    if not partner:
        raise ValueError(f"--strength: {model_path.name} has no clean partner to mix with (its card "
                         f"{card_path.name} names no strength_partner); only models such as photo have one")  # fmt: skip
    if partner in BUILTIN_MODELS:
        scale = int(card.get("scale", 0))
        files = builtin_model_files(partner)
        if scale not in files:
            raise ModelNotFound(f"--strength: {model_path.name}'s partner {partner} x{scale} is not installed")
        return files[scale]
    path = card_path.parent / partner
    if not path.is_file():
        raise ModelNotFound(f"--strength: {model_path.name}'s partner {path} does not exist")
    return path


@dataclass
class UpscaledImage:
    pixels: np.ndarray  # HxWxC, uint8 / uint16 (as the source's bit depth) or float32
    alpha: np.ndarray | None  # HxWx1, same dtype
    info: ImageInfo
    route: str | None = None  # the default route: what it chose and what it read, e.g. "photo_x4 at 1 (noise 11.2)"

    @property
    def size(self) -> tuple[int, int]:
        return self.pixels.shape[1], self.pixels.shape[0]


@dataclass(frozen=True)
class TileSettings:
    tile: int | None = None  # input pixels; None = chosen from free memory
    pad: int = 16  # context discarded at each inner tile edge
    blend: int = 8  # cross-fade width
    batch_size: int | None = None  # tiles per run; None = 1 on CPU, 8 on GPU
    on_device: bool | None = None  # tile on the accelerator (sr_tool.device_tiling); None = on a CUDA device


class Upscaler:
    """Upscale images by ``scale`` with ``model``; reusable across images (one engine session)."""

    def __init__(
        self,
        model: str = "perceptual",
        scale: float | None = 4,
        *,
        engine: str = "auto",
        device: str = "auto",
        tiles: TileSettings = TileSettings(),
        threads: int | None = None,
        fp16: bool = False,
        strength: float | None = None,
        models_dir: str | Path | None = None,
        compile: bool = False,
    ):
        """``strength`` (0..1): for a model whose card names a clean partner (``strength_partner``,
        e.g. photo -> pixel), mix their weights: 1 is the model, 0 the partner (see
        :mod:`sr_tool.interpolate`). None runs the model as it is. ``models_dir``: where model
        names that are not built in are looked up (default $SRTOOL_MODELS_DIR). ``compile``: torch.compile
        the torch engine's model (GPU: one CUDA graph per tile shape). ``scale`` None: the model's
        own (4 for built-in models, which come at several scales, and for bicubic)."""
        if scale is not None and not scale > 1:
            raise ValueError(f"-x {scale:g}: srtool upscales, so the scale must be above 1 (e.g. 2, 3, 4, 1.5)")
        if scale is None and (model in BUILTIN_MODELS or model == BICUBIC):
            scale = 4
        self.model_path = resolve_model(model, scale or 4, models_dir)
        self.scale = scale
        self.engine = None
        self.runner = None
        if self.model_path is None:
            self.model_scale = 1
            self.description = "bicubic (MATLAB-compatible, no model)"
            self.warnings: list[str] = []
            return
        proto, mixed = None, ""
        self.partner: Path | None = None  # the clean model mixed in (--strength)
        if strength is not None:
            from sr_tool.interpolate import interpolate_onnx

            self.partner = strength_partner(self.model_path)
            proto = interpolate_onnx(self.model_path, self.partner, strength)
            mixed = f" at strength {strength:g} (mixed with {self.partner.name})"
        self.engine = make_engine(self.model_path, engine=engine, device=device, threads=threads, fp16=fp16, proto=proto,
                                  compile=compile)  # fmt: skip
        self.model_scale = self.engine.scale
        scale = self.scale = scale or self.model_scale
        architecture = self.engine.metadata.get("architecture")
        kind = f" ({architecture})" if architecture else ""
        self.description = f"{self.model_path.name}{kind}{mixed} x{self.model_scale} on {self.engine.description}"
        self.warnings = list(self.engine.warnings)
        if fp16 and not (self.engine.name == "torch" and self.engine.on_gpu):
            self.warnings.append("--fp16 applies to the torch engine on a CUDA device only; this runs in fp32")
        if compile and self.engine.name != "torch":
            self.warnings.append("--compile applies to the torch engine (--engine torch); ignored here")
        builtin = model in BUILTIN_MODELS
        if self.model_scale < scale:
            self.warnings.append(f"the largest model is x{self.model_scale}; bicubic does the rest up to x{scale:g}" if builtin
                                 else f"{self.model_path.name} is an x{self.model_scale} model; bicubic does the rest up "
                                      f"to x{scale:g} (-x {self.model_scale} runs it at its own scale)")  # fmt: skip
        elif self.model_scale > scale and not builtin:
            self.warnings.append(f"{self.model_path.name} is an x{self.model_scale} model; its output is downscaled to "
                                 f"x{scale:g} (-x {self.model_scale} keeps its own scale)")  # fmt: skip
        elif self.model_scale > scale:  # a built-in model's usual way to other scales: said, not warned
            self.description += f", its output downscaled to x{scale:g}"
        batch = tiles.batch_size or (8 if self.engine.on_gpu else 1)
        tile = tiles.tile or auto_tile(self.engine, batch)
        tiling = self.engine.metadata.get("tiling", "supported")
        if tiling == "internal":  # the architecture sees the whole image by design: one tile
            tile = 1 << 20
        elif tiling == "discouraged" and not tiles.tile:
            self.warnings.append(f"{self.model_path.name}: {architecture} draws on wide context, so tiles may show; "
                                 f"tiles are {tile} px, --tile sets a larger size (memory permitting)")  # fmt: skip
        self.runner = TiledRunner(self.engine.run_batch, self.model_scale, tile=tile, pad=tiles.pad,
                                  blend=tiles.blend, batch_size=batch, size_rule=self.engine.size_rule,
                                  allocate=new_pixels)  # fmt: skip
        self.device_runner = None  # tiles cut, blended and quantised on the accelerator
        if tiles.on_device or (tiles.on_device is None and self.engine.on_gpu and _torch_cuda()):
            import torch

            from sr_tool.device_tiling import DeviceTiler

            dtype = self.engine.dtype if self.engine.name == "torch" else torch.float32
            self.device_runner = DeviceTiler(self.engine.run_tensor, self.model_scale, device=self.engine.device,
                                             dtype=dtype, tile=tile, pad=tiles.pad, blend=tiles.blend, batch_size=batch,
                                             size_rule=self.engine.size_rule, channels_last=self.engine.channels_last)  # fmt: skip
            self.description += ", tiled on the device"

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        return max(1, round(width * self.scale)), max(1, round(height * self.scale))

    def upscale(self, image: LoadedImage, on_tiles=None) -> UpscaledImage:
        """``on_tiles(done, total)``: called as the tiles of a big image are done (progress)."""
        width, height = image.size
        out_w, out_h = self.target_size(width, height)
        dtype = np.uint16 if image.info.bit_depth == 16 else np.uint8
        if self.runner is None:
            pixels = _resize(image.float_chw(), out_h, out_w, dtype)
        else:
            native = (width * self.model_scale, height * self.model_scale) == (out_w, out_h)
            # A gray image goes in as three equal channels (the model is RGB), their mean comes out.
            runner = self.runner
            if self.device_runner is not None and self.device_runner.fits(height, width, available_memory(self.engine)):
                runner = self.device_runner
            pixels = runner(image.array, out_dtype=dtype if native else np.float32, on_tiles=on_tiles)
            if out_w * out_h > RELEASE_ABOVE_PIXELS:  # big images: give the activation arena back
                self.engine.release_memory()
            if not native:  # nearest larger model, then an antialiased downscale (or bicubic beyond it)
                pixels = _resize(pixels.transpose(2, 0, 1), out_h, out_w, dtype)
            if image.is_gray:
                pixels = np.floor(pixels.astype(np.float32).mean(axis=2, keepdims=True) + 0.5).astype(dtype)
        alpha = None
        if image.alpha_array is not None:
            alpha = _resize(unit_float(image.alpha_array).transpose(2, 0, 1), out_h, out_w, dtype)
        return UpscaledImage(pixels=pixels, alpha=alpha, info=image.info)


def _by_quality(table: tuple[tuple[int, float], ...], quality: int) -> float:
    """The strength of the first (highest quality, strength) pair of ``table`` that covers ``quality``."""
    return next(strength for highest, strength in table if quality <= highest)


def jpeg_strength(quality: int | None) -> float:
    """The photo strength for a JPEG of this quality (:data:`JPEG_STRENGTHS`); unknown: the default."""
    return DEFAULT_JPEG_STRENGTH if quality is None else _by_quality(JPEG_STRENGTHS, quality)


def compression_strength(info: ImageInfo, past_jpeg: int | None = None) -> float | None:
    """The photo strength a source's compression calls for: a JPEG's by its quality, a lossy WebP's by
    its libwebp quality (:data:`WEBP_STRENGTHS`). ``past_jpeg``: the quality of a JPEG compression the
    pixels show (:func:`sr_tool.jpeg_trace.past_jpeg_quality`): it sets the strength of a lossless
    file (a PNG saved from a JPEG), and of a JPEG whose own quality is well above it (re-saved). None:
    no compression to undo."""
    if info.format == "WEBP" and info.webp_quality is not None:
        return _by_quality(WEBP_STRENGTHS, info.webp_quality)
    if _past_jpeg_counts(info, past_jpeg):
        return jpeg_strength(past_jpeg)
    return jpeg_strength(info.jpeg_quality) if info.format == "JPEG" else None


def _past_jpeg_counts(info: ImageInfo, past_jpeg: int | None) -> bool:
    """Whether the JPEG quality read in the pixels, rather than the file's own, sets the strength:
    for a file without a JPEG quality of its own, or a JPEG re-saved well above it."""
    if past_jpeg is None:
        return False
    own = info.jpeg_quality if info.format == "JPEG" else None
    return own is None or past_jpeg < own - RESAVE_MARGIN


def noise_strength(sigma: float) -> float | None:
    """The photo strength for noise of this sigma (:data:`NOISE_STRENGTHS`), or None: clean enough."""
    return next((strength for lowest, strength in reversed(NOISE_STRENGTHS) if sigma >= lowest), None)


def read_pixels(image: LoadedImage) -> LoadedImage:
    """Read what the route needs from the pixels into ``image``: its noise and any past JPEG compression."""
    image.noise_sigma = estimate_noise_sigma(image.array)
    lossy_webp = image.info.format == "WEBP" and image.info.webp_quality is not None  # its own quality rules
    image.past_jpeg_quality = None if lossy_webp else past_jpeg_quality(image.array)
    return image


def degradation_summary(image: LoadedImage) -> str:
    """What the route read in ``image`` (after :func:`read_pixels`), e.g. "JPEG quality 75, noise 1.3"."""
    info, past = image.info, image.past_jpeg_quality
    parts = []
    if info.format == "JPEG":
        parts.append(f"JPEG quality {info.jpeg_quality}" if info.jpeg_quality else "JPEG of unknown quality")
    elif info.format == "WEBP" and info.webp_quality is not None:
        parts.append(f"lossy WebP, quality about {info.webp_quality}")
    if _past_jpeg_counts(info, past):
        parts.append(f"its pixels were a JPEG of quality {past}")
    parts.append(f"noise {image.noise_sigma:.1f}")
    return ", ".join(parts)


def photo_strength(image: LoadedImage) -> float | None:
    """The strength of the photo model this image calls for, or None for the clean model: a compressed
    source's is set by its compression (:func:`compression_strength`; a PNG that was a JPEG counts),
    raised to its noise's where that is higher; a clean one's by its noise alone."""
    if image.noise_sigma is None:
        read_pixels(image)
    by_noise = noise_strength(image.noise_sigma)
    by_compression = compression_strength(image.info, image.past_jpeg_quality)
    if by_compression is None:
        return by_noise
    return max(by_compression, by_noise or 0.0)


#: The name that stands for :func:`default_route` (``srtool eval -m default``).
DEFAULT_ROUTE = "default"


def default_route(make: Callable[[str, float | None], Upscaler], jpeg_only: bool = False) -> Upscaler | ByDegradation:
    """What ``srtool upscale`` runs without --model: the clean default model (:func:`default_model`),
    and, where the photo model is installed, :class:`ByDegradation` for JPEG and noisy inputs.
    ``make(name, strength)`` builds an upscaler; ``jpeg_only`` (a batch of JPEGs) skips the clean model."""
    clean, photo = default_model(), default_photo_model()
    if photo is None or photo == clean:
        return make(clean, None)
    return ByDegradation(lambda strength: make(photo, strength), None if jpeg_only else make(clean, None))


class ByDegradation:
    """The default route of ``srtool upscale``: each image gets the photo model mixed with its clean
    partner at the strength :func:`photo_strength` gives it, or ``clean`` where that is None (a clean
    image that is not a JPEG). One photo upscaler per strength, made when an image first needs it:
    each mix is made once per run. Without ``clean`` (a batch of JPEGs), clean images get the photo
    model at the default strength."""

    def __init__(self, make_photo: Callable[[float], Upscaler], clean: Upscaler | None = None):
        self._make_photo = make_photo
        self._by_strength: dict[float, Upscaler] = {}
        self.clean = clean
        first = self._photo(DEFAULT_JPEG_STRENGTH)  # now: the scale, and any loading error, before a batch starts
        self.scale = (clean or first).scale
        photo = f"{first.model_path.name} mixed with {first.partner.name}"
        if not clean:
            photo += f" x{first.model_scale} on {first.engine.description}"
        photo += ", at a strength set by each file's compression and noise (the strengths: srtool upscale --help)"
        self.description = f"{clean.description}; JPEG (or once JPEG), lossy WebP and noisy inputs: {photo}" if clean else photo
        self.warnings = list(dict.fromkeys((clean.warnings if clean else []) + first.warnings))
        self.routed: Counter[str] = Counter()  # images per choice, e.g. {"photo at 0.75": 3, "msssim_x4.onnx": 5}

    def prepare(self, image: LoadedImage) -> LoadedImage:
        """Read the noise and any past JPEG now (a batch calls this in its decoding threads)."""
        return read_pixels(image)

    def _photo(self, strength: float) -> Upscaler:
        if strength not in self._by_strength:
            self._by_strength[strength] = self._make_photo(strength)
        return self._by_strength[strength]

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        return (self.clean or self._photo(DEFAULT_JPEG_STRENGTH)).target_size(width, height)

    def upscale(self, image: LoadedImage, on_tiles=None) -> UpscaledImage:
        strength = photo_strength(image)
        if strength is None and self.clean is not None:
            chosen, label = self.clean, self.clean.model_path.name
        else:
            strength = DEFAULT_JPEG_STRENGTH if strength is None else strength
            chosen = self._photo(strength)
            label = f"{chosen.model_path.stem} at {strength:g}"
        result = chosen.upscale(image, on_tiles=on_tiles)
        result.route = f"{label} ({degradation_summary(image)})"
        self.routed[label] += 1
        return result


def _torch_cuda() -> bool:
    """Whether PyTorch can reach a CUDA device (the device tiler needs it, whichever engine runs the model)."""
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _resize(chw: np.ndarray, out_h: int, out_w: int, dtype) -> np.ndarray:
    """MATLAB-bicubic resize of a float CxHxW array in [0, 1] to HxWxC samples of ``dtype``."""
    import torch

    from sr_tool.resize import imresize

    t = imresize(torch.from_numpy(np.ascontiguousarray(chw))[None], size=(out_h, out_w))
    return quantise(t[0].permute(1, 2, 0).numpy(), dtype)


def upscale_file(
    upscaler: Upscaler,
    source: str | Path,
    target: str | Path,
    *,
    quality: int = 95,
    max_pixels: int | None = None,
) -> Path:
    """Read ``source``, upscale, write ``target`` atomically (format from its suffix)."""
    kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
    image = read_image(source, **kwargs)
    result = upscaler.upscale(image)
    return write_image(target, result.pixels, alpha=result.alpha, info=result.info, quality=quality)

