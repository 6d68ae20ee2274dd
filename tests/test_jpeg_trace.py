import io

import numpy as np
import pytest
from helpers import smooth_scene, with_noise
from PIL import Image, ImageDraw

from sr_tool.image_io import read_image
from sr_tool.jpeg_trace import past_jpeg_quality


def through_jpeg(array: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(array.squeeze()).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer))


def textured_scene(h=160, w=200) -> np.ndarray:
    """Structure and texture at several scales, as a photo has; never compressed."""
    rng = np.random.default_rng(1)
    texture = np.zeros((h, w, 3), np.float32)
    for cells, amplitude in ((13, 40.0), (37, 25.0), (71, 15.0)):  # sizes that share no factor with 8
        field = rng.normal(0, amplitude, (cells * h // w, cells, 3)).astype(np.float32)
        texture += np.stack([np.asarray(Image.fromarray(c).resize((w, h), Image.BICUBIC)) for c in field.transpose(2, 0, 1)], 2)
    return with_noise(np.clip(smooth_scene(h, w) * 0.6 + texture + 40, 0, 255), 2)


@pytest.mark.parametrize("quality", [30, 50, 75, 85, 90])
def test_reads_the_quality_of_a_jpeg_in_its_pixels(quality):
    assert past_jpeg_quality(through_jpeg(textured_scene(), quality)) == pytest.approx(quality, abs=2)


def test_never_compressed_pixels_show_no_trace():
    assert past_jpeg_quality(textured_scene()) is None
    assert past_jpeg_quality(smooth_scene()) is None
    assert past_jpeg_quality(with_noise(smooth_scene(), 15)) is None


def test_finds_the_grid_of_a_cropped_or_turned_jpeg_and_reads_gray_16_bit_and_float():
    decoded = through_jpeg(textured_scene(), 60)
    assert past_jpeg_quality(decoded[3:, 5:]) == pytest.approx(60, abs=2)  # the grid no longer at 0, 0
    assert past_jpeg_quality(decoded.astype(np.uint16) * 257) == pytest.approx(60, abs=2)
    assert past_jpeg_quality(decoded.astype(np.float32) / 255) == pytest.approx(60, abs=2)
    turned = np.rot90(through_jpeg(textured_scene(), 40))  # its table transposed: read as such, exactly
    assert past_jpeg_quality(turned) == 40
    gray = through_jpeg(textured_scene()[:, :, 1], 60)
    assert gray.ndim == 2 and past_jpeg_quality(gray) == pytest.approx(60, abs=2)


def test_a_resaved_jpeg_shows_its_first_compression():
    once = through_jpeg(textured_scene(), 50)
    assert past_jpeg_quality(through_jpeg(once, 95)) == pytest.approx(50, abs=2)


def test_resizing_after_the_compression_leaves_no_trace_to_read():
    decoded = Image.fromarray(through_jpeg(textured_scene(320, 400), 50))
    assert past_jpeg_quality(np.asarray(decoded.resize((360, 288), Image.BICUBIC))) is None


def test_graphics_are_not_mistaken_for_jpeg():
    rng = np.random.default_rng(0)
    cells = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for k in (2, 4, 8):  # pixel art, blown up: blocks of equal pixels, aligned with the 8x8 grid
        assert past_jpeg_quality(np.repeat(np.repeat(cells, k, 0), k, 1)) is None, k
    page = Image.new("RGB", (320, 240), "white")
    draw = ImageDraw.Draw(page)
    for i in range(20):
        draw.text((8 + (i % 2) * 160, 8 + (i // 2) * 22), f"line {i}: srtool upscale", fill=(20, 20, 90))
    draw.rectangle((40, 60, 200, 180), outline=(200, 0, 0), width=3)
    assert past_jpeg_quality(np.asarray(page)) is None
    ramp = np.broadcast_to(np.linspace(0, 255, 320)[None, :, None], (240, 320, 3)).round().astype(np.uint8)
    assert past_jpeg_quality(ramp) is None


def timeline_chart(seed: int, w=742, h=466) -> np.ndarray:
    """A build-timeline chart as a web page renders it: flat boxes, anti-aliased labels, dotted lines."""
    rng = np.random.default_rng(seed)
    page = Image.new("RGB", (w, h), (247, 247, 247))
    draw = ImageDraw.Draw(page)
    for x in range(40, w, 97):
        for y in range(0, h, 6):
            draw.point((x, y), fill=(200, 200, 200))
            draw.point((x, y + 1), fill=(210, 210, 210))
    for i in range(18):
        x0, y0 = int(rng.integers(0, w - 150)), 10 + i * 25
        colour = tuple(int(v) for v in rng.integers(120, 250, 3))
        draw.rounded_rectangle([x0, y0, x0 + int(rng.integers(40, 150)), y0 + 20], radius=5, fill=colour)
        draw.text((x0 + 4, y0 + 4), f"regex-syntax v{i}", fill=(30, 30, 30))
    return np.asarray(page)


def test_charts_show_chance_steps_that_do_not_pass_for_a_jpeg():
    # A few of these show 5 to 8 steps that fit an IJG table loosely (one read as quality 62 before
    # few steps had to fit exactly); a JPEG of the same chart is read.
    assert all(past_jpeg_quality(timeline_chart(seed)) is None for seed in range(12))
    assert past_jpeg_quality(through_jpeg(timeline_chart(6), 70)) == 70


def test_too_small_to_read():
    assert past_jpeg_quality(through_jpeg(textured_scene(12, 200), 30)) is None


def test_benchmark_lr_reads_clean_and_jpeg_as_its_quality(data_dir):
    files = sorted((data_dir / "BSD100" / "LR_bicubic" / "X4").glob("*.png"))[:20]
    assert files
    for path in files:
        lr = read_image(path).array
        assert past_jpeg_quality(lr) is None, path.name
        assert past_jpeg_quality(with_noise(lr, 10)) is None, path.name
    read = [past_jpeg_quality(through_jpeg(read_image(p).array, 75)) for p in files]
    assert sum(q == 75 for q in read) >= 17 and set(read) <= {74, 75, 76, None}, read
