"""The models shipped in models/: present, self-describing, and better than bicubic on a real image."""

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from sr_tool.evaluate import upscale_region
from sr_tool.image_io import read_image, to_tensor, write_image
from sr_tool.losses import loss_networks
from sr_tool.metrics import ARTIFACT_THRESHOLD, psnr_y, spectral_excess
from sr_tool.upscale import Upscaler, list_builtin_models, shipped_models_dir

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SHIPPED = [f"{e['name']}_x{e['scale']}" for e in list_builtin_models()]  # every installed model file


def test_all_eight_models_are_installed():
    installed = {(e["name"], e["scale"]) for e in list_builtin_models()}
    assert installed >= {(n, s) for n in ("pixel", "msssim", "perceptual", "photo") for s in (2, 4)}


@pytest.mark.parametrize("name", SHIPPED)
def test_card_says_what_the_model_is_and_how_it_was_made(name):
    card = json.loads((shipped_models_dir() / f"{name}.json").read_text())
    assert card["name"] == name and f"_x{card['scale']}" in name
    assert (REPO / card["recipe"]).is_file() and card["recipe"] == f"train/recipes/{name}.yaml"
    assert card["steps"] > 0 and card["steps"] <= card["max_steps"] and card["wall_time_s"] > 0
    assert card["hardware"] not in ("", "not recorded") and card["data"]["train_images"] > 280
    assert card["loss_networks"] == loss_networks(card["loss"])  # which deep networks the loss saw
    assert card["validation"]["val/psnr_y"] > 20
    for set_name in ("Set5", "Set14", "BSD100"):
        bench = card["benchmarks"][set_name]
        assert bench["command"].startswith("srtool eval") and bench["psnr_y"] > 20
    assert card["export_parity"]["max_abs_diff"] <= card["export_parity"]["tolerance"]


@pytest.mark.parametrize("name", SHIPPED)
def test_model_beats_bicubic_without_colour_shift_on_a_real_image(name):
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


# -- the artifact check ----------------------------------------------------------------------------
# tests/data/crosshatch_x4: crops of what the perceptual_x4 model shipped until a287687 made of the first
# ten BSD100 images; it painted a diagonal crosshatch (../shared/evidence). The check must flag it.
CROSSHATCH = sorted((REPO / "tests" / "data" / "crosshatch_x4").glob("*.png"))


def _crop_box(path: Path) -> tuple[str, int, int]:
    stem, x, y = path.stem.split("_")
    return stem, int(x[1:]), int(y[1:])


def _hr_crop(path: Path, scale: int) -> np.ndarray:
    stem, x, y = _crop_box(path)
    return read_image(DATA / "BSD100" / "HR" / f"{stem}.jpg").array[y : y + 320, x : x + 320]


@lru_cache(maxsize=None)
def _model_crop_excess(model: str, scale: int) -> tuple[float, ...]:
    """spectral_excess of a model's output on each crop: the LR crop with 8 LR pixels of context."""
    up, values = Upscaler(model, scale, device="cpu"), []
    for path in CROSSHATCH:
        stem, x, y = _crop_box(path)
        lr = read_image(DATA / "BSD100" / "LR_bicubic" / f"X{scale}" / f"{stem}x{scale}.png")
        values.append(_excess(upscale_region(up, lr, x, y, 320), _hr_crop(path, scale)))
    return tuple(values)


def _excess(sr: np.ndarray, hr: np.ndarray) -> float:
    return float(spectral_excess(to_tensor(sr), to_tensor(hr)))


def test_artifact_check_flags_the_old_crosshatch_and_passes_pixel_msssim_and_the_truth(data_dir):
    old = [_excess(read_image(p).array, _hr_crop(p, 4)) for p in CROSSHATCH]
    assert len(old) == 10 and np.median(old) > ARTIFACT_THRESHOLD, old
    truth = [_excess(_hr_crop(p, 4), _hr_crop(p, 4)) for p in CROSSHATCH]
    assert max(truth) == 0.0
    for model in ("pixel", "msssim"):
        assert np.median(_model_crop_excess(model, 4)) < ARTIFACT_THRESHOLD, model


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_passes_the_artifact_check(name, data_dir):
    model, scale = name.rsplit("_x", 1)
    values = _model_crop_excess(model, int(scale))
    assert np.median(values) < ARTIFACT_THRESHOLD, values


# -- the photo model (issue #11) ---------------------------------------------------------------------
PHOTO = [name for name in SHIPPED if name.startswith("photo_")]


def _jpeg_lr(data_dir: Path, stem: str, scale: int, folder: Path):
    """Set14 ``stem``'s LR saved as JPEG 75 (as `srtool make-lr --jpeg 75` makes it), and its HR."""
    lr = read_image(data_dir / "Set14" / "LR_bicubic" / f"X{scale}" / f"{stem}x{scale}.png")
    jpeg = read_image(write_image(folder / f"{stem}.jpg", lr.array, info=lr.info, quality=75))
    hr = read_image(data_dir / "Set14" / "HR" / f"{stem}.png").array
    return jpeg, hr[: jpeg.size[1] * scale, : jpeg.size[0] * scale]


@pytest.mark.parametrize("name", PHOTO)
def test_photo_model_restores_jpeg_inputs_that_pixel_sharpens(name, data_dir, tmp_path):
    """On zebra's LR saved as JPEG 75 (8x8 blocks over the stripes), photo must beat pixel and bicubic
    clearly; on four such images the median paints no periodic pattern; its --strength partner is pixel."""
    scale = int(name[-1])
    card = json.loads((shipped_models_dir() / f"{name}.json").read_text())
    assert card["strength_partner"] == "pixel" and card["data"]["degradations"] != "clean"
    models = {m: Upscaler(m, scale, device="cpu") for m in ("bicubic", "pixel", "photo")}
    jpeg, hr = _jpeg_lr(data_dir, "zebra", scale, tmp_path)
    out = {m: up.upscale(jpeg).pixels for m, up in models.items()}
    psnr = {m: float(psnr_y(to_tensor(o), to_tensor(hr), scale)) for m, o in out.items()}
    assert psnr["photo"] > psnr["pixel"] + 0.3 and psnr["photo"] > psnr["bicubic"] + 0.5, psnr
    excess = [_excess(out["photo"], hr)] + [_excess(models["photo"].upscale(jpeg).pixels, hr)
              for jpeg, hr in (_jpeg_lr(data_dir, s, scale, tmp_path) for s in ("baboon", "comic", "lenna"))]  # fmt: skip
    assert np.median(excess) < ARTIFACT_THRESHOLD, excess
