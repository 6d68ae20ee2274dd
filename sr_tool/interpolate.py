"""Network interpolation: one model whose weights mix two models of the same architecture.

``strength * a + (1 - strength) * b`` for every weight, as ESRGAN (Wang et al. 2018) and Real-ESRGAN's
denoise strength (``-dn``) do. Between a model trained for noisy, compressed input and its clean
partner, ``strength`` sets how hard noise and JPEG artifacts are removed. It works because the two
were fine-tuned from one start, so their weights stay close. The mix is made once, before any
image runs; it costs about as much as loading the two files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def interpolate_onnx(model: str | Path, partner: str | Path, strength: float) -> onnx.ModelProto:
    """``model``'s graph and metadata with its float weights mixed with ``partner``'s:
    ``strength`` 1 is ``model``, 0 is ``partner``. Both must be the same architecture."""
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must be between 0 and 1, got {strength:g}")
    a, b = onnx.load(str(model)), onnx.load(str(partner))
    if [n.op_type for n in a.graph.node] != [n.op_type for n in b.graph.node]:
        raise ValueError(f"{partner}: not the same architecture as {model} (their graphs differ)")
    others = {init.name: init for init in b.graph.initializer}
    for init in a.graph.initializer:
        x = numpy_helper.to_array(init)
        other = others.get(init.name)
        y = numpy_helper.to_array(other) if other is not None else None
        if y is None or y.shape != x.shape or y.dtype != x.dtype:
            raise ValueError(f"{partner}: not the same architecture as {model} (weight {init.name} differs)")
        if np.issubdtype(x.dtype, np.floating):
            mixed = strength * x.astype(np.float64) + (1 - strength) * y.astype(np.float64)
            init.CopyFrom(numpy_helper.from_array(mixed.astype(x.dtype), init.name))
        elif not np.array_equal(x, y):
            raise ValueError(f"{partner}: not the same architecture as {model} (constant {init.name} differs)")
    return a
