import numpy as np
import onnx
import pytest
import torch

from helpers import tiny_onnx
from sr_tool.engine import EngineError, OnnxEngine, TorchEngine, auto_tile, make_engine, parse_devices
from sr_tool.engine import read_metadata
from sr_tool.export import ExportError, export_onnx, model_from_onnx
from sr_tool.archs import build_model, preset_config


def test_export_metadata_and_checker(tmp_path):
    path = tiny_onnx(4)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 17
    meta = read_metadata(path)
    assert meta["scale"] == "4" and meta["loss"] == "l1" and '"blocks": 2' in meta["config"] and meta["version"]
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] and dims[2] and dims[3]  # dynamic N, H, W


def test_export_parity_is_checked_on_a_real_image(data_dir, tmp_path):
    from sr_tool.image_io import read_image

    model = build_model(preset_config("srresnet-tiny", 2))
    image = read_image(data_dir / "Set5" / "HR" / "head.png").pixels[..., :40, :56]
    report = export_onnx(model, tmp_path / "m.onnx", parity_image=image)
    assert report["max_abs_diff"] <= 1e-4 and report["image_shape"] == [1, 3, 40, 56]


def test_export_fails_loudly_when_parity_breaks(tmp_path, monkeypatch):
    import sr_tool.export as export

    monkeypatch.setattr(export, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(ExportError, match="differ by"):
        export_onnx(build_model(preset_config("srresnet-tiny", 2)), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_fp16_export_keeps_fp32_io(tmp_path):
    model = build_model(preset_config("srresnet-tiny", 2))
    report = export_onnx(model, tmp_path / "h.onnx", fp16=True)
    proto = onnx.load(str(tmp_path / "h.onnx"))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert report["max_abs_diff"] < 1e-2 and read_metadata(tmp_path / "h.onnx")["precision"] == "fp16"
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():  # the torch engine reads the fp16 weights back as fp32
        assert (model_from_onnx(tmp_path / "h.onnx")(x) - model(x)).abs().max() < 1e-2


def test_onnxruntime_and_torch_engines_agree():
    path = tiny_onnx(3)
    batch = np.random.default_rng(0).random((2, 3, 20, 24), dtype=np.float32)
    ort_engine, torch_engine = OnnxEngine(path, "cpu"), TorchEngine(path, "cpu")
    assert "CPUExecutionProvider" in ort_engine.description and "cpu" in torch_engine.description
    a, b = ort_engine.run_batch(batch), torch_engine.run_batch(batch)
    assert a.shape == (2, 3, 60, 72) and np.abs(a - b).max() < 1e-4
    assert ort_engine.scale == torch_engine.scale == 3


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_explicit_cuda_without_gpu_is_an_error_not_a_silent_cpu_run():
    with pytest.raises(EngineError, match="CUDA"):
        OnnxEngine(tiny_onnx(2), "cuda")
    with pytest.raises(EngineError, match="CUDA"):
        TorchEngine(tiny_onnx(2), "cuda:0")


def test_auto_device_and_tile_choice():
    engine = make_engine(tiny_onnx(4), device="auto")
    assert engine.description
    assert 64 <= auto_tile(engine, 1) <= 1024 and auto_tile(engine, 1) % 32 == 0


def test_parse_devices():
    assert parse_devices("cuda:0,cuda:1") == ["cuda:0", "cuda:1"]
    assert parse_devices("CPU") == ["cpu"]
    with pytest.raises(EngineError, match="unknown device"):
        parse_devices("gpu7")


def test_foreign_onnx_model_scale_is_probed(tmp_path):
    class Nearest(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    torch.onnx.export(Nearest(), (torch.rand(1, 3, 8, 8),), str(tmp_path / "n.onnx"), input_names=["input"],
                      dynamic_axes={"input": {2: "h", 3: "w"}}, opset_version=17, dynamo=False)  # fmt: skip
    assert OnnxEngine(tmp_path / "n.onnx", "cpu").scale == 2


def test_efficient_models_export_folded_and_run_on_both_engines(tmp_path):
    from sr_tool.image_io import read_image

    torch.manual_seed(0)
    model = build_model(preset_config("rep-s", 2))
    with torch.no_grad():  # off the zero initialisation, so that every branch counts
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    image = read_image("examples/zebra.png").pixels[..., :48, :64]
    report = export_onnx(model.eval(), tmp_path / "rep.onnx", parity_image=image)
    assert report["max_abs_diff"] < 1e-4  # folded ONNX against the unfolded PyTorch model
    proto = onnx.load(str(tmp_path / "rep.onnx"))
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert len(convs) == 1 + 2 * 6 + 1 + 1  # head, two per block, body tail, to pixels: all plain 3x3
    assert '"folded": true' in read_metadata(tmp_path / "rep.onnx")["config"]
    batch = image.numpy()
    a, b = OnnxEngine(tmp_path / "rep.onnx", "cpu").run_batch(batch), TorchEngine(tmp_path / "rep.onnx", "cpu").run_batch(batch)
    with torch.no_grad():
        reference = model(image).numpy()
    assert np.abs(a - reference).max() < 1e-4 and np.abs(b - reference).max() < 1e-4


def test_tensorrt_that_cannot_run_is_an_error_never_a_silent_cpu_run(monkeypatch):
    from sr_tool.engine import EngineError, make_engine

    with pytest.raises(EngineError, match="--engine tensorrt: .*--device cpu"):
        make_engine(tiny_onnx(2), engine="tensorrt")  # this machine has no NVIDIA GPU
    with pytest.raises(EngineError, match="runs on a GPU"):
        make_engine(tiny_onnx(2), engine="tensorrt", device="cpu")
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(EngineError, match="has no TensorRT provider"):
        make_engine(tiny_onnx(2), engine="tensorrt", device="cuda")
