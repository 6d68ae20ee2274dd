"""The models shipped in models/: present, self-describing, and better than bicubic on a real image."""

import json
from pathlib import Path

import numpy as np
import pytest

from sr_tool.image_io import read_image, to_tensor
from sr_tool.metrics import psnr_y
from sr_tool.upscale import BUILTIN_MODELS, Upscaler, list_builtin_models, shipped_models_dir

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SHIPPED = [f"{name}_x{scale}" for name in BUILTIN_MODELS for scale in (2, 4)]


def test_all_six_models_are_installed():
    installed = {(e["name"], e["scale"]) for e in list_builtin_models()}
    assert installed >= {(n, s) for n in ("pixel", "msssim", "perceptual") for s in (2, 4)}


@pytest.mark.parametrize("name", SHIPPED)
def test_card_says_what_the_model_is_and_how_it_was_made(name):
    card = json.loads((shipped_models_dir() / f"{name}.json").read_text())
    assert card["name"] == name and f"_x{card['scale']}" in name
    assert (REPO / card["recipe"]).is_file() and card["recipe"] == f"train/recipes/{name}.yaml"
    assert card["steps"] > 0 and card["steps"] <= card["max_steps"] and card["wall_time_s"] > 0
    assert "H100" in card["hardware"] and card["data"]["train_images"] > 280
    assert card["validation"]["val/psnr_y"] > 20
    for set_name in ("Set5", "Set14", "BSD100"):
        bench = card["benchmarks"][set_name]
        assert bench["command"].startswith("srtool eval") and bench["psnr_y"] > 20
    assert card["export_parity"]["max_abs_diff"] <= card["export_parity"]["tolerance"]


def _tile_phase_pattern(gray: np.ndarray, period: int) -> float:
    """Largest mean of the high-passed image over the pixels of one phase (row % period, col %
    period), in levels: a checkerboard from the sub-pixel upsampling shows up here."""
    k = 5
    padded = np.pad(gray, k // 2, mode="reflect")
    high = gray - np.lib.stride_tricks.sliding_window_view(padded, (k, k)).mean(axis=(-1, -2))
    h, w = (n - n % period for n in high.shape)
    return float(np.abs(high[:h, :w].reshape(h // period, period, w // period, period).mean(axis=(0, 2))).max())


@pytest.mark.parametrize("name", SHIPPED)
def test_model_beats_bicubic_without_artifacts_on_a_real_image(name):
    scale = int(name[-1])
    hr_path, lr_path = DATA / "Set14" / "HR" / "zebra.png", DATA / "Set14" / "LR_bicubic" / f"X{scale}" / f"zebrax{scale}.png"
    if not lr_path.is_file():
        pytest.skip("benchmark data not found")
    lr, hr = read_image(lr_path), read_image(hr_path).array
    hr = hr[: hr.shape[0] - hr.shape[0] % scale, : hr.shape[1] - hr.shape[1] % scale]
    model_name = name.rsplit("_x", 1)[0]
    out = {m: Upscaler(m, scale, device="cpu").upscale(lr).pixels for m in ("bicubic", model_name)}
    psnr = {m: float(psnr_y(to_tensor(o), to_tensor(hr), scale)) for m, o in out.items()}
    assert psnr[model_name] > psnr["bicubic"] + 1.0, psnr
    sr, truth = out[model_name].astype(np.float64), hr.astype(np.float64)
    # no colour shift: channel means within a level of the ground truth's
    assert np.abs(sr.mean(axis=(0, 1)) - truth.mean(axis=(0, 1))).max() < 1.0
    # no checkerboard: the per-phase pattern is no stronger than the ground truth's, give or take a level
    pattern = _tile_phase_pattern(sr.mean(axis=2), scale)
    assert pattern < _tile_phase_pattern(truth.mean(axis=2), scale) + 1.0, pattern

