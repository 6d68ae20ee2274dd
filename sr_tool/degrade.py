"""Real-photo degradations for training LR: blur, resizing, noise and JPEG, batched on any device.

:func:`degrade` turns a batch of HR crops (Bx3xHxW float in [0, 1]) into LR (Bx3x(H/s)x(W/s), 8-bit
values) through the stages of a :class:`Degradation`. Each stage is: blur, resize, noise, then sinc
and JPEG in random order. The last stage resizes to the LR size; earlier ones by a random factor.
With two stages this is the second-order model of Real-ESRGAN (Wang et al. 2021); ``PRESETS`` also
holds a first-order one, JPEG alone and clean (the MATLAB bicubic only).

Randomness comes only from the ``torch.Generator`` passed in: the same seed on the same device gives
the same LR. Blur, noise and JPEG are drawn per image; a resize is drawn per batch (the images of a
batch must keep one size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import torch
import torch.nn.functional as F

from sr_tool.jpeg import jpeg
from sr_tool.resize import imresize

RESIZE_MODES = ("matlab", "area", "bilinear", "bicubic")
KERNEL_SHAPES = ("gaussian", "generalized", "plateau")
MAX_KERNEL = 21


@dataclass(frozen=True)
class Stage:
    """One round of degradation. Ranges are (low, high), drawn uniformly; probabilities are per image."""

    blur_probability: float = 0.0
    blur_sigma: tuple[float, float] = (0.2, 3.0)  # HR pixels, along each principal axis
    blur_kernel_size: tuple[int, int] = (7, 21)  # odd sizes in this range
    anisotropic_probability: float = 0.3  # else isotropic
    # Shares of the Gaussian, generalised Gaussian (exp(-d^beta)) and plateau (1 / (1 + d^beta)) shapes.
    kernel_shape_weights: tuple[float, float, float] = (0.7, 0.15, 0.15)
    generalized_beta: tuple[float, float] = (0.5, 4.0)
    plateau_beta: tuple[float, float] = (1.0, 2.0)
    sinc_probability: float = 0.0  # the blur is a 2-D sinc (ringing, overshoot) instead
    resize_probabilities: tuple[float, float, float] = (0.0, 0.0, 1.0)  # up, down, keep (not the last stage)
    resize_range: tuple[float, float] = (1.0, 1.0)  # factor, for up (>1) or down (<1)
    resize_modes: tuple[str, ...] = ("matlab",)
    noise_probability: float = 0.0
    poisson_share: float = 0.0  # of the noisy images, these get Poisson (shot) noise, the rest Gaussian
    noise_sigma: tuple[float, float] = (1.0, 30.0)  # Gaussian, on the 0-255 scale
    poisson_scale: tuple[float, float] = (0.05, 3.0)  # multiple of 8-bit photon noise
    gray_noise_probability: float = 0.4  # same noise in every channel
    late_sinc_probability: float = 0.0  # a sinc after the resize (ringing of the camera's own scaler)
    jpeg_probability: float = 0.0
    jpeg_quality: tuple[int, int] = (30, 95)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("probability") or f.name == "poisson_share":
                if not 0 <= value <= 1:
                    raise ValueError(f"{f.name} must be in [0, 1], got {value}")
            elif isinstance(value, tuple) and len(value) == 2 and value[0] > value[1]:
                raise ValueError(f"{f.name} must be (low, high), got {value}")
        if self.jpeg_quality[0] < 1 or self.jpeg_quality[1] > 100:
            raise ValueError(f"jpeg_quality must lie in 1..100, got {self.jpeg_quality}")
        if any(m not in RESIZE_MODES for m in self.resize_modes) or not self.resize_modes:
            raise ValueError(f"resize_modes must be some of {', '.join(RESIZE_MODES)}, got {self.resize_modes}")
        low, high = self.blur_kernel_size
        if low < 3 or high > MAX_KERNEL or low % 2 == 0 or high % 2 == 0:
            raise ValueError(f"blur_kernel_size must be odd sizes within 3..{MAX_KERNEL}, got {self.blur_kernel_size}")


@dataclass(frozen=True)
class Degradation:
    """A named sequence of stages; the last one resizes to the LR size."""

    name: str = "clean"
    stages: tuple[Stage, ...] = field(default_factory=lambda: (Stage(),))

    def __post_init__(self):
        if not self.stages:
            raise ValueError("a degradation needs at least one stage")

    def with_overrides(self, **overrides) -> Degradation:
        """The same stages with some fields set in every stage, e.g. ``jpeg_quality=(50, 95)``."""
        names = {f.name for f in fields(Stage)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown degradation settings {unknown}; valid: {', '.join(sorted(names))}")
        overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
        return replace(self, name=f"{self.name} (modified)", stages=tuple(replace(s, **overrides) for s in self.stages))


_ANY_RESIZE = ("area", "bilinear", "bicubic")
PRESETS = {
    "clean": Degradation("clean"),
    "jpeg": Degradation("jpeg", (Stage(jpeg_probability=0.9, jpeg_quality=(30, 95)),)),
    # One round, mild enough that clean input keeps its quality: phone and camera JPEGs, some sensor
    # noise, a little defocus. The photo recipes (train/recipes/photo_x*.yaml) train on it.
    "first-order": Degradation("first-order", (
        Stage(blur_probability=0.3, blur_sigma=(0.2, 1.5), sinc_probability=0.1, noise_probability=0.4,
              poisson_share=0.3, noise_sigma=(1, 15), poisson_scale=(0.05, 1.5), jpeg_probability=0.7,
              jpeg_quality=(30, 95)),
    )),
    # Real-ESRGAN's settings (its options file train_realesrgan_x4plus.yml), here in stages.
    "second-order": Degradation("second-order", (
        Stage(blur_probability=1.0, sinc_probability=0.1, resize_probabilities=(0.2, 0.7, 0.1),
              resize_range=(0.15, 1.5), resize_modes=_ANY_RESIZE, noise_probability=1.0, poisson_share=0.5,
              noise_sigma=(1, 30), poisson_scale=(0.05, 3), jpeg_probability=1.0, jpeg_quality=(30, 95)),
        Stage(blur_probability=0.8, blur_sigma=(0.2, 1.5), sinc_probability=0.1, resize_probabilities=(0.3, 0.4, 0.3),
              resize_range=(0.3, 1.2), resize_modes=_ANY_RESIZE, noise_probability=1.0, poisson_share=0.5,
              noise_sigma=(1, 25), poisson_scale=(0.05, 2.5), late_sinc_probability=0.8, jpeg_probability=1.0,
              jpeg_quality=(30, 95)),
    )),
}  # fmt: skip


def degradation_from_spec(spec) -> Degradation:
    """A preset by name, or a mapping ``{"preset": name, <Stage field>: value, ...}`` (recipes)."""
    if isinstance(spec, bool):  # recipes before presets existed: true meant real-photo degradations
        spec = "first-order" if spec else "clean"
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise ValueError(f"unknown degradations {spec!r}; presets: {', '.join(PRESETS)}")
        return PRESETS[spec]
    if isinstance(spec, dict):
        spec = dict(spec)
        return degradation_from_spec(spec.pop("preset", "clean")).with_overrides(**spec)
    raise ValueError(f"degradations must be a preset name or a mapping, got {spec!r}")


# -- random draws -----------------------------------------------------------------------------
def _uniform(low: float, high: float, n: int, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen, device=gen.device)


def _chance(p: float, n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=gen.device) < p


def _kernel_sizes(stage: Stage, n: int, gen: torch.Generator) -> torch.Tensor:
    low, high = stage.blur_kernel_size
    return low + 2 * torch.randint((high - low) // 2 + 1, (n,), generator=gen, device=gen.device)


def _grid(device) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.arange(MAX_KERNEL, device=device, dtype=torch.float32) - MAX_KERNEL // 2
    return torch.meshgrid(r, r, indexing="ij")


def _support(sizes: torch.Tensor, yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
    half = (sizes // 2).float()[:, None, None]
    return (yy.abs() <= half) & (xx.abs() <= half)


def blur_kernels(stage: Stage, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` random blur kernels (nx21x21, each sums to 1; smaller sizes padded with zeros)."""
    yy, xx = _grid(gen.device)
    sizes = _kernel_sizes(stage, n, gen)
    sigma_a = _uniform(*stage.blur_sigma, n, gen)
    aniso = _chance(stage.anisotropic_probability, n, gen)
    sigma_b = torch.where(aniso, _uniform(*stage.blur_sigma, n, gen), sigma_a)
    angle = torch.where(aniso, _uniform(-math.pi, math.pi, n, gen), torch.zeros_like(sigma_a))
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    u, v = cos * xx + sin * yy, -sin * xx + cos * yy  # coordinates along the kernel's principal axes
    d2 = (u / sigma_a[:, None, None]) ** 2 + (v / sigma_b[:, None, None]) ** 2  # squared Mahalanobis distance
    weights = torch.tensor(stage.kernel_shape_weights, device=gen.device)
    shape = torch.multinomial(weights / weights.sum(), n, replacement=True, generator=gen)
    beta_g = _uniform(*stage.generalized_beta, n, gen)[:, None, None]
    beta_p = _uniform(*stage.plateau_beta, n, gen)[:, None, None]
    shape = shape[:, None, None]
    k = torch.where(shape == 0, torch.exp(-0.5 * d2),
                    torch.where(shape == 1, torch.exp(-0.5 * d2.pow(beta_g)), 1 / (1 + d2.pow(beta_p))))  # fmt: skip
    sinc = _chance(stage.sinc_probability, n, gen)
    k = torch.where(sinc[:, None, None], sinc_kernels(sizes, gen), k)
    k = k * _support(sizes, yy, xx)
    return k / k.sum((1, 2), keepdim=True)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """One isotropic Gaussian kernel (KxK, K = 2 * ceil(3 * sigma) + 1 up to MAX_KERNEL, sums to 1),
    for :func:`apply_kernels`."""
    if not 0 < sigma <= MAX_KERNEL / 6:
        raise ValueError(f"blur sigma must be in (0, {MAX_KERNEL / 6:g}], got {sigma:g}")
    half = min(math.ceil(3 * sigma), MAX_KERNEL // 2)
    r = torch.arange(-half, half + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (r[:, None] ** 2 + r[None, :] ** 2) / sigma**2)
    return k / k.sum()


def sinc_kernels(sizes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Circular low-pass (2-D sinc) kernels of the given odd sizes, cutoffs drawn in [pi/3, pi]
    (small kernels: [pi/2, pi], as their truncation would otherwise dominate)."""
    yy, xx = _grid(gen.device)
    n = sizes.numel()
    low = torch.where(sizes < 13, math.pi / 2, math.pi / 3)
    cutoff = (low + (math.pi - low) * torch.rand(n, generator=gen, device=gen.device))[:, None, None]
    r = torch.sqrt(xx**2 + yy**2)[None]
    safe_r = torch.where(r == 0, torch.ones_like(r), r)
    k = cutoff * torch.special.bessel_j1(cutoff * safe_r) / (2 * math.pi * safe_r)
    k = torch.where(r == 0, cutoff**2 / (4 * math.pi), k)
    k = k * _support(sizes, yy, xx)
    return k / k.sum((1, 2), keepdim=True)


# -- the operations ---------------------------------------------------------------------------
def apply_kernels(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Filter each image (Bx3xHxW) with its own kernel (BxKxK), reflected edges."""
    b, c, h, w = images.shape
    pad = kernels.shape[-1] // 2
    mode = "reflect" if min(h, w) > pad else "replicate"
    x = F.pad(images.reshape(1, b * c, h, w), (pad,) * 4, mode=mode)
    weight = kernels.to(images.dtype).repeat_interleave(c, 0)[:, None]
    return F.conv2d(x, weight, groups=b * c).reshape(b, c, h, w)


def resize(images: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize to ``size`` with a mode of ``RESIZE_MODES`` ("matlab": the benchmark LR's bicubic)."""
    if mode == "matlab":  # on 8-bit values between its passes, as MATLAB does for uint8 images
        return imresize(images, size=size, round_8bit=True)
    if mode == "area" and (size[0] > images.shape[-2] or size[1] > images.shape[-1]):
        mode = "bilinear"  # area averaging only shrinks
    extra = {} if mode == "area" else {"align_corners": False, "antialias": True}
    return F.interpolate(images, size=size, mode=mode, **extra)


def add_noise(images: torch.Tensor, stage: Stage, gen: torch.Generator) -> torch.Tensor:
    """Gaussian or Poisson noise, colour or gray, each image with its own draw and strength."""
    b = images.shape[0]
    noisy = _chance(stage.noise_probability, b, gen)
    poisson = _chance(stage.poisson_share, b, gen)
    gray = _chance(stage.gray_noise_probability, b, gen)[:, None, None, None]
    sigma = _uniform(*stage.noise_sigma, b, gen)[:, None, None, None] / 255
    gaussian = torch.randn(images.shape, generator=gen, device=gen.device, dtype=images.dtype)
    gaussian = torch.where(gray, gaussian[:, :1].expand_as(gaussian), gaussian) * sigma
    # Shot noise: photon counts of 255 * value at full scale, scaled up or down.
    scale = _uniform(*stage.poisson_scale, b, gen)[:, None, None, None]
    luma = (images * torch.tensor([0.299, 0.587, 0.114], device=images.device)[:, None, None]).sum(1, keepdim=True)
    base = torch.where(gray, luma.expand_as(images), images).clamp(0, 1) * 255
    shot = (torch.poisson(base, generator=gen) - base) / 255 * scale
    noise = torch.where(poisson[:, None, None, None], shot, gaussian)
    return images + noise * noisy[:, None, None, None]


def _apply_to(mask: torch.Tensor, images: torch.Tensor, op) -> torch.Tensor:
    if not mask.any():
        return images
    out = images.clone()
    out[mask] = op(images[mask], mask)
    return out


def _jpeg_step(images: torch.Tensor, stage: Stage, gen: torch.Generator) -> torch.Tensor:
    b = images.shape[0]
    chosen = _chance(stage.jpeg_probability, b, gen)
    quality = torch.randint(stage.jpeg_quality[0], stage.jpeg_quality[1] + 1, (b,), generator=gen, device=gen.device)
    return _apply_to(chosen, images, lambda x, m: jpeg(x, quality[m]))


def _sinc_step(images: torch.Tensor, probability: float, gen: torch.Generator) -> torch.Tensor:
    b = images.shape[0]
    chosen = _chance(probability, b, gen)
    kernels = sinc_kernels(_kernel_sizes(Stage(), b, gen), gen)
    return _apply_to(chosen, images, lambda x, m: apply_kernels(x, kernels[m]))


def _random_size(stage: Stage, size: tuple[int, int], gen: torch.Generator) -> tuple[int, int]:
    probabilities = torch.tensor(stage.resize_probabilities, device=gen.device)
    kind = int(torch.multinomial(probabilities / probabilities.sum(), 1, generator=gen))
    low, high = stage.resize_range
    span = {0: (1.0, max(1.0, high)), 1: (min(1.0, low), 1.0), 2: (1.0, 1.0)}[kind]
    factor = float(_uniform(*span, 1, gen))
    return max(8, round(size[0] * factor)), max(8, round(size[1] * factor))


def degrade(hr: torch.Tensor, scale: int, degradation: Degradation, gen: torch.Generator) -> torch.Tensor:
    """LR for a batch of HR crops: ``hr`` Bx3xHxW float in [0, 1], H and W multiples of ``scale``.

    Returns Bx3x(H/scale)x(W/scale) float in [0, 1], rounded to 8-bit levels like a decoded file.
    ``gen`` must live on ``hr``'s device.
    """
    if hr.dim() != 4 or hr.shape[-2] % scale or hr.shape[-1] % scale:
        raise ValueError(f"degrade takes Bx3xHxW with H, W multiples of {scale}, got {tuple(hr.shape)}")
    lr_size = (hr.shape[-2] // scale, hr.shape[-1] // scale)
    x = hr.float()
    for i, stage in enumerate(degradation.stages):
        last = i == len(degradation.stages) - 1
        b = x.shape[0]
        if stage.blur_probability:
            blurred = _chance(stage.blur_probability, b, gen)
            kernels = blur_kernels(stage, b, gen)
            x = _apply_to(blurred, x, lambda t, m: apply_kernels(t, kernels[m]))
        size = lr_size if last else _random_size(stage, x.shape[-2:], gen)
        mode = stage.resize_modes[int(torch.randint(len(stage.resize_modes), (1,), generator=gen, device=gen.device))]
        if size != tuple(x.shape[-2:]):
            x = resize(x, size, mode).clamp(0, 1)
        if stage.noise_probability:
            x = add_noise(x, stage, gen).clamp(0, 1)
        steps = [lambda t: _sinc_step(t, stage.late_sinc_probability, gen)] if stage.late_sinc_probability else []
        steps += [lambda t: _jpeg_step(t, stage, gen)] if stage.jpeg_probability else []
        if len(steps) == 2 and bool(_chance(0.5, 1, gen)):
            steps.reverse()
        for step in steps:
            x = step(x).clamp(0, 1)
    return torch.floor(x * 255 + 0.5) / 255  # 8-bit levels, as decoded files hold
