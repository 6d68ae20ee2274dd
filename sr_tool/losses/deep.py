"""Deep-feature distances: ST-LPIPS (offline default) and classic LPIPS v0.1.

Both compare NxCxHxW images in [0, 1] (C = 3) and return one distance per image (lower = more alike):
features of a fixed network at five depths are unit-normalised along channels, their squared
difference is weighted by learned 1x1 "linear" layers, averaged over space and summed over depths
(Zhang et al. 2018).

- ST-LPIPS (Ghildyal & Liu, ECCV 2022): shift-tolerant AlexNet / VGG16 (blur-pooled, stride-1 first
  convolution), the whole network trained on human perceptual judgments. Its weights are package data
  of the ``stlpips-pytorch`` wheel; only the weight files are read (its modules import IPython).
- LPIPS v0.1 (Zhang et al. 2018): torchvision AlexNet / VGG16 with ImageNet weights (torchvision
  fetches and caches them, or the user names a local file) plus the linear layers shipped in the
  ``lpips`` wheel.

The networks are frozen. Classic LPIPS is not taken from the ``lpips`` package's module (only its
weight files are) so that both metrics share this one implementation, with what the package lacks:
a local backbone file instead of a download, finite gradients on all-zero features, channels_last
(1.3x faster on CPU, benchmarks/losses.py) and no backward pass through the target's branch.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

NETS = ("alex", "vgg")
# LPIPS' input normalisation, applied to images in [-1, 1].
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class DeepFeatureDistance(nn.Module):
    """LPIPS-style distance over ``features``, tapping the outputs of the layers indexed by ``taps``."""

    def __init__(self, features: nn.Sequential, taps: Sequence[int], channels: Sequence[int]):
        super().__init__()
        # channels_last: measurably faster convolutions on CPU (oneDNN) and on GPUs with tensor cores
        self.features = features.to(memory_format=torch.channels_last)
        self.taps = tuple(taps)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in channels)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # frozen metric: always in eval mode
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distance per image, shape (N,), for x, y: Nx3xHxW in [0, 1]."""
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected two Nx3xHxW images, got {tuple(x.shape)} and {tuple(y.shape)}")
        # Two passes rather than one batch of 2N: as a loss, the target's pass then needs no backward.
        return self.distance_to(x, self.target_features(y))

    def target_features(self, y: torch.Tensor) -> list[torch.Tensor]:
        """The unit-normalised features of target images, for :meth:`distance_to`."""
        return [_unit_normalise(f) for f in self.tapped_features(y)]

    def distance_to(self, x: torch.Tensor, target: list[torch.Tensor]) -> torch.Tensor:
        """Distance per image, shape (N,), from x to the targets whose ``target_features`` are given."""
        total = x.new_zeros(x.shape[0])
        for lin, fx, fy in zip(self.lins, self.tapped_features(x), target):
            if fx.shape != fy.shape:
                raise ValueError(f"image features {tuple(fx.shape)} do not match the target's {tuple(fy.shape)}")
            total = total + lin((_unit_normalise(fx) - fy) ** 2).mean(dim=(1, 2, 3))
        return total

    def tapped_features(self, images: torch.Tensor, count: int | None = None) -> list[torch.Tensor]:
        """Backbone outputs at the tapped layers (the first ``count`` of them), for images in [0, 1]."""
        taps = self.taps[:count]
        if not images.requires_grad:  # e.g. the target of a loss: keep no activations for backward
            with torch.no_grad():
                return self._tapped(images, taps)
        return self._tapped(images, taps)

    def _tapped(self, images: torch.Tensor, taps: tuple[int, ...]) -> list[torch.Tensor]:
        h = (((images * 2 - 1) - self.shift) / self.scale).contiguous(memory_format=torch.channels_last)
        out = []
        for i, layer in enumerate(self.features[: taps[-1] + 1]):
            h = layer(h)
            if i in taps:
                out.append(h)
        return out


def _unit_normalise(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    # The reference divides by sqrt(sum f^2) + eps, whose gradient is NaN where a feature vector is all
    # zeros; eps inside the root keeps it finite and changes values by < 1e-8.
    return f * torch.rsqrt(f.pow(2).sum(dim=1, keepdim=True) + eps)


class DeepFeatureLoss(nn.Module):
    """Mean deep-feature distance of a batch, for use as a training loss (images in [0, 1])."""

    def __init__(self, distance: DeepFeatureDistance):
        super().__init__()
        self.distance = distance

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.distance(pred, target).mean()


# ----------------------------------------------------------------------------------------------
# ST-LPIPS


class BlurPool(nn.Module):
    """Anti-aliased stride-2 downsampling: reflect-pad 2, [1 2 1]^2 / 16 blur, subsample (Zhang 2019)."""

    def __init__(self, channels: int):
        super().__init__()
        a = torch.tensor([1.0, 2.0, 1.0])
        filt = (a[:, None] * a[None, :]) / 16
        self.register_buffer("filt", filt.expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.filt, stride=2, groups=x.shape[1])


def _shift_tolerant_alexnet() -> tuple[nn.Sequential, tuple[int, ...], tuple[int, ...]]:
    layers = [
        nn.Conv2d(3, 64, 11, stride=1, padding=2), BlurPool(64), nn.ReLU(),  # 2
        nn.MaxPool2d(3, stride=1), BlurPool(64), nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),  # 6
        nn.MaxPool2d(3, stride=1), BlurPool(192), nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),  # 10
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),  # 12
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),  # 14
    ]  # fmt: skip
    return nn.Sequential(*layers), (2, 6, 10, 12, 14), (64, 192, 384, 256, 256)


def _vgg16_layers(pool) -> tuple[nn.Sequential, tuple[int, ...]]:
    """VGG16 convolutional trunk with ``pool(channels)`` giving the layers of each pooling step."""
    layers, taps, c_in = [], [], 3
    for block, (width, convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]):
        if block:
            layers += pool(c_in)
        for _ in range(convs):
            layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU()]
            c_in = width
        taps.append(len(layers) - 1)
    return nn.Sequential(*layers), tuple(taps)


def _shift_tolerant_vgg16():
    features, taps = _vgg16_layers(lambda c: [nn.MaxPool2d(2, stride=1), BlurPool(c)])
    return features, taps, (64, 128, 256, 512, 512)


def load_st_lpips(net: str = "alex") -> DeepFeatureDistance:
    """ST-LPIPS with the shift-tolerant ``alex`` or ``vgg`` network, from stlpips-pytorch's weights."""
    _check_net(net)
    features, taps, channels = _shift_tolerant_alexnet() if net == "alex" else _shift_tolerant_vgg16()
    model = DeepFeatureDistance(features, taps, channels)
    path = package_file("stlpips-pytorch", "stlpips_pytorch", f"weights/vST0.0/{net}_shift_tolerant.pth")
    state = torch.load(path, map_location="cpu", weights_only=True)
    mapped = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "net":  # net.slice3.9.weight -> features.9.weight
            mapped[".".join(["features", *parts[2:]])] = value
        elif parts[0].startswith("lin"):  # lin2.model.1.weight -> lins.2.weight
            mapped[f"lins.{parts[0][3:]}.weight"] = value
    model.load_state_dict(mapped, strict=True)
    return model


# ----------------------------------------------------------------------------------------------
# Classic LPIPS


def _alexnet_trunk():
    layers = [
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(),  # 1
        nn.MaxPool2d(3, stride=2), nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),  # 4
        nn.MaxPool2d(3, stride=2), nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),  # 7
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),  # 9
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),  # 11
    ]  # fmt: skip
    return nn.Sequential(*layers), (1, 4, 7, 9, 11), (64, 192, 384, 256, 256)


def _vgg16_trunk():
    features, taps = _vgg16_layers(lambda c: [nn.MaxPool2d(2, stride=2)])
    return features, taps, (64, 128, 256, 512, 512)


def load_lpips(
    net: str = "alex", *, backbone_weights: str | Path | None = None, random_backbone: bool = False
) -> DeepFeatureDistance:
    """Classic LPIPS v0.1. The backbone is torchvision's ImageNet ``alex``/``vgg`` (fetched and cached
    by torchvision), or the torchvision state dict in ``backbone_weights``; ``random_backbone`` skips
    both (for tests). The linear layers come from the ``lpips`` package's weight files."""
    _check_net(net)
    features, taps, channels = _alexnet_trunk() if net == "alex" else _vgg16_trunk()
    model = DeepFeatureDistance(features, taps, channels)
    lin_path = package_file("lpips", "lpips", f"weights/v0.1/{net}.pth")
    lins = torch.load(lin_path, map_location="cpu", weights_only=True)
    model.lins.load_state_dict({f"{k[3]}.weight": v for k, v in lins.items() if k.startswith("lin")})
    if not random_backbone:
        trunk = _imagenet_trunk_state(net, backbone_weights)
        model.features.load_state_dict(trunk, strict=True)
    return model


class WeightsUnavailable(RuntimeError):
    """A deep metric's weights cannot be had here (offline, or a package missing); the message says what to do."""


def _imagenet_trunk_state(net: str, backbone_weights: str | Path | None) -> dict[str, torch.Tensor]:
    if backbone_weights is not None:
        state = torch.load(backbone_weights, map_location="cpu", weights_only=True)
    else:
        import torchvision.models as tvm

        weights = tvm.AlexNet_Weights.IMAGENET1K_V1 if net == "alex" else tvm.VGG16_Weights.IMAGENET1K_V1
        try:
            state = weights.get_state_dict(progress=False)
        except Exception as exc:  # offline: URLError, socket errors, ...
            raise WeightsUnavailable(
                f"LPIPS ({net}) needs torchvision's ImageNet {net} weights, which could not be fetched "
                f"({type(exc).__name__}: {exc}). Either run once with internet access so torchvision caches "
                f"them (TORCH_HOME), or name a local torchvision {net} state dict with backbone_weights= "
                "(--lpips-backbone PATH)."
            ) from None
    prefix = "features."
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return state


# ----------------------------------------------------------------------------------------------


def _check_net(net: str) -> None:
    if net not in NETS:
        raise ValueError(f"unknown network {net!r}; choose one of {', '.join(NETS)}")


def package_file(distribution: str, package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing (executing) the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailable(f"{relative} needs the {distribution!r} package: pip install {distribution}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise WeightsUnavailable(f"{path} is missing: reinstall the {distribution!r} package")
    return path
