"""Tiny random-weight models exported to ONNX for inference tests."""

from functools import lru_cache
from pathlib import Path
import tempfile

import torch

from sr_tool.archs import build_model, preset_config
from sr_tool.export import export_onnx

_DIR = Path(tempfile.mkdtemp(prefix="srtool-test-models-"))


@lru_cache(maxsize=None)
def tiny_onnx(scale: int = 4, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = build_model(preset_config("srresnet-tiny", scale))
    for module in model.modules():  # untrained PReLU slopes are all equal; make the model less trivial
        if isinstance(module, torch.nn.PReLU):
            module.weight.data.uniform_(0.0, 0.5)
    path = _DIR / f"tiny_x{scale}_{seed}.onnx"
    export_onnx(model, path, loss="l1")
    return path
