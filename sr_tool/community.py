"""Community models: the ``.pth`` / ``.safetensors`` files of published architectures.

Real-ESRGAN, SwinIR, HAT, DAT, SPAN, OmniSR, PLKSR and the fine-tunes on OpenModelDB come as PyTorch
weights with no description. spandrel (the loader of chaiNNer) recognises about 40 architectures
from the names and shapes in a state dict, infers their hyper-parameters and builds the module;
:func:`load_community_model` wraps what it reports in a :class:`CommunityModel`.

Files are read as data only: safetensors, or ``torch.load(weights_only=True)``, which refuses a
pickle that asks to run code. spandrel's own loader is not used for reading, because it runs ``.pt``
files as TorchScript. srtool's own model files (:func:`sr_tool.archs.save_model`) load through
srtool's registry. torch and spandrel are imported only when such a file is used, so the ONNX path
stays light.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

from sr_tool.tiling import SizeRule

#: File types loaded here; every other model file is ONNX.
WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")
#: Architectures that spandrel keeps in a separate package because of their licences.
EXTRA_PACKAGE = "spandrel_extra_arches"


class CommunityModelError(ValueError):
    """A weights file that cannot be run; the message names the file and the reason, in one line."""


def is_weights_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in WEIGHT_SUFFIXES


@dataclass
class CommunityModel:
    """A loaded weights file: ``net`` maps Nx``in_channels``xhxw in [0, 1] to
    Nx``out_channels``x(scale*h)x(scale*w) (not clamped)."""

    net: object  # torch.nn.Module, in eval mode, on the CPU, float32
    path: Path
    architecture: str  # e.g. "ESRGAN", "SwinIR", or "srtool srresnet"
    tags: tuple[str, ...]  # spandrel's size hints, e.g. ("64nf", "23nb")
    purpose: str  # SR, FaceSR or Restoration (scale 1)
    scale: int
    in_channels: int
    out_channels: int
    size_rule: SizeRule
    tiling: str  # supported, discouraged (needs wide context) or internal (tiles itself)
    supports_half: bool
    supports_bfloat16: bool
    sha256: str

    @property
    def kind(self) -> str:
        """The architecture and spandrel's size tags, e.g. ``ESRGAN (64nf, 23nb)``."""
        return f"{self.architecture} ({', '.join(self.tags)})" if self.tags else self.architecture

    @property
    def description(self) -> str:
        return f"{self.kind} x{self.scale}"

    def metadata(self) -> dict[str, str]:
        """What an exported ONNX file records of this model (``srtool.*`` properties, no prefix)."""
        rule = self.size_rule
        return {
            "scale": str(self.scale),
            "architecture": self.architecture,
            "tags": ",".join(self.tags),
            "in_channels": str(self.in_channels),
            "out_channels": str(self.out_channels),
            "multiple_of": str(rule.multiple_of),
            "min_size": str(rule.minimum),
            "square": str(rule.square).lower(),
            "align": str(rule.align),
            "tiling": self.tiling,
            "source_file": self.path.name,
            "source_sha256": self.sha256,
        }


def size_rule_from_metadata(metadata: dict[str, str]) -> SizeRule:
    """The :class:`SizeRule` an ONNX file records (:meth:`CommunityModel.metadata`); none: no rule."""
    return SizeRule(
        multiple_of=int(metadata.get("multiple_of", 1)),
        minimum=int(metadata.get("min_size", 0)),
        square=metadata.get("square") == "true",
        align=int(metadata.get("align", 1)),
    )


def read_state_dict(path: str | Path) -> dict:
    """The tensors of a weights file, read without running any code from it."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CommunityModelError(f"{path}: no such file")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise CommunityModelError(f"{path}: not a readable safetensors file ({exc})") from exc
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines()]
        refused = [line for line in lines if "GLOBAL" in line or "Unsupported global" in line]
        if not refused:  # not a pickle of weights at all (torch's text would suggest weights_only=False: not ours)
            raise CommunityModelError(f"{path}: not a PyTorch weights file, or a damaged one (not a pickle "
                                      "archive torch can read); re-download it, or use its .safetensors version") from exc  # fmt: skip
        # weights_only refuses any global outside torch's tensor types: the file wants to run code (or to
        # build Python objects, such as a whole pickled model). torch's own advice (allow-list it) is not ours.
        what = refused[0].split(" Please use")[0].split(". Please")[0].removeprefix("WeightsUnpickler error: ").rstrip(".")
        raise CommunityModelError(
            f"{path}: refused: the file holds Python objects that loading would have to run ({what}); srtool "
            "reads weights only. Use a .safetensors version of the model, or re-save its state dict from a source you trust"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as exc:  # torch.load's ways of saying "not mine"
        first = str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() and not isinstance(exc, KeyError) else ""
        detail = first or "not a zip or pickle archive torch can read"
        raise CommunityModelError(f"{path}: not a PyTorch weights file, or a damaged one ({detail}); re-download it, "
                                  "or use its .safetensors version") from exc  # fmt: skip
    if not isinstance(payload, dict):
        raise CommunityModelError(f"{path}: holds a {type(payload).__name__}, not a state dict of weights")
    return payload


def load_community_model(path: str | Path, state: dict | None = None) -> CommunityModel:
    """Load a weights file: srtool's own model files, else any architecture spandrel recognises.
    ``state``: the file's :func:`read_state_dict`, when the caller has read it already."""
    path = Path(path)
    state = state if state is not None else read_state_dict(path)
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    if "config" in state and "state_dict" in state:  # srtool's save_model format
        return _own_model(path, state, sha256)
    if "state_dict" in state and "train_config" in state.get("hyper_parameters", {}):  # srtool's training checkpoint
        return _own_checkpoint(path, state, sha256)
    try:
        import spandrel
    except ImportError as exc:  # a broken install: spandrel is a dependency
        raise CommunityModelError(f"{path}: loading .pth/.safetensors models needs spandrel (pip install spandrel)") from exc
    _install_extra_architectures(spandrel)
    try:
        with warnings.catch_warnings():  # architectures' own deprecation notices (torch.meshgrid) are not the user's
            warnings.simplefilter("ignore", UserWarning)
            descriptor = spandrel.ModelLoader("cpu").load_from_state_dict(spandrel.canonicalize_state_dict(state))
    except spandrel.UnsupportedModelError:
        extra = "" if _has_extra_architectures() else (
            f"; models with non-commercial licences (CodeFormer, SRFormer, Restormer, ...) need `pip install {EXTRA_PACKAGE}`")
        raise CommunityModelError(
            f"{path}: not an architecture spandrel {spandrel.__version__} recognises{extra}") from None  # fmt: skip
    except Exception as exc:  # spandrel recognised the keys but the shapes did not build a model
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CommunityModelError(f"{path}: spandrel could not build the model ({type(exc).__name__}: {first})") from exc
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise CommunityModelError(f"{path}: a {descriptor.architecture.name} {descriptor.purpose} model takes a mask "
                                  "as well as an image; srtool runs image-to-image models only")  # fmt: skip
    requirements = descriptor.size_requirements
    window = getattr(descriptor.model, "window_size", 1)  # windowed attention: partitions from the origin
    rule = SizeRule(
        multiple_of=requirements.multiple_of,
        minimum=requirements.minimum,
        square=requirements.square,
        align=window if isinstance(window, int) and window > 1 else 1,
    )
    return CommunityModel(
        net=_as_module(descriptor).eval(),
        path=path,
        architecture=descriptor.architecture.name,
        tags=tuple(descriptor.tags),
        purpose=descriptor.purpose,
        scale=descriptor.scale,
        in_channels=descriptor.input_channels,
        out_channels=descriptor.output_channels,
        size_rule=rule,
        tiling=descriptor.tiling.name.lower(),
        supports_half=descriptor.supports_half,
        supports_bfloat16=descriptor.supports_bfloat16,
        sha256=sha256,
    )


def _own_model(path: Path, payload: dict, sha256: str) -> CommunityModel:
    from sr_tool.archs import build_model, config_from_dict, fold

    try:
        net = build_model(config_from_dict(payload["config"]))
        net.load_state_dict(payload["state_dict"])
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CommunityModelError(f"{path}: an srtool model file that does not load ({exc})") from exc
    net = fold(net.eval())
    config = net.config
    return CommunityModel(
        net=net, path=path, architecture=f"srtool {config.arch}", tags=(), purpose="SR", scale=config.scale,
        in_channels=config.image_channels, out_channels=config.image_channels, size_rule=SizeRule(),
        tiling="supported", supports_half=True, supports_bfloat16=True, sha256=sha256,
    )  # fmt: skip


def _own_checkpoint(path: Path, ckpt: dict, sha256: str) -> CommunityModel:
    """The EMA weights of an srtool training checkpoint (``srtool export`` makes an ONNX file of it)."""
    from dataclasses import asdict

    from sr_tool.archs import checkpoint_weights, preset_config

    train_config = ckpt["hyper_parameters"]["train_config"]
    try:
        config = asdict(preset_config(train_config["preset"], train_config["scale"]))
    except (KeyError, ValueError) as exc:
        raise CommunityModelError(f"{path}: a training checkpoint of an unknown preset ({exc})") from exc
    return _own_model(path, {"config": config, "state_dict": checkpoint_weights(ckpt)}, sha256)


def _has_extra_architectures() -> bool:
    import importlib.util

    return importlib.util.find_spec(EXTRA_PACKAGE) is not None


def _install_extra_architectures(spandrel) -> None:
    """Register spandrel_extra_arches where the user installed it (once)."""
    if not _has_extra_architectures():
        return
    import spandrel_extra_arches

    if not any(arch.architecture.id in spandrel.MAIN_REGISTRY for arch in spandrel_extra_arches.EXTRA_REGISTRY):
        spandrel_extra_arches.install()


def _as_module(descriptor):
    """The architecture's forward as spandrel calls it (a few need a wrapper), as one module that
    ONNX export and ``.to()`` understand."""
    import torch

    class SpandrelCall(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = descriptor.model
            self.call = descriptor._call_fn  # spandrel's per-architecture call (private; there since 0.1)

        def forward(self, x):
            return self.call(self.model, x)

    return SpandrelCall()
