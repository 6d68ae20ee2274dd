import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from helpers import tiny_onnx
from sr_tool.cli import app
from sr_tool.engine import read_metadata
from sr_tool.image_io import LoadedImage, read_image
from sr_tool.interpolate import average_onnx, interpolate_onnx
from sr_tool.upscale import Upscaler

runner = CliRunner()


def _weights(proto):
    return {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}


def test_weights_are_the_linear_mix_and_the_ends_are_the_two_models():
    a, b = tiny_onnx(2, seed=0), tiny_onnx(2, seed=1)
    wa, wb = _weights(onnx.load(a)), _weights(onnx.load(b))
    half = _weights(interpolate_onnx(a, b, 0.5))
    floats = [k for k in wa if np.issubdtype(wa[k].dtype, np.floating)]
    assert floats and any(not np.allclose(wa[k], wb[k]) for k in floats)
    for k in floats:
        np.testing.assert_allclose(half[k], (wa[k] + wb[k]) / 2, rtol=1e-6, atol=1e-7)
    ends = _weights(interpolate_onnx(a, b, 1.0)), _weights(interpolate_onnx(a, b, 0.0))
    assert all(np.array_equal(ends[0][k], wa[k]) and np.array_equal(ends[1][k], wb[k]) for k in floats)


def test_other_architectures_and_strengths_out_of_range_are_refused():
    with pytest.raises(ValueError, match="not the same architecture"):
        interpolate_onnx(tiny_onnx(2), tiny_onnx(4), 0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        interpolate_onnx(tiny_onnx(2), tiny_onnx(2, seed=1), 1.5)


@pytest.fixture
def photo_pair(tmp_path):
    """A 'photo' model whose card names a clean partner file beside it."""
    shutil.copy(tiny_onnx(2, seed=0), tmp_path / "photo_x2.onnx")
    shutil.copy(tiny_onnx(2, seed=1), tmp_path / "clean_x2.onnx")
    (tmp_path / "photo_x2.json").write_text(json.dumps({"scale": 2, "strength_partner": "clean_x2.onnx"}))
    return tmp_path / "photo_x2.onnx", tmp_path / "clean_x2.onnx"


@pytest.mark.parametrize("engine", ["onnxruntime", "torch"])
def test_strength_runs_the_mix_on_both_engines(photo_pair, engine):
    photo, clean = photo_pair
    image = LoadedImage.from_tensors(read_image("examples/zebra.png").pixels[..., :40, :48])
    run = lambda model, **kw: Upscaler(str(model), 2, engine=engine, device="cpu", **kw).upscale(image).pixels  # noqa: E731
    assert np.array_equal(run(photo, strength=1.0), run(photo))
    assert np.array_equal(run(photo, strength=0.0), run(clean))
    middle = run(photo, strength=0.5).astype(int)
    assert not np.array_equal(middle, run(photo).astype(int)) and not np.array_equal(middle, run(clean).astype(int))
    assert "at strength 0.5 (mixed with clean_x2.onnx)" in Upscaler(str(photo), 2, device="cpu", strength=0.5).description


def test_cli_strength_needs_a_model_with_a_partner(tmp_path, photo_pair):
    image = tmp_path / "in.png"
    shutil.copy("examples/zebra.png", image)
    result = runner.invoke(app, ["upscale", str(image), "-x", "2", "-m", str(tiny_onnx(2)), "--strength", "0.5", "-q"])
    assert result.exit_code == 2 and "names no strength_partner" in result.output
    result = runner.invoke(app, ["upscale", str(image), "-x", "2", "-m", str(photo_pair[0]), "--strength", "0.3", "-q",
                                 "-o", str(tmp_path / "out.png")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert read_image(tmp_path / "out.png").size == (292, 194)


def test_average_is_the_weighted_mean_of_every_float_weight():
    paths = [tiny_onnx(2, seed=s) for s in (0, 1, 2)]
    ws = [_weights(onnx.load(p)) for p in paths]
    floats = [k for k in ws[0] if np.issubdtype(ws[0][k].dtype, np.floating)]
    mean, weighted = _weights(average_onnx(paths)), _weights(average_onnx(paths, [1, 0, 3]))
    for k in floats:
        np.testing.assert_allclose(mean[k], (ws[0][k] + ws[1][k] + ws[2][k]) / 3, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(weighted[k], (ws[0][k] + 3 * ws[2][k]) / 4, rtol=1e-5, atol=1e-7)


def test_average_refuses_other_scales_bad_weights_and_files_that_are_not_models(tmp_path):
    with pytest.raises(ValueError, match="not the same architecture"):
        average_onnx([tiny_onnx(2), tiny_onnx(2, seed=1), tiny_onnx(4)])
    with pytest.raises(ValueError, match="2 weights for 3 models"):
        average_onnx([tiny_onnx(2)] * 3, [1, 1])
    with pytest.raises(ValueError, match=">= 0"):
        average_onnx([tiny_onnx(2), tiny_onnx(2, seed=1)], [1, -1])
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.onnx: not an ONNX model"):
        average_onnx([tiny_onnx(2), junk])


def test_cli_average_writes_a_model_and_a_card_that_names_its_sources(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    shutil.copy(tiny_onnx(2, seed=0), a)
    shutil.copy(tiny_onnx(2, seed=1), b)
    proto = onnx.load(a)  # a training export records its steps: they describe a, not the mean
    proto.metadata_props.add(key="srtool.steps", value="7")
    onnx.save(proto, a)
    (tmp_path / "a.json").write_text(json.dumps({"name": "a", "scale": 2, "loss": "l1", "steps": 7, "validation": {}}))
    out = tmp_path / "soup" / "mean.onnx"
    result = runner.invoke(app, ["average", str(a), str(b), "-o", str(out), "--weights", "3,1"])
    assert result.exit_code == 0, result.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["name"] == "mean" and card["loss"] == "l1" and "steps" not in card and "validation" not in card
    assert [(s["file"], s["weight"]) for s in card["average_of"]] == [(str(a), 0.75), (str(b), 0.25)]
    written, expected = _weights(onnx.load(out)), _weights(interpolate_onnx(a, b, 0.75))
    metadata = read_metadata(out)
    assert metadata["scale"] == "2" and "steps" not in metadata and read_metadata(a)["steps"] == "7"
    assert all(np.allclose(written[k], expected[k], rtol=1e-5, atol=1e-7) for k in expected)
    image = LoadedImage.from_tensors(read_image("examples/zebra.png").pixels[..., :40, :48])
    mixed = Upscaler(str(out), 2, device="cpu").upscale(image).pixels
    assert mixed.shape[:2] == (80, 96)
    assert not np.array_equal(mixed, Upscaler(str(a), 2, device="cpu").upscale(image).pixels)


def test_cli_average_refuses_bad_input_with_one_line_and_keeps_the_inputs(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    shutil.copy(tiny_onnx(2), a)
    shutil.copy(tiny_onnx(2, seed=1), b)
    (tmp_path / "b.json").write_text("{not json")
    before = a.read_bytes()
    for args, message in [
        ([str(a), str(tiny_onnx(2, seed=1)), "-o", str(a)], "is one of the models to average"),
        ([str(a), "missing.onnx", "-o", str(tmp_path / "o.onnx")], "missing.onnx: no such file"),
        ([str(a), "model.pt", "-o", str(tmp_path / "o.onnx")], "model.pt: srtool averages ONNX models; export it first"),
        ([str(a), str(tiny_onnx(4)), "-o", str(tmp_path / "o.onnx")], "not the same architecture"),
        ([str(a), str(a), "--weights", "1,x", "-o", str(tmp_path / "o.onnx")], "--weights 1,x: expected numbers"),
        ([str(b), str(a), "-o", str(tmp_path / "o.onnx")], "b.json: not a model card"),
    ]:
        result = runner.invoke(app, ["average", *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    assert a.read_bytes() == before and not (tmp_path / "o.onnx").exists()
