import csv

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from helpers import tiny_onnx
from sr_tool.cli import app
from sr_tool.evaluate import evaluate, load_pairs, summarise
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

    result = runner.invoke(app, ["eval", "--model", str(tiny_onnx(2)), "--data", str(folder), "-x", "2", "--csv",
                                 str(tmp_path / "v.csv"), "--metrics", "psnr_y,st_lpips_vgg", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "ST-LPIPS-VGG" in result.output
    rows = list(csv.DictReader(open(tmp_path / "v.csv")))
    assert all(float(r["st_lpips_vgg"]) >= 0 and r["st_lpips"] == "" and r["ssim_y"] for r in rows)


def test_bench_cli_times_each_engine_and_tile():
    result = runner.invoke(app, ["bench", "--model", str(tiny_onnx(2)), "-x", "2", "--device", "cpu", "--size", "40x30",
                                 "--repeats", "1", "--tile", "0", "--tile", "64"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith(str(tiny_onnx(2)))]
    assert len(rows) == 4  # 2 tiles x 2 engines
    assert any("onnxruntime" in r for r in rows) and any(" torch " in r for r in rows)
    assert all(float(r.split()[5]) > 0 for r in rows)  # MP/s
