"""Export a model to ONNX, with its description inside the file, and check it.

Re-parameterisable models are folded first (:func:`sr_tool.archs.fold`): the file holds the plain
inference form, and its parity check compares it with the unfolded model it came from.

The ONNX graph takes ``lr`` (float32 Nx3xHxW in [0, 1], any N, H, W) and gives ``sr`` (float32
Nx3x(sH)x(sW), not clamped). Metadata properties: ``srtool.scale``, ``srtool.config`` (the
architecture config as JSON), ``srtool.loss``, ``srtool.version``, ``srtool.precision``,
``srtool.weight_aliases`` (see :func:`_weight_aliases`), and any extra ``srtool.*`` entries given. Initializers keep their PyTorch state-dict names (constant folding
is left to ONNX Runtime at load time), so the same file also rebuilds the PyTorch model
(:func:`model_from_onnx`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from sr_tool import __version__
from sr_tool.archs import build_model, config_from_dict, fold
from sr_tool.files import atomic_output

OPSET = 17
INPUT, OUTPUT = "lr", "sr"
PARITY_TOLERANCE = 1e-4
_FP16_PREFIX = "model."


class ExportError(RuntimeError):
    """The exported file failed a check (ONNX checker or numerical parity)."""


class _HalfWeights(nn.Module):
    """fp16 weights and arithmetic inside, fp32 inputs and outputs outside."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.half()

    def forward(self, x):
        return self.model(x.half()).float()


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    loss: str = "unknown",
    metadata: dict[str, str] | None = None,
    fp16: bool = False,
    parity_image: torch.Tensor | None = None,
) -> dict:
    """Write srtool ``model`` to ``path`` (atomically) and verify it; returns the parity report.

    ``parity_image`` (1x3xHxW in [0, 1]; default: a packaged real photo) is run through PyTorch and
    ONNX Runtime on CPU; fp32 exports must agree within 1e-4 (max abs), fp16 within 1e-2.
    """
    model = model.eval().cpu().float()
    image = parity_image if parity_image is not None else default_parity_image()
    with torch.no_grad():
        reference = model(image)  # the unfolded model: the parity check covers the folding too
    model = fold(model)
    config = model.config
    props = {
        "srtool.scale": str(config.scale),
        "srtool.config": json.dumps(asdict(config), sort_keys=True),
        "srtool.loss": loss,
        **{k if k.startswith("srtool.") else f"srtool.{k}": str(v) for k, v in (metadata or {}).items()},
    }
    example = torch.rand(1, config.image_channels, 16, 16)
    return _write_onnx(model, path, props, [(image, reference)], fp16=fp16, aliases=True, example=example)


def _write_onnx(model: nn.Module, path: str | Path, props: dict[str, str], checks: list[tuple[torch.Tensor, torch.Tensor]],
                *, fp16: bool, aliases: bool = False, example: torch.Tensor | None = None) -> dict:  # fmt: skip
    """Export ``model`` with dynamic N, H, W and ``props`` as metadata, check the file, and compare
    ONNX Runtime with each (image, PyTorch output) of ``checks``; returns the parity report.
    ``aliases``: record the weights the exporter merged (needed to rebuild srtool models)."""
    import copy

    net = _HalfWeights(copy.deepcopy(model)) if fp16 else model
    example = example if example is not None else torch.rand(1, 3, 16, 16)
    props = {**props, "srtool.version": __version__, "srtool.precision": "fp16" if fp16 else "fp32"}
    # Tracer warnings flag Python branches on sizes; the parity checks at other sizes catch the ones that
    # matter. The exporter prints its whole graph to stdout when it fails: the error says enough.
    with atomic_output(path) as tmp, warnings.catch_warnings(), _stdout_silenced():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            net,
            (example,),
            str(tmp),
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch", 2: "height", 3: "width"}, OUTPUT: {0: "batch", 2: "out_height", 3: "out_width"}},
            opset_version=OPSET,
            do_constant_folding=False,  # keep state-dict names on the initializers
            dynamo=False,
        )
        proto = onnx.load(str(tmp))
        if aliases:
            props["srtool.weight_aliases"] = json.dumps(_weight_aliases(net, proto))
        for key, value in props.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.producer_name, proto.producer_version = "srtool", __version__
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
        tolerance = PARITY_TOLERANCE if not fp16 else 1e-2
        reports = [_parity(tmp, image, reference, tolerance) for image, reference in checks]
    report = max(reports, key=lambda r: r["max_abs_diff"])
    if len(reports) > 1:
        report = {**report, "image_shapes": [r["image_shape"] for r in reports]}
    return report


@contextlib.contextmanager
def _stdout_silenced():
    """Mute file descriptor 1 (the exporter's C++ side prints there, past Python's sys.stdout)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def export_model_file(
    source: str | Path, onnx_path: str | Path, *, fp16: bool = False, parity_image: torch.Tensor | None = None
) -> tuple[Path, Path]:
    """Export a model file to ONNX, with a card beside it (``<name>.json``): srtool's own model files
    (:func:`sr_tool.archs.save_model`, e.g. a run's ``model.pt``), or any weights file spandrel
    recognises (:mod:`sr_tool.community`). Returns (onnx path, card path)."""
    import hashlib

    from sr_tool.archs import load_model, parameter_count
    from sr_tool.community import read_state_dict
    from sr_tool.losses import loss_networks

    source, onnx_path = Path(source), Path(onnx_path)
    payload = read_state_dict(source)
    if not ("config" in payload and "state_dict" in payload):
        card = _export_weights_file(source, payload, onnx_path, fp16=fp16, parity_image=parity_image)
    else:
        model, extra = load_model(source)
        shipped = fold(model)
        loss = str(extra.get("loss", "unknown"))
        parity = export_onnx(model, onnx_path, loss=loss, fp16=fp16, parity_image=parity_image)
        try:
            networks = loss_networks(loss)
        except ValueError:  # a loss this version does not know
            networks = []
        card = {
            "name": onnx_path.stem,
            "srtool_version": __version__,
            "architecture": asdict(shipped.config),
            "parameters": parameter_count(shipped),
            "scale": model.config.scale,
            "loss": loss,
            "loss_networks": networks,
            "source": {"file": source.name, "sha256": hashlib.sha256(source.read_bytes()).hexdigest()},
            "export_parity": parity,
        }
    card_path = onnx_path.with_suffix(".json")
    with atomic_output(card_path) as tmp:
        tmp.write_text(json.dumps(card, indent=2) + "\n")
    return onnx_path, card_path


def _export_weights_file(source: Path, state: dict, onnx_path: Path, *, fp16: bool,
                         parity_image: torch.Tensor | None) -> dict:  # fmt: skip
    """Export a community weights file; returns its card. The parity check runs two image sizes,
    neither the traced one, so a graph that kept the traced size fails it."""
    from sr_tool.community import load_community_model

    loaded = load_community_model(source, state)
    name = f"{source.name} ({loaded.description})"
    if fp16 and not loaded.supports_half:
        raise ExportError(f"{name}: this architecture does not run in fp16 (spandrel); export it without --fp16")
    image = parity_image if parity_image is not None else default_parity_image()
    image = image.mean(dim=1, keepdim=True) if loaded.in_channels == 1 else image[:, : loaded.in_channels]
    rule = loaded.size_rule
    checks = []
    with torch.no_grad():
        for h, w in (image.shape[-2:], (image.shape[-2] * 2 // 3, image.shape[-1] // 2)):
            crop = image[..., : _fit(h, rule), : _fit(w, rule)]
            if rule.square:
                side = min(crop.shape[-2:])
                crop = crop[..., :side, :side]
            checks.append((crop.contiguous(), loaded.net(crop)))
    # Traced at an odd size where the model allows it, so that branches which pad an input to a
    # multiple of a window are traced as taken, with the padding computed from the input's size.
    side = max(16, rule.minimum)
    height, width = (side + 3, side + 5) if rule.multiple_of == 1 and not rule.square else (side, side)
    pad_h, pad_w = rule.padding(height, width)
    example = torch.rand(1, loaded.in_channels, height + pad_h, width + pad_w)
    props = {f"srtool.{key}": value for key, value in loaded.metadata().items()}
    try:
        parity = _write_onnx(loaded.net, onnx_path, props, checks, fp16=fp16, example=example)
    except ExportError as exc:
        raise ExportError(f"{name}: {exc}") from exc
    except Exception as exc:  # the exporter's own errors: operators or Python control flow it cannot trace
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        first = first.split(" Please feel free")[0].split("  [Caused by")[0].rstrip(". ")  # the exporter's boilerplate
        raise ExportError(f"{name}: does not export to ONNX ({type(exc).__name__}: {first})") from exc
    return {
        "name": onnx_path.stem,
        "srtool_version": __version__,
        "architecture": loaded.architecture,
        "tags": list(loaded.tags),
        "purpose": loaded.purpose,
        "scale": loaded.scale,
        "size_rule": asdict(rule),
        "tiling": loaded.tiling,
        "parameters": sum(p.numel() for p in loaded.net.parameters()),
        "source": {"file": source.name, "sha256": loaded.sha256},
        "export_parity": parity,
    }


def _fit(side: int, rule) -> int:
    """The largest size <= ``side`` that meets ``rule`` (its minimum if ``side`` is smaller)."""
    return max(rule.minimum, side // rule.multiple_of * rule.multiple_of)


def default_parity_image() -> torch.Tensor:
    """A real photo (the Set14 zebra at 146x97, packaged with srtool) for the export parity check."""
    from importlib import resources

    from sr_tool.image_io import read_image

    return read_image(Path(str(resources.files("sr_tool") / "assets" / "parity.png"))).pixels


def _weight_aliases(net: nn.Module, proto) -> dict[str, str]:
    """The exporter merges initializers with identical values (e.g. untrained PReLU slopes); map each
    state-dict key it dropped to the initializer that now holds its value."""
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    aliases = {}
    for key, tensor in net.state_dict().items():
        if key in inits:
            continue
        value = tensor.detach().cpu().numpy()
        same = [n for n, a in inits.items() if a.size == value.size and np.array_equal(a.reshape(-1), value.reshape(-1))]
        if same:
            aliases[key] = same[0]
    return aliases


def _parity(path: Path, image: torch.Tensor, reference: torch.Tensor, tolerance: float) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # a failure is reported below, in one line
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    size = "x".join(map(str, image.shape[-2:]))
    try:
        out = session.run([OUTPUT], {INPUT: image.numpy().astype(np.float32)})[0]
    except Exception as exc:  # e.g. a reshape to sizes frozen at tracing time
        node = str(exc).split("Name:")[-1].split(" Status")[0].strip("' ") if "Name:" in str(exc) else type(exc).__name__
        raise ExportError(f"the ONNX graph fails at a {size} input (node {node}): it kept a size or a branch "
                          "from tracing") from exc  # fmt: skip
    if out.shape != tuple(reference.shape):
        raise ExportError(f"ONNX Runtime gives shape {out.shape} for a {size} input, PyTorch {tuple(reference.shape)}: "
                          "the graph kept a size from tracing")  # fmt: skip
    diff = float(np.abs(out - reference.numpy()).max())
    if not diff <= tolerance:
        raise ExportError(f"ONNX Runtime and PyTorch differ by {diff:.2e} (max abs) > {tolerance:.0e} at {size}")
    return {"max_abs_diff": diff, "tolerance": tolerance, "image_shape": list(image.shape)}


def model_from_onnx(path: str | Path, proto: onnx.ModelProto | None = None) -> nn.Module:
    """Rebuild the PyTorch model (fp32) from an srtool ONNX file's config and weights (or from
    ``proto``, already loaded; ``path`` then only names it)."""
    proto = proto if proto is not None else onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    if "srtool.config" not in meta:
        raise ValueError(f"{path}: not an srtool ONNX model (no srtool.config metadata)")
    model = build_model(config_from_dict(json.loads(meta["srtool.config"])))
    arrays = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    for key, name in json.loads(meta.get("srtool.weight_aliases", "{}")).items():
        arrays.setdefault(key, arrays[name])
    weights = {}
    for name, array in arrays.items():
        name = name[len(_FP16_PREFIX) :] if name.startswith(_FP16_PREFIX) else name
        weights[name] = torch.from_numpy(array.astype(np.float32))
    state = model.state_dict()
    missing = [k for k in state if k not in weights]
    if missing:
        raise ValueError(f"{path}: weights missing from the ONNX file: {', '.join(missing[:5])}")
    model.load_state_dict({k: weights[k].reshape(state[k].shape) for k in state})
    return model.eval()
