"""The device tiler on device="cpu": same plan, weights and quantisation as the host TiledRunner."""

import numpy as np
import pytest
import torch

from helpers import tiny_onnx
from sr_tool.device_tiling import DeviceTiler
from sr_tool.engine import OnnxEngine, TorchEngine
from sr_tool.image_io import LoadedImage, ImageInfo
from sr_tool.tiling import OutOfMemory, SizeRule, TiledRunner
from sr_tool.upscale import TileSettings, Upscaler


def _image(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    peak = np.iinfo(dtype).max
    smooth = rng.random((shape[0] // 4 + 2, shape[1] // 4 + 2, shape[2]))  # photo-like: not pure noise
    up = np.kron(smooth, np.ones((4, 4, 1)))[: shape[0], : shape[1]]
    return np.clip(up * peak + rng.normal(0, peak * 0.02, shape), 0, peak).astype(dtype)


@pytest.mark.parametrize("engine_class", [TorchEngine, OnnxEngine])
@pytest.mark.parametrize("shape,dtype", [((61, 90, 3), np.uint8), ((70, 51, 3), np.uint16), ((45, 77, 1), np.uint8)])
def test_device_tiles_equal_host_tiles_within_one_level(engine_class, shape, dtype):
    engine = engine_class(tiny_onnx(2), "cpu")
    image = _image(shape, dtype)
    host = TiledRunner(engine.run_batch, 2, tile=48, pad=16, blend=8, batch_size=3)(image, out_dtype=dtype)
    device = DeviceTiler(engine.run_tensor, 2, device="cpu", tile=48, pad=16, blend=8, batch_size=3)
    assert device.tile == 48
    out = device(image, out_dtype=dtype)
    assert out.dtype == dtype and out.shape == host.shape
    assert np.abs(out.astype(int) - host.astype(int)).max() <= 1


def test_device_tiles_equal_the_whole_image_and_follow_a_size_rule():
    engine = TorchEngine(tiny_onnx(4), "cpu")
    image = _image((53, 67, 3), np.uint8, seed=1)
    rule = SizeRule(multiple_of=8, align=8)
    # one tile, the image itself, padded as the rule wants: 53x67 -> 56x72
    whole = DeviceTiler(engine.run_tensor, 4, device="cpu", tile=512, size_rule=rule)(image)
    seen = []

    def model(batch):
        seen.append(tuple(batch.shape[-2:]))
        return engine.run_tensor(batch)

    tiled = DeviceTiler(model, 4, device="cpu", tile=50, pad=16, blend=4, batch_size=4, size_rule=rule)(image)
    assert all(h % 8 == 0 and w % 8 == 0 for h, w in seen) and len(seen) > 2
    assert np.abs(tiled - whole).max() < 1e-4


def test_out_of_memory_halves_the_tile_and_retries():
    engine = TorchEngine(tiny_onnx(2), "cpu")

    def limited(batch):
        if batch.shape[-1] > 50:
            raise OutOfMemory("CUDA out of memory (simulated)")
        return engine.run_tensor(batch)

    tiler = DeviceTiler(limited, 2, device="cpu", tile=96, pad=8, blend=4)
    out = tiler(_image((90, 90, 3), np.uint8), out_dtype=np.uint8)
    assert tiler.tile <= 48 and out.shape == (180, 180, 3)


def test_fits_counts_the_full_size_accumulator():
    tiler = DeviceTiler(lambda b: b, 4, device="cpu", tile=64)
    assert tiler.fits(1000, 1000, free_bytes=4 * 16 * 16_000_000)
    assert not tiler.fits(1000, 1000, free_bytes=4 * 16 * 16_000_000 - 1)


def test_upscaler_on_device_matches_the_host_path():
    image = LoadedImage(_image((70, 130, 3), np.uint8, seed=2), None, ImageInfo())
    settings = dict(tile=48, pad=16, blend=8, batch_size=2)
    host = Upscaler(str(tiny_onnx(2)), 2, device="cpu", tiles=TileSettings(**settings))
    device = Upscaler(str(tiny_onnx(2)), 2, device="cpu", tiles=TileSettings(**settings, on_device=True))
    assert host.device_runner is None and device.device_runner is not None
    assert "tiled on the device" in device.description
    diff = np.abs(device.upscale(image).pixels.astype(int) - host.upscale(image).pixels.astype(int))
    assert diff.max() <= 1
