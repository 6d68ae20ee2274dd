import csv

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from helpers import smooth_scene, tiny_onnx, with_noise
from sr_tool.blind import BlindScore, score_blind_test, write_blind_test
from sr_tool.cli import app
from sr_tool.evaluate import Pair

runner = CliRunner()
LABEL = 18  # px of the label strip above each tile (sr_tool.image_io.label_image)


def _test_set(count=12):
    """HR images and two models' outputs: "flat" is the HR, "spotted" the HR with a bright square
    at a place that moves from image to image, so the window where they differ is known."""
    rng = np.random.default_rng(0)
    pairs, outputs, spots = [], {"flat": {}, "spotted": {}}, {}
    for i in range(count):
        hr = rng.integers(40, 60, (64, 80, 3), dtype=np.uint8)
        name = f"img{i}"
        pairs.append(Pair(name, torch.from_numpy(hr).permute(2, 0, 1)[None].float() / 255, lr=None))
        spotted = hr.copy()
        x, y = 2 + 3 * i, 30 - 2 * i
        spotted[y : y + 16, x : x + 16] = 250
        outputs["flat"][name], outputs["spotted"][name], spots[name] = hr, spotted, (x, y)
    return pairs, outputs, spots


def test_pairs_show_where_the_models_differ_with_the_sides_shuffled_and_a_key(tmp_path):
    pairs, outputs, spots = _test_set()
    write_blind_test(outputs, pairs, "flat", "spotted", tmp_path / "t", count=10, size=16, zoom=2)
    key = list(csv.DictReader(open(tmp_path / "t" / "key.csv")))
    assert len(key) == 10 and len({row["image"] for row in key}) == 10
    assert {row["A"] for row in key} == {"flat", "spotted"}  # both sides used
    page = (tmp_path / "t" / "pairs" / "judge.html").read_text()  # for judges in a browser: every pair, no key
    assert all(f'src="{row["pair"]}.png"' in page and f'name="{row["pair"]}" value="B"' in page for row in key)
    assert "flat" not in page and "spotted" not in page
    answers = list(csv.DictReader(open(tmp_path / "t" / "answers.csv")))
    assert [row["pair"] for row in answers] == [row["pair"] for row in key] and all(not row["choice"] for row in answers)
    for row in key:
        assert (int(row["x"]), int(row["y"]), int(row["size"])) == (*spots[row["image"]], 16)
        picture = np.asarray(Image.open(tmp_path / "t" / "pairs" / f"{row['pair']}.png"))
        assert picture.shape == (LABEL + 32, 3 * 32 + 2 * 12, 3)
        a, truth, b = picture[LABEL + 16, 16], picture[LABEL + 16, 32 + 12 + 16], picture[LABEL + 16, 2 * 44 + 16]
        spotted_side = "A" if row["A"] == "spotted" else "B"
        assert (a if spotted_side == "A" else b).tolist() == [250] * 3  # the crop of the model the key names
        assert max((b if spotted_side == "A" else a).tolist()) < 60 and max(truth.tolist()) < 60


def test_a_folder_with_a_test_is_not_overwritten_and_names_must_be_scored(tmp_path):
    pairs, outputs, _ = _test_set(3)
    write_blind_test(outputs, pairs, "flat", "spotted", tmp_path, size=16)
    before = (tmp_path / "key.csv").read_text()
    with pytest.raises(ValueError, match="already holds a blind test"):
        write_blind_test(outputs, pairs, "spotted", "flat", tmp_path, size=16, seed=1)
    assert (tmp_path / "key.csv").read_text() == before
    with pytest.raises(ValueError, match="'other' is not one of the models scored"):
        write_blind_test(outputs, pairs, "flat", "other", tmp_path / "new")


def _answer(folder, choose):
    key = list(csv.DictReader(open(folder / "key.csv")))
    with open(folder / "answers.csv", "w", newline="") as f:
        f.write("pair,choice\n" + "".join(f"{row['pair']},{choose(row)}\n" for row in key))


def test_score_counts_the_judges_choices_against_the_key(tmp_path):
    pairs, outputs, _ = _test_set(20)
    write_blind_test(outputs, pairs, "flat", "spotted", tmp_path, size=16)
    _answer(tmp_path, lambda row: "a" if row["A"] == "flat" else "B")  # always flat, case ignored
    score = score_blind_test(tmp_path)
    assert score.wins == {"flat": 20, "spotted": 0} and score.unanswered == 0 and score.p_value < 1e-5
    _answer(tmp_path, lambda row: "" if row["pair"] == "pair-01" else ("A" if row["A"] == "spotted" else "B"))
    score = score_blind_test(tmp_path)
    assert score.wins == {"flat": 0, "spotted": 19} and score.unanswered == 1


def test_p_value_is_the_two_sided_binomial_test():
    assert BlindScore({"a": 3, "b": 17}, 0).p_value == pytest.approx(2 * (1 + 20 + 190 + 1140) / 2**20)
    assert BlindScore({"a": 14, "b": 6}, 0).p_value == pytest.approx(2 * 60460 / 2**20)
    assert BlindScore({"a": 10, "b": 10}, 0).p_value == 1.0 and BlindScore({"a": 0, "b": 0}, 5).p_value == 1.0


@pytest.mark.parametrize("answers, message", [
    ("pair,choice\npair-01,C\n", "line 2: the choice must be A or B, not 'C'"),
    ("pair,choice\npair-09,A\n", "line 2: 'pair-09' is not a pair of this test"),
    ("pair,choice\npair-01,A\npair-01,B\n", "line 3: pair-01 is answered twice"),
    ("pair\npair-01\n", "no column choice"),
])  # fmt: skip
def test_bad_answers_are_one_clear_error(tmp_path, answers, message):
    pairs, outputs, _ = _test_set(3)
    write_blind_test(outputs, pairs, "flat", "spotted", tmp_path, size=16)
    (tmp_path / "answers.csv").write_text(answers)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        score_blind_test(tmp_path)


def test_eval_blind_and_blind_score_cli(tmp_path):
    (folder := tmp_path / "set").mkdir()
    for i in range(4):  # the two models differ most in the noise
        Image.fromarray(with_noise(smooth_scene(48, 48), 30, seed=i)).save(folder / f"n{i}.png")
    model = str(tiny_onnx(2))
    args = ["eval", "--model", model, "--data", str(folder), "-x", "2", "--csv", str(tmp_path / "e.csv"),
            "--metrics", "psnr_y", "--device", "cpu", "--compare-models", "bicubic,tiny_x2_0"]  # fmt: skip
    result = runner.invoke(app, [*args, "--blind", str(tmp_path / "b"), "--compare-count", "3"])
    assert result.exit_code == 0, result.output
    assert "blind test: 3 pairs" in result.output and len(list((tmp_path / "b" / "pairs").glob("*.png"))) == 3
    result = runner.invoke(app, [*args, "--blind", str(tmp_path / "b")])  # refused before any work
    assert result.exit_code == 2 and "already holds a blind test" in result.output
    _answer(tmp_path / "b", lambda row: "A" if row["A"] == "tiny_x2_0" else "B")
    result = runner.invoke(app, ["blind-score", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert "tiny_x2_0: preferred in 3 of 3 pairs (100%)" in result.output and "bicubic: preferred in 0 of 3" in result.output
    result = runner.invoke(app, ["blind-score", str(tmp_path / "set")])
    assert result.exit_code == 2 and "key.csv: not found" in result.output


def test_eval_blind_needs_the_pair_of_models(tmp_path):
    result = runner.invoke(app, ["eval", "--model", "pixel", "--data", str(tmp_path / "none"), "--blind", str(tmp_path / "b")])
    assert result.exit_code == 2 and "--compare-models" in result.output, result.output
