"""Tiny random-weight models exported to ONNX for inference tests, and synthetic test images."""

from functools import lru_cache
from pathlib import Path
import tempfile

import numpy as np
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


def smooth_scene(h=240, w=320) -> np.ndarray:
    """A clean 8-bit colour image with ramps, a disc and hard edges: structure but no noise."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 40 + 150 * x / w
    g = 60 + 120 * y / h
    b = np.where((x - w / 2) ** 2 + (y - h / 2) ** 2 < (h / 3) ** 2, 200.0, 50.0)
    b[:, : w // 4] = 120
    return np.clip(np.stack([r, g, b], axis=2) + 0.5, 0, 255).astype(np.uint8)


def with_noise(image: np.ndarray, sigma: float, seed=0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, image.shape)
    return np.clip(np.round(image + noise), 0, 255).astype(np.uint8)


def tiny_shipped_models(folder: Path, clean: str, scale: int = 2) -> Path:
    """``folder`` filled as the shipped models' folder with tiny models: ``clean`` (the default for
    clean inputs), photo and its partner pixel. Point ``sr_tool.upscale.shipped_models_dir`` at it."""
    import json
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate((clean, "photo", "pixel")):
        shutil.copy(tiny_onnx(scale, seed=seed), folder / f"{name}_x{scale}.onnx")
    (folder / f"photo_x{scale}.json").write_text(json.dumps({"scale": scale, "strength_partner": "pixel"}))
    return folder

