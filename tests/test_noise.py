import numpy as np
import pytest
from helpers import smooth_scene, with_noise

from sr_tool.image_io import read_image
from sr_tool.noise import estimate_noise_sigma


@pytest.mark.parametrize("sigma", [3, 5, 10, 20])
def test_reads_the_sigma_of_added_noise(sigma):
    assert estimate_noise_sigma(with_noise(smooth_scene(), sigma)) == pytest.approx(sigma, rel=0.12)


def test_a_clean_image_reads_near_zero_whatever_its_bit_depth():
    clean = smooth_scene()
    assert estimate_noise_sigma(clean) < 0.5
    noisy = with_noise(clean, 8)
    eight_bit = estimate_noise_sigma(noisy)
    assert estimate_noise_sigma(noisy.astype(np.uint16) * 257) == pytest.approx(eight_bit, rel=1e-4)
    assert estimate_noise_sigma(noisy.astype(np.float32) / 255) == pytest.approx(eight_bit, rel=1e-4)
    assert estimate_noise_sigma(noisy[:, :, :1]) == pytest.approx(8, rel=0.15)  # gray: one channel


def test_a_tall_image_is_measured_on_spread_rows_and_reads_the_same():
    tall = np.concatenate([smooth_scene(1200, 320)] * 3)  # 3600 rows: more than MAX_BLOCK_ROWS bands
    noisy = with_noise(tall, 6)
    assert estimate_noise_sigma(noisy) == pytest.approx(6, rel=0.12)


def test_an_image_too_small_to_measure_reads_zero():
    assert estimate_noise_sigma(with_noise(smooth_scene(17, 40), 10)) == 0.0
    assert estimate_noise_sigma(with_noise(smooth_scene(64, 64), 10)) == 0.0  # 9 blocks: texture or noise?
    assert estimate_noise_sigma(with_noise(smooth_scene(72, 72), 10)) == pytest.approx(10, rel=0.15)  # 12


def test_thumbnails_of_clean_photos_read_clean(data_dir):
    from PIL import Image

    for name in ("comic", "zebra", "bridge", "man"):  # textured all over: small versions read 5 to 10
        photo = Image.open(data_dir / "Set14" / "HR" / f"{name}.png").convert("RGB")
        for side in (32, 48, 64):
            thumbnail = np.asarray(photo.resize((side, side), Image.BICUBIC))
            assert estimate_noise_sigma(thumbnail) == 0.0, (name, side)


def test_real_photos_read_clean_until_noise_is_added(data_dir):
    noisy = []
    for name in ("baby", "bird", "butterfly", "head", "woman"):
        photo = read_image(data_dir / "Set5" / "HR" / f"{name}.png").array
        assert estimate_noise_sigma(photo) < 2, name
        noisy.append(estimate_noise_sigma(with_noise(photo, 10)))
    # Where the smooth areas are clipped black (head), only texture is left to measure: it reads high.
    assert np.mean(noisy) == pytest.approx(10, abs=1) and min(noisy) > 9 and max(noisy) < 14, noisy
