"""Community models through spandrel: tiny random-weight networks of six published architectures,
saved as .pth and .safetensors, then loaded, upscaled (whole and tiled), exported and listed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner
from spandrel.architectures.Compact import Compact
from spandrel.architectures.ESRGAN import ESRGAN
from spandrel.architectures.OmniSR import OmniSR
from spandrel.architectures.PLKSR import RealPLKSR
from spandrel.architectures.SPAN import SPAN
from spandrel.architectures.SwinIR import SwinIR

from helpers import tiny_onnx
from sr_tool.community import CommunityModelError, load_community_model, read_state_dict
from sr_tool.engine import EngineError, make_engine
from sr_tool.export import export_model_file
from sr_tool.image_io import LoadedImage, read_image
from sr_tool.upscale import ModelNotFound, TileSettings, Upscaler, builtin_model_files, list_user_models, resolve_model

# name: (builder, scale, spandrel's architecture name, exact tiling: the receptive field fits the tile pad)
ARCHITECTURES = {
    "esrgan": (lambda: ESRGAN(num_filters=8, num_blocks=1, scale=4), 4, "ESRGAN", True),
    "swinir": (lambda: SwinIR(img_size=16, embed_dim=12, depths=[2], num_heads=[2], window_size=4, upscale=2,
                              upsampler="pixelshuffledirect", resi_connection="1conv"), 2, "SwinIR", True),
    "span": (lambda: SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2), 2, "SPAN", True),
    "compact": (lambda: Compact(num_feat=8, num_conv=2, upscale=4), 4, "RealESRGAN Compact", True),
    "plksr": (lambda: RealPLKSR(dim=16, n_blocks=2, upscaling_factor=2, kernel_size=7), 2, "PLKSR", True),
    # OmniSR's grid attention reaches across the whole image: tiles cannot match it exactly
    "omnisr": (lambda: OmniSR(num_feat=16, block_num=1, up_scale=2, window_size=4, pe=True), 2, "OmniSR", False),
}  # fmt: skip


def _state_dict(name: str) -> dict:
    torch.manual_seed(0)
    net = ARCHITECTURES[name][0]()
    for module in net.modules():  # untrained scalars (PReLU slopes, attention scales) are all equal
        if isinstance(module, torch.nn.PReLU):
            module.weight.data.uniform_(0.0, 0.5)
    return {k: v.contiguous() for k, v in net.state_dict().items()}


@pytest.fixture(scope="module")
def weights_files(tmp_path_factory) -> dict[tuple[str, str], Path]:
    folder = tmp_path_factory.mktemp("community")
    files = {}
    for name in ARCHITECTURES:
        state = _state_dict(name)
        files[name, ".pth"] = folder / f"{name}.pth"
        torch.save({"params_ema": state}, files[name, ".pth"])  # BasicSR's layout: spandrel unwraps it
        files[name, ".safetensors"] = folder / f"{name}.safetensors"
        save_file(state, str(files[name, ".safetensors"]))
    return files


@pytest.fixture(scope="module")
def image():
    return read_image(Path(__file__).parents[1] / "sr_tool" / "assets" / "parity.png")  # 146x97 photo


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_loads_architecture_and_scale_from_either_format(weights_files, name, suffix):
    loaded = load_community_model(weights_files[name, suffix])
    _, scale, architecture, _ = ARCHITECTURES[name]
    assert (loaded.architecture, loaded.scale, loaded.in_channels, loaded.out_channels) == (architecture, scale, 3, 3)
    assert len(loaded.sha256) == 64 and loaded.path == weights_files[name, suffix]


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_upscale_size_and_tiles_match_the_whole_image(weights_files, image, name):
    _, scale, _, exact = ARCHITECTURES[name]
    path = weights_files[name, ".safetensors"]
    whole = Upscaler(str(path), scale, tiles=TileSettings(tile=4096))
    assert whole.engine.name == "torch"  # chosen for a weights file
    result = whole.upscale(image)
    assert result.size == (146 * scale, 97 * scale)
    if not exact:
        return
    tiled = Upscaler(str(path), scale, tiles=TileSettings(tile=64, pad=24, blend=4, batch_size=3))
    assert tiled.runner.tile % tiled.engine.size_rule.tile_step == 0
    diff = np.abs(tiled.upscale(image).pixels.astype(int) - result.pixels.astype(int))
    assert diff.max() <= 1, f"{name}: tiled output differs by {diff.max()} levels"


def test_windowed_attention_tiles_start_on_window_boundaries(weights_files, image):
    """SwinIR partitions windows from the input's origin: a tile that starts off the window grid
    sees other windows than the whole image does, and its output differs by tens of levels."""
    up = Upscaler(str(weights_files["swinir", ".pth"]), 2, tiles=TileSettings(tile=4096))
    assert up.engine.size_rule.align == 4
    whole = up.upscale(image).pixels.astype(int)
    from dataclasses import replace

    from sr_tool.tiling import TiledRunner

    for align, within in ((4, True), (1, False)):
        rule = replace(up.engine.size_rule, align=align)
        runner = TiledRunner(up.engine.run_batch, 2, tile=50, pad=12, blend=4, size_rule=rule)
        tiled = runner(image.array, out_dtype=np.uint8).astype(int)
        assert (np.abs(tiled - whole).max() <= 1) == within


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_export_passes_parity_at_two_sizes_and_runs_in_onnxruntime(weights_files, tmp_path, image, name):
    _, scale, architecture, _ = ARCHITECTURES[name]
    source = weights_files[name, ".pth"]
    onnx_path, card_path = export_model_file(source, tmp_path / f"{name}.onnx")
    card = json.loads(card_path.read_text())
    assert card["architecture"] == architecture and card["scale"] == scale
    assert card["export_parity"]["max_abs_diff"] <= card["export_parity"]["tolerance"]
    assert len(card["export_parity"]["image_shapes"]) == 2
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["srtool.architecture"] == architecture and meta["srtool.scale"] == str(scale)
    assert meta["srtool.source_sha256"] == load_community_model(source).sha256
    # an odd size, unlike the traced and checked ones; onnxruntime via srtool's engine pads it to the rule
    engine = make_engine(onnx_path, device="cpu")
    assert engine.name == "onnxruntime" and engine.size_rule == load_community_model(source).size_rule
    up = Upscaler(str(onnx_path), scale, device="cpu", tiles=TileSettings(tile=4096))
    reference = Upscaler(str(source), scale, tiles=TileSettings(tile=4096))
    crop = LoadedImage(image.array[:37, :53], None, image.info)
    diff = np.abs(up.upscale(crop).pixels.astype(int) - reference.upscale(crop).pixels.astype(int))
    assert diff.max() <= 1


def test_a_pickle_that_runs_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pth"
    torch.save({"conv.weight": torch.zeros(1), "hook": Payload()}, evil)
    with pytest.raises(CommunityModelError, match=r"evil.pth: refused.*posix.system|evil.pth: refused.*system"):
        read_state_dict(evil)
    with pytest.raises(CommunityModelError, match="refused"):
        Upscaler(str(evil), 4)
    assert not marker.exists()


def test_unknown_and_damaged_files_get_one_line_errors(tmp_path):
    unknown = tmp_path / "unknown.safetensors"
    save_file({"encoder.mystery.weight": torch.zeros(4, 3, 3, 3)}, str(unknown))
    with pytest.raises(CommunityModelError, match="unknown.safetensors: not an architecture spandrel .* recognises") as err:
        load_community_model(unknown)
    assert "pip install spandrel_extra_arches" in str(err.value)  # the licence-restricted ones live there
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(b"not a model at all")
    with pytest.raises(CommunityModelError, match="damaged.pth: not a PyTorch weights file") as err:
        load_community_model(damaged)
    assert "\n" not in str(err.value) and "re-download" in str(err.value)
    onnx_named_pth = tmp_path / "exported.pth"  # an ONNX file under a weights name: torch's advice is unsafe
    onnx_named_pth.write_bytes(tiny_onnx(2).read_bytes())
    with pytest.raises(CommunityModelError, match="exported.pth: not a PyTorch weights file") as err:
        load_community_model(onnx_named_pth)
    assert "weights_only" not in str(err.value)


def test_onnxruntime_is_refused_a_weights_file_with_the_way_out(weights_files):
    with pytest.raises(EngineError, match="--engine torch .* srtool export"):
        make_engine(weights_files["compact", ".pth"], engine="onnxruntime")


def test_srtool_model_files_load_through_srtools_own_registry(tmp_path):
    from sr_tool.archs import build_model, preset_config, save_model

    model = build_model(preset_config("srresnet-tiny", 2))
    save_model(model, tmp_path / "mine.pt", extra={"loss": "l1"})
    loaded = load_community_model(tmp_path / "mine.pt")
    assert loaded.architecture == "srtool srresnet" and loaded.scale == 2


def test_models_folder_lists_files_and_resolves_names(weights_files, tmp_path, monkeypatch):
    folder = tmp_path / "models"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "4x-Tiny.pth").write_bytes(weights_files["compact", ".pth"].read_bytes())
    (folder / "broken.safetensors").write_bytes(b"junk")
    entries = {e["name"]: e for e in list_user_models(folder)}
    assert entries["4x-Tiny"]["scale"] == 4 and entries["4x-Tiny"]["architecture"].startswith("RealESRGAN Compact")
    assert entries["broken"]["error"] and entries["broken"]["scale"] is None
    assert entries["4x-Tiny"]["card"] == {}
    (folder / "sub" / "4x-Tiny.json").write_text('{"loss": "l1+0.1*gan", "steps": 1200}')  # a card beside it
    assert list_user_models(folder)[-1]["card"]["loss"] == "l1+0.1*gan"
    from sr_tool.cli import app

    listed = CliRunner().invoke(app, ["models", "--models-dir", str(folder)]).output
    assert any("4x-Tiny" in line and "l1+0.1*gan" in line and "1200" in line for line in listed.splitlines()), listed
    monkeypatch.setenv("SRTOOL_MODELS_DIR", str(folder))
    assert resolve_model("4x-Tiny", 4) == folder / "sub" / "4x-Tiny.pth"
    with pytest.raises(ModelNotFound, match="no such model.*or the name of a file in"):
        resolve_model("4x-Missing", 4)


@pytest.mark.parametrize("route", ["pixel", "jpeg-default"])
def test_onnx_upscales_import_neither_torch_nor_spandrel(tmp_path, route):
    """The ONNX path stays light (importing torch costs ~0.5 GB of memory): community loading is
    imported only for weights files, and the photo mix of the JPEG route is made without torch."""
    source = Path(__file__).parents[1] / "sr_tool/assets/parity.png"
    model = ["--model", "pixel"]
    if route == "jpeg-default":
        if not builtin_model_files("photo"):
            pytest.skip("built-in models not installed")
        Image.open(source).convert("RGB").save(tmp_path / "in.jpg", quality=80)
        source, model = tmp_path / "in.jpg", []
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from sr_tool.cli import app\n"
        f"r = CliRunner().invoke(app, ['upscale', {str(source)!r}, '-o', {str(tmp_path / 'out.png')!r}, *{model!r}, "
        "'-x', '2'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(r.output, file=sys.stderr)\n"
        "print(sorted(m for m in ('torch', 'spandrel', 'safetensors') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    assert (tmp_path / "out.png").is_file()
    if route == "jpeg-default":
        assert "mixed with pixel" in result.stderr  # the weight mix ran, without torch


# The command line, end to end


def _srtool(*args):
    from typer.testing import CliRunner

    from sr_tool.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_upscales_exports_and_compares_a_community_model(weights_files, tmp_path, image):
    source = weights_files["compact", ".pth"]
    result = _srtool("upscale", Path(__file__).parents[1] / "sr_tool/assets/parity.png", "-m", source, "-x", 4,
                     "-o", tmp_path / "up.png", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert read_image(tmp_path / "up.png").array.shape[:2] == (97 * 4, 146 * 4)

    result = _srtool("export", source, "-o", tmp_path / "compact.onnx")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "compact.onnx").is_file() and (tmp_path / "compact.json").is_file()

    hr = tmp_path / "hr"
    hr.mkdir()
    from sr_tool.image_io import write_image

    write_image(hr / "a.png", image.array[:96, :96])
    write_image(hr / "b.png", image.array[:96, 48:144])
    result = _srtool("eval", "-m", "pixel", "-m", source, "-m", tmp_path / "compact.onnx", "--data", hr, "-x", 4,
                     "--metrics", "psnr_y", "--csv", tmp_path / "e.csv")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.output.splitlines() if line[:1].isalpha()}
    assert {"bicubic", "pixel", "compact.pth", "compact.onnx"} <= set(rows)  # same stem: told apart by suffix
    assert abs(float(rows["compact.pth"][0]) - float(rows["compact.onnx"][0])) <= 0.01  # the export scores as its source


def test_cli_refuses_code_in_a_pickle_in_one_line_and_writes_nothing(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    evil = tmp_path / "evil.pth"
    torch.save({"w": Payload()}, evil)
    for args in (("export", evil, "-o", tmp_path / "evil.onnx"),
                 ("upscale", Path(__file__).parents[1] / "sr_tool/assets/parity.png", "-m", evil, "-o", tmp_path / "o.png")):  # fmt: skip
        result = _srtool(*args)
        assert result.exit_code == 2
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "evil.pth: refused" in errors[0], result.output
        assert "ran" not in result.output.split("error:")[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pth"]


def test_cli_export_writes_only_onnx_files(weights_files, tmp_path):
    result = _srtool("export", weights_files["compact", ".pth"], "-o", tmp_path / "x.pth")
    assert result.exit_code == 2 and "name it .onnx" in result.output
    assert not (tmp_path / "x.pth").exists()


def test_cli_models_lists_the_models_folder(weights_files, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "2x-Span.safetensors").write_bytes(weights_files["span", ".safetensors"].read_bytes())
    result = _srtool("models", "--models-dir", folder)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("2x-Span"))
    assert "x2" in line and "SPAN" in line


def test_an_srtool_training_checkpoint_runs_with_its_ema_weights(tmp_path):
    import torch

    from sr_tool.archs import build_model, preset_config

    torch.manual_seed(0)
    ema = build_model(preset_config("srresnet-tiny", 2)).eval()
    raw = build_model(preset_config("srresnet-tiny", 2))
    state = {**{f"ema.{k}": v for k, v in ema.state_dict().items()}, **{f"model.{k}": v for k, v in raw.state_dict().items()}}
    ckpt = {"hyper_parameters": {"train_config": {"preset": "srresnet-tiny", "scale": 2}}, "state_dict": state}
    torch.save(ckpt, tmp_path / "best-10.ckpt")
    loaded = load_community_model(tmp_path / "best-10.ckpt")
    assert loaded.scale == 2 and loaded.architecture == "srtool srresnet"
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        assert torch.allclose(loaded.net(x), ema(x), atol=1e-6)
