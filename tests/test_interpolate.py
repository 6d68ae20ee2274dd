import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from helpers import tiny_onnx
from sr_tool.cli import app
from sr_tool.image_io import LoadedImage, read_image
from sr_tool.interpolate import interpolate_onnx
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
