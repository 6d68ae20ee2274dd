"""Losses: pure tensor modules that know nothing of training frameworks or the CLI.

:func:`build_loss` turns a spec such as ``"l1"``, ``"msssim+l1"`` or ``"l1+0.1*stlpips-vgg"`` into one
module: a weighted sum of named terms. ``msssim+l1`` without weights means the Zhao et al. mix
(alpha 0.84, Gaussian-weighted L1), also available as ``msssim-l1``; to add plain L1 to MS-SSIM
instead, give weights (``1*msssim+1*l1``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import nn

from sr_tool.losses.artifact_map import ArtifactMapLoss
from sr_tool.losses.ensemble import LowFrequencyL1Loss
from sr_tool.losses.pixel import CharbonnierLoss, L1Loss, L2Loss
from sr_tool.losses.spectral import SpectralExcessLoss
from sr_tool.losses.ssim import MSSSIML1Loss, MSSSIMLoss, SSIMLoss


def _deep(kind: str, net: str) -> Callable[..., nn.Module]:
    def make(backbone_weights: str | None = None) -> nn.Module:
        from sr_tool.losses.deep import DeepFeatureLoss, load_lpips, load_st_lpips
        from sr_tool.losses.ensemble import RandomTransformEnsemble

        if kind == "stlpips":
            return DeepFeatureLoss(load_st_lpips(net))
        if kind == "elpips":
            return RandomTransformEnsemble(load_st_lpips(net))
        if kind == "texture":
            from sr_tool.losses.texture import GramTextureLoss

            return GramTextureLoss(load_st_lpips(net))
        return DeepFeatureLoss(load_lpips(net, backbone_weights=backbone_weights))

    return make


def _adversarial() -> nn.Module:
    from sr_tool.losses.adversarial import AdversarialLoss

    return AdversarialLoss()


#: The one registry of loss names. Every module takes (pred, target), NxCxHxW in [0, 1]; those with
#: ``needs_reference`` also take ``reference``, the same batch from the EMA or the starting model.
LOSSES: dict[str, Callable[[], nn.Module]] = {
    "l1": L1Loss,
    "l2": L2Loss,
    "charbonnier": CharbonnierLoss,
    "l1-low": LowFrequencyL1Loss,  # L1 on 2x-downscaled images: an anchor that leaves the finest octave free
    "ssim": SSIMLoss,
    "msssim": MSSSIMLoss,
    "msssim-l1": MSSSIML1Loss,
    # charges energy the output has at a frequency where the target has none: painted patterns
    "spectral-excess": SpectralExcessLoss,
    "stlpips-alex": _deep("stlpips", "alex"),
    "stlpips-vgg": _deep("stlpips", "vgg"),
    # ST-LPIPS under E-LPIPS random transformations: the deep-feature loss that resists being gamed
    "elpips-alex": _deep("elpips", "alex"),
    "elpips-vgg": _deep("elpips", "vgg"),
    "lpips-alex": _deep("lpips", "alex"),
    "lpips-vgg": _deep("lpips", "vgg"),
    # local Gram matrices of ST-LPIPS features: which features fire together, not where (EnhanceNet)
    "texture-alex": _deep("texture", "alex"),
    "texture-vgg": _deep("texture", "vgg"),
    # a patch discriminator trained alongside: sees arrangement, which energy-based losses cannot
    "gan": _adversarial,
    # LDL's artifact map: L1 where the errors vary locally and the EMA model does better
    "ldl": ArtifactMapLoss,
}

#: The deep network each deep-feature loss trains on. A judge (an eval metric) that uses the same
#: network is not independent of a model trained with that loss.
LOSS_NETWORKS = {
    "stlpips-alex": "st-lpips-alex",
    "elpips-alex": "st-lpips-alex",
    "stlpips-vgg": "st-lpips-vgg",
    "elpips-vgg": "st-lpips-vgg",
    "texture-alex": "st-lpips-alex",
    "texture-vgg": "st-lpips-vgg",
    "lpips-alex": "lpips-alex",
    "lpips-vgg": "lpips-vgg",
}

_TERM = re.compile(r"^(?:(?P<weight>\d+(?:\.\d*)?(?:e-?\d+)?|\.\d+)\s*\*\s*)?(?P<name>[a-z0-9-]+)$")


class LossSpecError(ValueError):
    pass


def parse_loss_spec(spec: str) -> list[tuple[float, str]]:
    """``"l1+0.1*stlpips-vgg"`` -> [(1.0, "l1"), (0.1, "stlpips-vgg")]; clear errors for typos.

    ``msssim+l1`` without weights, anywhere in a spec, is the Zhao et al. mix (``msssim-l1``):
    ``msssim+l1+0.1*elpips-alex`` is that mix plus E-LPIPS. ``1*msssim+1*l1`` adds plain L1."""
    text = spec.replace(" ", "").lower()
    text = re.sub(r"(^|\+)msssim\+l1(?=\+|$)", r"\1msssim-l1", text)
    if not text:
        raise LossSpecError(f"empty loss spec; valid names: {', '.join(LOSSES)}")
    terms = []
    for part in text.split("+"):
        match = _TERM.match(part)
        if not match:
            raise LossSpecError(f"cannot parse loss term {part!r} in {spec!r}; write e.g. 'l1+0.1*stlpips-vgg'")
        name = match["name"]
        if name not in LOSSES:
            raise LossSpecError(f"unknown loss {name!r} in {spec!r}; valid names: {', '.join(LOSSES)}")
        terms.append((float(match["weight"]) if match["weight"] else 1.0, name))
    return terms


def loss_networks(spec: str) -> list[str]:
    """The deep networks a loss spec trains on, e.g. ``"l1+0.05*elpips-alex"`` -> ["st-lpips-alex"]."""
    return sorted({LOSS_NETWORKS[name] for _, name in parse_loss_spec(spec) if name in LOSS_NETWORKS})


class WeightedLoss(nn.Module):
    """Sum of weighted loss terms; ``last_terms`` holds the unweighted value of each (for logging)."""

    def __init__(self, terms: list[tuple[float, str]], lpips_backbone: str | None = None):
        super().__init__()
        self.weights = [w for w, _ in terms]
        self.names = [n for _, n in terms]
        self.terms = nn.ModuleList(
            LOSSES[n](backbone_weights=lpips_backbone) if n.startswith("lpips-") else LOSSES[n]() for n in self.names
        )
        self.takes_reference = [getattr(t, "needs_reference", False) for t in self.terms]
        self.last_terms: dict[str, torch.Tensor] = {}

    @property
    def trained_terms(self) -> dict[str, nn.Module]:
        """Terms with state of their own that training changes (a discriminator and its optimiser),
        by their index and name, e.g. ``{"2.gan": AdversarialLoss}``: checkpoints keep them."""
        return {f"{i}.{n}": t for i, (n, t) in enumerate(zip(self.names, self.terms)) if hasattr(t, "optimizer_state")}

    @property
    def needs_reference(self) -> bool:
        """Whether a term compares with a steadier model's output (pass it as ``reference``)."""
        return any(self.takes_reference)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        total = pred.new_zeros(())
        self.last_terms = {}
        for weight, name, term, takes_reference in zip(self.weights, self.names, self.terms, self.takes_reference):
            value = term(pred, target, reference) if takes_reference else term(pred, target)
            self.last_terms[name] = value.detach()
            total = total + weight * value
        return total


def build_loss(spec: str, lpips_backbone: str | None = None) -> WeightedLoss:
    """``lpips_backbone``: a local torchvision state dict for the LPIPS terms (default: torchvision's
    ImageNet weights, fetched once and cached)."""
    return WeightedLoss(parse_loss_spec(spec), lpips_backbone)
