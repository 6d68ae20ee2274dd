import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from helpers import tiny_onnx, tiny_shipped_models
from sr_tool.cli import app
from sr_tool.evaluate import evaluate, judges_trained_on, load_pairs, most_different_box, summarise
from sr_tool.image_io import read_image
from sr_tool.upscale import Upscaler

runner = CliRunner()


def test_bicubic_row_reproduces_the_published_baseline(data_dir):
    pairs = load_pairs(data_dir / "Set5", 4)  # reads LR_bicubic/X4
    rows, _ = evaluate({"bicubic": Upscaler("bicubic", 4)}, pairs, 4, metrics=["psnr_y", "ssim_y"])
    table = summarise(rows)
    assert abs(table["bicubic"]["psnr_y"] - 28.42) <= 0.02 and abs(table["bicubic"]["ssim_y"] - 0.8104) < 0.001


def test_lr_is_made_when_the_folder_has_only_hr_images(tmp_path, data_dir):
    for name in ("baby.png", "bird.png"):
        Image.open(data_dir / "Set5" / "HR" / name).crop((0, 0, 99, 98)).save(tmp_path / name)
    pairs = load_pairs(tmp_path, 3)
    assert pairs[0].hr.shape[-2:] == (96, 99) and pairs[0].lr.pixels.shape[-2:] == (32, 33)


def test_eval_cli_writes_csv_table_and_comparison(tmp_path, data_dir):
    folder = tmp_path / "set"
    folder.mkdir()
    for name in ("baby.png", "bird.png"):
        Image.open(data_dir / "Set5" / "HR" / name).crop((0, 0, 96, 96)).save(folder / name)
    result = runner.invoke(app, ["eval", "--model", str(tiny_onnx(2)), "--data", str(folder), "-x", "2",
                                 "--csv", str(tmp_path / "e.csv"), "--compare", str(tmp_path / "c.png"),
                                 "--crop", "10,10,40", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("bicubic ") for line in lines) and any(line.startswith("tiny_x2_0 ") for line in lines)
    rows = list(csv.DictReader(open(tmp_path / "e.csv")))
    assert len(rows) == 4 and {r["model"] for r in rows} == {"bicubic", "tiny_x2_0"}
    assert all(float(r["psnr_y"]) > 10 and float(r["st_lpips"]) >= 0 for r in rows)
    assert all(r["st_lpips_vgg"] == "" for r in rows) and "ST-LPIPS-VGG" not in result.output  # on request only
    picture = np.asarray(Image.open(tmp_path / "c.png"))
    assert picture.shape[1] == 3 * 80 + 2 * 4  # three 40 px crops at 2x zoom, with gaps

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        result = runner.invoke(app, ["eval", "--model", str(tiny_onnx(2)), "--data", str(folder), "-x", "2", "--csv",
                                     str(tmp_path / "v.csv"), "--metrics", "psnr_y,st_lpips_vgg", "--device", "cpu",
                                     "--threads", "1"])  # fmt: skip
        assert torch.get_num_threads() == 1  # --threads reaches the metrics' torch networks too
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    assert "ST-LPIPS-VGG" in result.output and "SSIM" not in result.output  # only what was asked for
    rows = list(csv.DictReader(open(tmp_path / "v.csv")))
    assert all(float(r["st_lpips_vgg"]) >= 0 and float(r["psnr_y"]) > 10 for r in rows)
    assert all(r["st_lpips"] == r["ssim_y"] == r["ms_ssim"] == "" for r in rows)


def test_bench_cli_times_each_engine_and_tile():
    result = runner.invoke(app, ["bench", "--model", str(tiny_onnx(2)), "-x", "2", "--device", "cpu", "--size", "40x30",
                                 "--repeats", "1", "--tile", "0", "--tile", "64"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith(str(tiny_onnx(2)))]
    assert len(rows) == 4  # 2 tiles x 2 engines
    assert any("onnxruntime" in r for r in rows) and any(" torch " in r for r in rows)
    assert all(float(r.split()[5]) > 0 for r in rows)  # MP/s
    assert result.output.count("timing ") == 4  # says what it is doing before each measurement


def test_most_different_box_finds_where_two_images_differ():
    a = np.zeros((60, 80, 3), np.uint8)
    b = a.copy()
    b[30:40, 50:60] = 90
    assert most_different_box(a, b, 10) == (50, 30, 10, 90.0)
    x, y, size, mean = most_different_box(a, b, 200)  # clipped to the image
    assert (x, y, size) == (0, 0, 60) and mean == pytest.approx(90 * 100 / 3600)


def test_eval_compare_models_shows_where_two_models_differ_most(tmp_path, data_dir):
    folder = tmp_path / "set"
    folder.mkdir()
    for name in ("baby.png", "bird.png", "head.png"):
        Image.open(data_dir / "Set5" / "HR" / name).crop((0, 0, 128, 128)).save(folder / name)
    result = runner.invoke(app, ["eval", "--model", str(tiny_onnx(2)), "--data", str(folder), "-x", "2",
                                 "--csv", str(tmp_path / "e.csv"), "--compare", str(tmp_path / "d.png"),
                                 "--compare-models", "bicubic,tiny_x2_0", "--compare-count", "2", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if line.startswith("model"))
    assert "artifact" in header  # the artifact check is a default metric
    rows = list(csv.DictReader(open(tmp_path / "e.csv")))
    assert all(r["artifact"] for r in rows)
    picture = np.asarray(Image.open(tmp_path / "d.png"))
    assert picture.shape[1] == 3 * 96 * 3 + 2 * 6 and picture.shape[0] == 2 * (96 * 3 + 18 + 8)  # 2 rows of 3 crops


def test_eval_refuses_bad_options_before_any_work(tmp_path):
    missing = str(tmp_path / "no-such-folder")  # would fail later, when loading: options must fail first
    for options, message in ((["--crop", "1,2"], "--crop 1,2"), (["--compare-models", "pixel,nope"], "--compare-models")):
        result = runner.invoke(app, ["eval", "--model", "pixel", "--data", missing, "--compare", "x.png", *options])
        assert result.exit_code == 2 and message in result.output, result.output


def test_judges_a_model_trained_on_are_read_from_its_card(tmp_path):
    model = tmp_path / "m.onnx"
    (tmp_path / "m.json").write_text(json.dumps({"loss": "l1+0.05*elpips-alex"}))
    assert judges_trained_on(model) == {"st_lpips"}
    (tmp_path / "m.json").write_text(json.dumps({"loss": "l1"}))
    assert judges_trained_on(model) == set() and judges_trained_on(None) == set()


def test_classic_lpips_judge_offline_is_one_clear_error(tmp_path, data_dir, monkeypatch):
    import sr_tool.losses.deep as deep

    def offline(net, weights):
        raise deep.WeightsUnavailable("LPIPS (alex) needs torchvision's ImageNet alex weights, which could not be fetched")

    monkeypatch.setattr(deep, "_imagenet_trunk_state", offline)
    folder = tmp_path / "set"
    folder.mkdir()
    Image.open(data_dir / "Set5" / "HR" / "baby.png").crop((0, 0, 64, 64)).save(folder / "baby.png")
    result = runner.invoke(app, ["eval", "--model", "bicubic", "--data", str(folder), "-x", "2", "--csv",
                                 str(tmp_path / "e.csv"), "--metrics", "psnr_y,lpips_alex"])  # fmt: skip
    assert result.exit_code == 2 and "lpips_alex: LPIPS (alex) needs" in result.output, result.output


def test_classic_lpips_judge_scores_when_its_backbone_is_there(data_dir, monkeypatch):
    import torchvision

    import sr_tool.losses.deep as deep

    def random_trunk(net, weights):  # stands in for torchvision's cached ImageNet weights
        trunk = torchvision.models.alexnet() if net == "alex" else torchvision.models.vgg16()
        return {k[len("features.") :]: v for k, v in trunk.state_dict().items() if k.startswith("features.")}

    monkeypatch.setattr(deep, "_imagenet_trunk_state", random_trunk)
    pairs = load_pairs(data_dir / "Set5", 4)[:2]
    rows, _ = evaluate({"bicubic": Upscaler("bicubic", 4)}, pairs, 4, metrics=["psnr_y", "lpips_alex"])
    assert all(r.lpips_alex is not None and r.lpips_alex > 0 and r.st_lpips is None for r in rows)


def test_make_lr_writes_jpeg_and_noisy_sets_that_eval_reads(tmp_path, data_dir):
    from sr_tool.evaluate import make_lr_set
    from sr_tool.metrics import psnr_y

    folder = tmp_path / "set"
    folder.mkdir()
    for name in ("baby.png", "bird.png"):
        Image.open(data_dir / "Set5" / "HR" / name).crop((0, 0, 98, 96)).save(folder / name)
    clean = load_pairs(folder, 2)
    result = runner.invoke(app, ["make-lr", str(folder), str(tmp_path / "jpeg"), "-x", "2", "--jpeg", "40"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "jpeg").iterdir()) == ["babyx2.jpg", "birdx2.jpg"]
    from sr_tool.image_io import is_srtool_output

    assert not any(map(is_srtool_output, (tmp_path / "jpeg").iterdir()))  # inputs: upscale takes them from a folder
    jpeg = load_pairs(folder, 2, tmp_path / "jpeg")
    with Image.open(tmp_path / "jpeg" / "babyx2.jpg") as img:
        assert img.format == "JPEG" and img.size == (49, 48)
    loss = psnr_y(jpeg[0].lr.pixels, clean[0].lr.pixels).item()
    assert 25 < loss < 40  # a real, visible JPEG loss

    result = runner.invoke(app, ["make-lr", str(folder), str(tmp_path / "webp"), "-x", "2", "--webp", "50"])
    assert result.exit_code == 0, result.output
    webp = load_pairs(folder, 2, tmp_path / "webp")
    assert webp[0].lr.info.format == "WEBP" and abs(webp[0].lr.info.webp_quality - 50) <= 12
    assert 25 < psnr_y(webp[0].lr.pixels, clean[0].lr.pixels).item() < 45  # lossy
    with pytest.raises(ValueError, match="JPEG or WebP"):
        make_lr_set(folder, tmp_path / "both", 2, jpeg_quality=50, webp_quality=50)

    make_lr_set(folder, tmp_path / "noise", 2, noise_sigma=10, seed=1)
    noisy = load_pairs(folder, 2, tmp_path / "noise")
    residual = (noisy[0].lr.pixels - clean[0].lr.pixels) * 255
    unclipped = (clean[0].lr.pixels > 0.15) & (clean[0].lr.pixels < 0.85)
    assert abs(residual[unclipped].std().item() - 10) < 0.5
    again = make_lr_set(folder, tmp_path / "again", 2, noise_sigma=10, seed=1)
    assert np.array_equal(np.asarray(Image.open(again[0])), np.asarray(Image.open(tmp_path / "noise" / "babyx2.png")))

    result = runner.invoke(app, ["eval", "--model", str(tiny_onnx(2)), "--data", str(folder), "-x", "2", "--lr",
                                 str(tmp_path / "jpeg"), "--csv", str(tmp_path / "e.csv"), "--metrics", "psnr_y",
                                 "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    bicubic_on_jpeg = [float(r["psnr_y"]) for r in csv.DictReader(open(tmp_path / "e.csv")) if r["model"] == "bicubic"]
    clean_rows, _ = evaluate({"bicubic": Upscaler("bicubic", 2)}, clean, 2, metrics=["psnr_y"])
    assert all(j < c.psnr_y for j, c in zip(bicubic_on_jpeg, clean_rows))


def test_make_lr_saves_a_jpeg_set_on_as_png_or_resaved(tmp_path, data_dir):
    from sr_tool.evaluate import make_lr_set
    from sr_tool.jpeg_trace import past_jpeg_quality

    folder = tmp_path / "set"
    folder.mkdir()
    Image.open(data_dir / "Set14" / "HR" / "baboon.png").crop((0, 0, 240, 200)).save(folder / "baboon.png")
    make_lr_set(folder, tmp_path / "jpeg", 2, jpeg_quality=60)
    result = runner.invoke(app, ["make-lr", str(folder), str(tmp_path / "png"), "-x", "2", "--jpeg", "60", "--png"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["make-lr", str(folder), str(tmp_path / "re"), "-x", "2", "--jpeg", "60", "--resave", "95"])
    assert result.exit_code == 0, result.output
    jpeg, png, resaved = (read_image(tmp_path / d / f"baboonx2.{s}") for d, s in (("jpeg", "jpg"), ("png", "png"), ("re", "jpg")))
    assert png.info.format == "PNG" and np.array_equal(png.array, jpeg.array)  # the JPEG's pixels, kept losslessly
    assert resaved.info.jpeg_quality == 95 and not np.array_equal(resaved.array, jpeg.array)
    assert past_jpeg_quality(png.array) == past_jpeg_quality(resaved.array) == 60  # the first compression shows
    result = runner.invoke(app, ["make-lr", str(folder), str(tmp_path / "x"), "-x", "2", "--webp", "75", "--png"])
    assert result.exit_code == 2 and "give its quality with --jpeg Q" in result.output
    with pytest.raises(ValueError, match="applies to a JPEG set"):
        make_lr_set(folder, tmp_path / "x", 2, as_png=True)
    with pytest.raises(ValueError, match="not both"):
        make_lr_set(folder, tmp_path / "x", 2, jpeg_quality=60, as_png=True, resave_quality=90)


def test_make_lr_blurs_the_hr_before_the_bicubic(tmp_path, data_dir):
    from sr_tool.evaluate import make_lr_set
    from sr_tool.metrics import psnr_y

    folder = tmp_path / "set"
    folder.mkdir()
    Image.open(data_dir / "Set14" / "HR" / "baboon.png").crop((0, 0, 240, 200)).save(folder / "baboon.png")
    result = runner.invoke(app, ["make-lr", str(folder), str(tmp_path / "soft"), "-x", "4", "--blur", "1.5"])
    assert result.exit_code == 0, result.output
    make_lr_set(folder, tmp_path / "softer", 4, blur_sigma=3.0)
    sharp = load_pairs(folder, 4)[0].lr.pixels
    soft = load_pairs(folder, 4, tmp_path / "soft")[0].lr.pixels
    softer = load_pairs(folder, 4, tmp_path / "softer")[0].lr.pixels

    def detail(lr):  # energy of the LR's finest differences
        return float((lr[..., 1:] - lr[..., :-1]).abs().mean())

    assert detail(sharp) > detail(soft) > detail(softer)
    assert psnr_y(soft, sharp) > psnr_y(softer, sharp) > 15  # the same picture, softer
    with pytest.raises(ValueError, match="blur sigma"):
        make_lr_set(folder, tmp_path / "x", 4, blur_sigma=-1)


def test_an_lr_folder_missing_an_image_is_named(tmp_path, data_dir):
    folder, lr = tmp_path / "set", tmp_path / "lr"
    folder.mkdir(), lr.mkdir()
    Image.open(data_dir / "Set5" / "HR" / "baby.png").crop((0, 0, 64, 64)).save(folder / "baby.png")
    with pytest.raises(ValueError, match="no LR image for baby.png"):
        load_pairs(folder, 2, lr)
    Image.new("RGB", (30, 32)).save(lr / "baby.png")
    with pytest.raises(ValueError, match="30x32 px, expected 32x32"):
        load_pairs(folder, 2, lr)


def test_picture_options_are_checked_before_any_scoring(tmp_path, data_dir):
    folder = tmp_path / "set"
    folder.mkdir()
    Image.open(data_dir / "Set5" / "HR" / "baby.png").crop((0, 0, 64, 64)).save(folder / "baby.png")
    base = ["eval", "--model", str(tiny_onnx(2)), "--data", str(folder), "-x", "2", "--metrics", "psnr_y",
            "--csv", str(tmp_path / "e.csv"), "--device", "cpu"]  # fmt: skip
    result = runner.invoke(app, [*base, "--crop", "1,2,3"])
    assert result.exit_code == 2 and "give --compare" in result.output
    result = runner.invoke(app, [*base, "--compare", str(tmp_path / "c.png"), "--crop", "500,500,128"])
    assert result.exit_code == 2 and "outside the 64x64 image baby" in result.output
    assert not (tmp_path / "e.csv").exists()  # failed before the scoring wrote anything


def test_default_csv_names_say_which_lr_was_scored(tmp_path, data_dir, monkeypatch):
    from sr_tool.evaluate import make_lr_set

    folder = tmp_path / "set"
    folder.mkdir()
    Image.open(data_dir / "Set5" / "HR" / "baby.png").crop((0, 0, 64, 64)).save(folder / "baby.png")
    make_lr_set(folder, tmp_path / "jpeg40", 2, jpeg_quality=40)
    monkeypatch.chdir(tmp_path)
    for extra in ([], ["--lr", str(tmp_path / "jpeg40")]):
        result = runner.invoke(app, ["eval", "--model", str(tiny_onnx(2)), "--data", str(folder), "-x", "2",
                                     "--metrics", "psnr_y", "--device", "cpu", *extra])  # fmt: skip
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("eval_*.csv")) == ["eval_set-jpeg40_x2.csv", "eval_set_x2.csv"]


def test_upscale_region_matches_the_whole_image_output_there(data_dir):
    from sr_tool.evaluate import upscale_region

    up = Upscaler(str(tiny_onnx(2)), 2, device="cpu")
    lr = read_image(data_dir / "Set5" / "HR" / "bird.png")
    whole = up.upscale(lr).pixels
    for x, y, size in [(100, 60, 64), (0, 0, 40), (whole.shape[1] - 30, whole.shape[0] - 30, 30), (33, 17, 21)]:
        region = upscale_region(up, lr, x, y, size)
        assert region.shape == (size, size, 3), (x, y)
        assert np.abs(region.astype(int) - whole[y : y + size, x : x + size]).max() <= 1, (x, y)
    assert upscale_region(up, lr, 33, 17, 21, context=0).shape == (21, 21, 3)  # odd start: the far edge still covered
    with pytest.raises(ValueError, match="whole-number"):
        upscale_region(Upscaler("bicubic", 1.5), lr, 0, 0, 8)


def test_eval_warns_of_a_model_at_another_scale_and_footnotes_only_marked_judges(tmp_path, data_dir):
    from sr_tool.upscale import builtin_model_files

    folder = tmp_path / "set"
    folder.mkdir()
    Image.open(data_dir / "Set5" / "HR" / "baby.png").crop((0, 0, 96, 96)).save(folder / "baby.png")
    result = runner.invoke(app, ["eval", "--model", str(tiny_onnx(2)), "--data", str(folder), "-x", "4", "--csv",
                                 str(tmp_path / "e.csv"), "--metrics", "psnr_y", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "warning: tiny_x2_0.onnx is an x2 model; bicubic does the rest up to x4" in result.output
    if not builtin_model_files("perceptual").get(4):
        pytest.skip("built-in perceptual x4 not installed")
    args = ["eval", "-m", "perceptual", "--data", str(folder), "-x", "4", "--csv", str(tmp_path / "p.csv"), "--device", "cpu"]
    assert "not an independent judge" not in runner.invoke(app, [*args, "--metrics", "psnr_y"]).output  # no * shown
    assert "not an independent judge" in runner.invoke(app, [*args, "--metrics", "psnr_y,st_lpips"]).output


def test_eval_scores_the_default_route_as_upscale_runs_it(tmp_path, monkeypatch, data_dir):
    """-m default: clean LR gets the clean default model, noisy LR the photo model (as srtool upscale)."""
    import sr_tool.upscale as upscale
    from sr_tool.evaluate import make_lr_set

    models = tiny_shipped_models(tmp_path / "models", clean="msssim")
    monkeypatch.setattr(upscale, "shipped_models_dir", lambda: models)
    folder = tmp_path / "set"
    folder.mkdir()
    Image.open(data_dir / "Set5" / "HR" / "baby.png").crop((0, 0, 192, 192)).save(folder / "baby.png")
    make_lr_set(folder, tmp_path / "noise", 2, noise_sigma=12, seed=1)

    def scores(*options):
        result = runner.invoke(app, ["eval", "-m", "default", "-m", "msssim", "-m", "photo", "--data", str(folder), "-x", "2",
                                     "--metrics", "psnr_y", "--device", "cpu", "--csv", str(tmp_path / "e.csv"), *options])  # fmt: skip
        assert result.exit_code == 0, result.output
        said.insert(0, result.output)
        return {r["model"]: float(r["psnr_y"]) for r in csv.DictReader(open(tmp_path / "e.csv"))}

    said = []
    clean = scores()
    assert clean["default"] == clean["msssim"] != clean["photo"]
    assert "default: route: 1 to msssim_x2.onnx" in said[0]
    noisy = scores("--lr", str(tmp_path / "noise"))
    assert noisy["default"] == noisy["photo"] != noisy["msssim"]
    assert "default: route: 1 to photo_x2 at 1" in said[0]
