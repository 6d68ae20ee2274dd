import numpy as np
import pytest
import torch

from helpers import tiny_onnx
from sr_tool.engine import OnnxEngine
from sr_tool.export import model_from_onnx
from sr_tool.image_io import read_image
from sr_tool.tiling import OutOfMemory, TiledRunner, plan_tiles


def test_plan_covers_the_image_with_one_tile_shape():
    plan = plan_tiles(100, 75, tile=48, overlap=40)
    assert plan.tile_h == plan.tile_w == 48
    assert plan.ys[0] == 0 and plan.ys[-1] + 48 == 100 and plan.xs[-1] + 48 == 75
    assert all(b - a <= 8 for a, b in zip(plan.ys, plan.ys[1:]))
    small = plan_tiles(20, 70, tile=64, overlap=8)
    assert small.tile_h == 20 and small.ys == (0,)  # smaller than a tile: runs at its own size


def _whole(path, image):
    with torch.no_grad():
        return model_from_onnx(path)(torch.from_numpy(image)[None])[0].numpy()


@pytest.mark.parametrize("size", [(53, 71), (100, 64), (17, 90)])
def test_tiled_equals_whole_image_within_1_over_255(size):
    path = tiny_onnx(4)
    engine = OnnxEngine(path, "cpu")
    image = np.random.default_rng(0).random((3, *size), dtype=np.float32)
    runner = TiledRunner(engine.run_batch, 4, tile=48, pad=16, blend=8, batch_size=3)
    tiled = runner(image.transpose(1, 2, 0)).transpose(2, 0, 1)
    whole = _whole(path, image)
    assert tiled.shape == whole.shape == (3, size[0] * 4, size[1] * 4)
    assert np.abs(tiled - whole).max() < 1 / 255


def test_tiled_equals_whole_on_a_real_image_and_edges(data_dir):
    path = tiny_onnx(2)
    image = read_image(data_dir / "Set5" / "HR" / "bird.png").pixels[0, :, :97, :131].numpy().copy()
    runner = TiledRunner(OnnxEngine(path, "cpu").run_batch, 2, tile=64, pad=16, blend=8)
    tiled = runner(image.transpose(1, 2, 0)).transpose(2, 0, 1)
    whole = _whole(path, image)
    diff = np.abs(tiled - whole)
    assert diff.max() < 1 / 255
    assert diff[:, -8:, :].max() < 1 / 255 and diff[:, :, -8:].max() < 1 / 255  # image edges


def test_quantised_output_matches_float_output():
    path = tiny_onnx(2)
    runner = TiledRunner(OnnxEngine(path, "cpu").run_batch, 2, tile=48)
    image = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    as_float = runner(image.astype(np.float32) / 255)  # integer input is converted tile by tile
    as_uint8 = runner(image, out_dtype=np.uint8)
    assert as_uint8.dtype == np.uint8 and np.array_equal(runner(image), as_float)
    assert np.array_equal(as_uint8, np.floor(np.clip(as_float, 0, 1) * 255 + 0.5).astype(np.uint8))


def test_output_array_comes_from_the_allocator_and_holds_the_same_pixels():
    from sr_tool.image_io import new_pixels

    path = tiny_onnx(2)
    image = np.random.default_rng(2).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    plain = TiledRunner(OnnxEngine(path, "cpu").run_batch, 2, tile=32)(image, out_dtype=np.uint8)
    runner = TiledRunner(OnnxEngine(path, "cpu").run_batch, 2, tile=32, allocate=new_pixels)
    adopted = runner(image, out_dtype=np.uint8)
    assert adopted.base is not None and adopted.base.shape == (90, 140, 4)
    assert np.array_equal(adopted, plain)


def test_gray_input_is_fed_as_three_channels():
    path = tiny_onnx(2)
    runner = TiledRunner(OnnxEngine(path, "cpu").run_batch, 2, tile=48)
    gray = np.random.default_rng(3).random((30, 50, 1), dtype=np.float32)
    assert np.array_equal(runner(gray), runner(np.repeat(gray, 3, axis=2)))


def test_out_of_memory_halves_the_tile_and_retries():
    path = tiny_onnx(2)
    engine = OnnxEngine(path, "cpu")
    seen = []

    def limited(batch):
        seen.append(batch.shape[-1])
        if batch.shape[-1] > 64:
            raise OutOfMemory("pretend the GPU is full")
        return engine.run_batch(batch)

    image = np.random.default_rng(2).random((3, 150, 150), dtype=np.float32)
    runner = TiledRunner(limited, 2, tile=128)
    out = runner(image.transpose(1, 2, 0))
    assert runner.tile == 64 and 128 in seen and seen[-1] == 64
    assert np.abs(out.transpose(2, 0, 1) - _whole(path, image)).max() < 1 / 255


def test_other_errors_are_not_retried():
    def broken(batch):
        raise ValueError("bad model")

    with pytest.raises(ValueError, match="bad model"):
        TiledRunner(broken, 2, tile=64)(np.zeros((70, 70, 3), np.float32))


def test_tile_progress_counts_up_to_every_tile():
    engine = OnnxEngine(tiny_onnx(4), "cpu")
    runner = TiledRunner(engine.run_batch, 4, tile=48, pad=16, blend=8, batch_size=3)
    plan = plan_tiles(100, 130, 48, runner.overlap)
    calls = []
    runner(np.zeros((100, 130, 3), np.uint8), on_tiles=lambda done, total: calls.append((done, total)))
    total = len(plan.ys) * len(plan.xs)
    assert calls[-1] == (total, total) and all(t == total for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and len(calls) > 2


def test_size_rule_padding():
    from sr_tool.tiling import SizeRule

    assert SizeRule().padding(37, 53) == (0, 0)
    assert SizeRule(multiple_of=8).padding(37, 53) == (3, 3)
    assert SizeRule(minimum=16).padding(9, 40) == (7, 0)
    assert SizeRule(multiple_of=16, square=True).padding(20, 40) == (28, 8)
    assert SizeRule(multiple_of=4, align=6).tile_step == 12


def test_fit_to_rule_pads_what_the_model_needs_and_crops_the_output():
    from sr_tool.tiling import SizeRule, fit_to_rule

    seen = []

    def nearest_x2(batch):
        seen.append(batch.shape[-2:])
        assert batch.shape[-1] % 8 == 0 and batch.shape[-2] % 8 == 0 and min(batch.shape[-2:]) >= 16
        return batch.repeat(2, axis=-2).repeat(2, axis=-1)

    batch = np.random.default_rng(0).random((2, 3, 5, 21), dtype=np.float32)  # 5 rows: mirrored, then repeated
    out = fit_to_rule(nearest_x2, SizeRule(multiple_of=8, minimum=16), 2)(batch)
    assert seen == [(16, 24)]
    np.testing.assert_array_equal(out, batch.repeat(2, axis=-2).repeat(2, axis=-1))


@pytest.mark.parametrize("n", [64, 65, 97, 130])
def test_aligned_plan_starts_on_the_grid_covers_and_overlaps(n):
    plan = plan_tiles(n, n, tile=48, overlap=20, align=8)
    assert all(y % 8 == 0 for y in plan.ys)
    assert plan.ys[-1] + 48 >= n and plan.ys[-1] < n
    assert all(b - a <= 48 - 20 for a, b in zip(plan.ys, plan.ys[1:]))  # neighbours overlap by >= 20


def test_runner_with_a_window_grid_and_a_short_last_tile_matches_the_whole_image():
    """A tile cut short by the image edge runs in a batch of its own, padded to the rule."""
    from sr_tool.tiling import SizeRule

    path = tiny_onnx(2)
    engine = OnnxEngine(path, "cpu")
    image = np.random.default_rng(1).random((61, 83, 3), dtype=np.float32)
    whole = _whole(path, np.ascontiguousarray(image.transpose(2, 0, 1))).transpose(1, 2, 0)
    runner = TiledRunner(engine.run_batch, 2, tile=50, pad=16, blend=4, batch_size=4, size_rule=SizeRule(align=8))
    assert runner.tile == 48
    np.testing.assert_allclose(runner(image), whole, atol=1e-4)
