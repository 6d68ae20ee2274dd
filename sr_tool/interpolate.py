"""Weight mixing: one model whose weights mix several models of the same architecture.

Two uses, one operation (a weighted mean of every float weight):

- **Network interpolation** (:func:`interpolate_onnx`): ``strength * a + (1 - strength) * b``, as ESRGAN
  (Wang et al. 2018) and Real-ESRGAN's denoise strength (``-dn``) do. Between a model trained for noisy,
  compressed input and its clean partner, ``strength`` sets how hard noise and JPEG artifacts are
  removed. The mix is made once, before any image runs; it costs about as much as loading the files.
- **Weight averaging** (:func:`average_onnx`, ``srtool average``): the mean of several fine-tunes of
  one model, a "model soup" (Wortsman et al. 2022). It often scores above each of them, because the
  mean sits nearer the middle of the flat region they all landed in.

Both work because the models were trained from one start, so their weights stay close. The ONNX
files hold inference (folded) weights, so re-parameterised models are mixed in their folded form.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def interpolate_onnx(model: str | Path, partner: str | Path, strength: float) -> onnx.ModelProto:
    """``model``'s graph and metadata with its float weights mixed with ``partner``'s:
    ``strength`` 1 is ``model``, 0 is ``partner``. Both must be the same architecture."""
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must be between 0 and 1, got {strength:g}")
    return average_onnx([model, partner], [strength, 1 - strength])


def average_onnx(models: Sequence[str | Path], weights: Sequence[float] | None = None) -> onnx.ModelProto:
    """The first model's graph and metadata with every float weight replaced by the weighted mean
    of that weight over ``models`` (equal weights by default; weights >= 0, normalised to sum 1).
    All must be the same architecture and scale; a ``ValueError`` names the first that is not."""
    return _average([(m, _parse(m, Path(m).read_bytes())) for m in models], weights)


def _average(sources: list[tuple[str | Path, onnx.ModelProto]], weights: Sequence[float] | None) -> onnx.ModelProto:
    shares = _shares(weights, len(sources))
    (first, base), *others = sources
    arrays = [{init.name: numpy_helper.to_array(init) for init in proto.graph.initializer} for _, proto in sources]
    for (path, proto), named in zip(others, arrays[1:]):
        _check_same_architecture(first, base, arrays[0], path, proto, named)
    for init in base.graph.initializer:
        x = arrays[0][init.name]
        if np.issubdtype(x.dtype, np.floating):
            mixed = sum(share * named[init.name].astype(np.float64) for share, named in zip(shares, arrays))
            init.CopyFrom(numpy_helper.from_array(np.asarray(mixed).astype(x.dtype), init.name))
    return base


def _shares(weights: Sequence[float] | None, count: int) -> list[float]:
    """``weights`` (equal if None) checked against ``count`` models and normalised to sum 1."""
    if not count:
        raise ValueError("no models to average")
    weights = [1.0] * count if weights is None else [float(w) for w in weights]
    if len(weights) != count:
        raise ValueError(f"{len(weights)} weights for {count} models")
    if min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"weights must be >= 0 and not all 0, got {', '.join(f'{w:g}' for w in weights)}")
    return [w / sum(weights) for w in weights]


def _parse(path: str | Path, data: bytes) -> onnx.ModelProto:
    try:
        return onnx.load_model_from_string(data)
    except Exception as err:  # protobuf's DecodeError and kin: not an ONNX file
        raise ValueError(f"{path}: not an ONNX model ({type(err).__name__})") from None


def _check_same_architecture(first, base: onnx.ModelProto, base_arrays: dict, path, proto: onnx.ModelProto,
                             arrays: dict) -> None:  # fmt: skip
    from sr_tool.engine import read_metadata

    def differs(what: str) -> ValueError:
        return ValueError(f"{path}: not the same architecture as {first} ({what})")

    if [n.op_type for n in base.graph.node] != [n.op_type for n in proto.graph.node]:
        raise differs("their graphs differ")
    scales = [read_metadata(None, m).get("scale") for m in (base, proto)]
    if scales[0] != scales[1]:
        raise differs(f"scale {scales[1]} against {scales[0]}")
    for name, x in base_arrays.items():
        y = arrays.get(name)
        if y is None or y.shape != x.shape or y.dtype != x.dtype:
            raise differs(f"weight {name} differs")
        if not np.issubdtype(x.dtype, np.floating) and not np.array_equal(x, y):
            raise differs(f"constant {name} differs")


def write_average(models: Sequence[str | Path], output: str | Path,
                  weights: Sequence[float] | None = None) -> tuple[Path, Path]:  # fmt: skip
    """Average ``models`` (:func:`average_onnx`) into ``output`` (.onnx) with a card beside it
    (``<name>.json``): what the first model's card says of the architecture, loss and data, and
    ``average_of``, each source with its SHA-256 and weight. Returns (onnx path, card path)."""
    import hashlib

    from sr_tool import __version__
    from sr_tool.files import atomic_output

    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise ValueError(f"{output}: the average is an ONNX file; name it .onnx")
    if any(Path(m).resolve() == output.resolve() for m in models):
        raise ValueError(f"{output}: is one of the models to average; write the average to a new file")
    contents = [Path(m).read_bytes() for m in models]  # each file read once: parsed and hashed
    proto = _average([(m, _parse(m, data)) for m, data in zip(models, contents)], weights)
    kept = [p for p in proto.metadata_props if p.key != "srtool.steps"]  # the first model's training steps
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    first_card = Path(models[0]).with_suffix(".json")
    try:
        described = json.loads(first_card.read_text()) if first_card.is_file() else {}
    except json.JSONDecodeError as err:
        raise ValueError(f"{first_card}: not a model card ({err.msg} at line {err.lineno})") from None
    # what the sources share; their training records and scores describe each source, not the mean
    shared = ("architecture", "preset", "parameters", "scale", "loss", "loss_networks", "recipe", "data")
    card = {"name": output.stem, "srtool_version": __version__, **{k: described[k] for k in shared if k in described}}
    card["average_of"] = [
        {"file": str(m), "sha256": hashlib.sha256(data).hexdigest(), "weight": share}
        for m, data, share in zip(models, contents, _shares(weights, len(models)))
    ]
    with atomic_output(output) as tmp:
        onnx.save(proto, str(tmp))
    card_path = output.with_suffix(".json")
    with atomic_output(card_path) as tmp:
        tmp.write_text(json.dumps(card, indent=2) + "\n")
    return output, card_path
