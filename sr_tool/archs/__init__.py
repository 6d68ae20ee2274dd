"""Architectures and the one registry of named presets.

One module per family, each a plain ``nn.Module`` described by a small config dataclass:

- :mod:`~sr_tool.archs.srresnet`: SRResNet (Ledig et al. 2017), 64 channels at full size;
- :mod:`~sr_tool.archs.represnet`: RepResNet, few channels, every convolution at LR size, trained
  with re-parameterisable multi-branch convolutions that fold into plain 3x3 ones for inference.

The config is saved beside the weights (:func:`save_model`, and inside exported ONNX files), so a
weight file says what it is and :func:`load_model` rebuilds it without guessing. Files written before
there were several families (no ``arch`` key) are SRResNets.

Presets (parameters for RGB; RepResNet counted folded, as it ships, with its training-time count in
brackets; from ``srtool presets``):

=================  ===========  ========  ======  ======================  ======================
name               family       channels  blocks  x2                      x4
=================  ===========  ========  ======  ======================  ======================
``srresnet``       srresnet     64        16      1,398,659               1,546,435
``srresnet-light`` srresnet     32        8       210,115                 247,139
``srresnet-tiny``  srresnet     8         2       9,187                   11,531
``rep-s``          represnet    32        6       124,780 (416,438)       135,184 (448,802)
``rep-m``          represnet    48        6       277,020 (925,686)       292,608 (974,178)
``rep-l``          represnet    52        7       373,268 (1,246,962)     390,152 (1,299,486)
``rep-tiny``       represnet    8         1       2,860 (9,406)           5,488 (17,578)
=================  ===========  ========  ======  ======================  ======================
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import torch
from torch import nn

from sr_tool.archs.represnet import RepResNet, RepResNetConfig
from sr_tool.archs.srresnet import SCALES, SRResNet, SRResNetConfig

__all__ = ["SCALES", "ARCHITECTURES", "PRESETS", "preset_config", "config_from_dict", "build_model", "fold",
           "parameter_count", "save_model", "load_model", "SRResNet", "SRResNetConfig", "RepResNet", "RepResNetConfig"]  # fmt: skip

#: The one registry of architectures: name -> (config class, module class).
ARCHITECTURES = {"srresnet": (SRResNetConfig, SRResNet), "represnet": (RepResNetConfig, RepResNet)}

#: Named presets: architecture family and size, without the scale.
PRESETS: dict[str, dict] = {
    "srresnet": {"arch": "srresnet", "channels": 64, "blocks": 16, "upsample_skip": True},
    "srresnet-light": {"arch": "srresnet", "channels": 32, "blocks": 8, "upsample_skip": True},
    "srresnet-tiny": {"arch": "srresnet", "channels": 8, "blocks": 2, "upsample_skip": True},
    "rep-s": {"arch": "represnet", "channels": 32, "blocks": 6},
    "rep-m": {"arch": "represnet", "channels": 48, "blocks": 6},
    "rep-l": {"arch": "represnet", "channels": 52, "blocks": 7},
    "rep-tiny": {"arch": "represnet", "channels": 8, "blocks": 1},
}


def preset_config(name: str, scale: int):
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return config_from_dict({**PRESETS[name], "scale": scale})


def config_from_dict(data: dict):
    """The config dataclass of ``data["arch"]`` (srresnet when absent: files from before families)."""
    arch = data.get("arch", "srresnet")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    config_class = ARCHITECTURES[arch][0]
    unknown = set(data) - {f.name for f in fields(config_class)}
    if unknown:
        raise ValueError(f"unknown {arch} config keys {sorted(unknown)}")
    return config_class(**data)


def build_model(config) -> nn.Module:
    return ARCHITECTURES[config.arch][1](config)


def fold(model: nn.Module) -> nn.Module:
    """The inference form of ``model``: re-parameterised branches merged (itself if it has none)."""
    return model.fold() if hasattr(model, "fold") else model


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def checkpoint_weights(ckpt: dict) -> dict[str, torch.Tensor]:
    """The upscaler's weights in a loaded srtool training checkpoint: its EMA where it has one."""
    full = ckpt["state_dict"]
    prefix = "ema." if any(k.startswith("ema.") for k in full) else "model."
    return {k[len(prefix) :]: v for k, v in full.items() if k.startswith(prefix)}


def save_model(model: nn.Module, path: str | Path, extra: dict | None = None) -> None:
    """Save weights with their config (and optional JSON-able ``extra``, e.g. the training loss)."""
    from sr_tool.files import atomic_output

    payload = {
        "config": asdict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra or {},
    }
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def load_model(path: str | Path, map_location="cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model saved by :func:`save_model`; returns (model, extra). Never unpickles code."""
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or "config" not in payload or "state_dict" not in payload:
        raise ValueError(f"{path}: not an srtool model file (no config/state_dict)")
    model = build_model(config_from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    return model, payload.get("extra", {})
