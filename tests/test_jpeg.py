import io

import numpy as np
import pytest
import torch
from PIL import Image

from sr_tool.jpeg import _LUMA_TABLE, jpeg, quantisation_tables
from sr_tool.metrics import psnr_y

EXAMPLE = "examples/zebra.png"


def _pillow_round_trip(rgb: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def _tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / ((a.astype(float) - b.astype(float)) ** 2).mean()))


def test_quality_tables_follow_libjpeg_scaling():
    luma, chroma = quantisation_tables(torch.tensor([50, 100, 1]))
    assert torch.equal(luma[0], torch.tensor(_LUMA_TABLE, dtype=torch.float32))  # 50 is the base table
    assert torch.all(luma[1] == 1) and torch.all(chroma[1] == 1)
    assert luma[2].max() == 255  # baseline files clamp to 8 bits


@pytest.mark.parametrize("quality", [30, 75, 95])
def test_matches_pillow_far_closer_than_the_compression_error(quality):
    rgb = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    reference = _pillow_round_trip(rgb, quality)
    ours = (jpeg(_tensor(rgb), quality)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert ours.shape == rgb.shape
    # The compression itself costs 28-38 dB here; the two codecs differ by a level here and there.
    assert _psnr(ours, reference) > 40
    assert _psnr(ours, reference) > _psnr(rgb, reference) + 8
    assert abs(_psnr(ours, rgb) - _psnr(reference, rgb)) < 0.5


def test_per_image_quality_odd_sizes_and_gradients():
    crop = _tensor(np.asarray(Image.open(EXAMPLE).convert("RGB")))[..., 40:61, 50:80]
    images = crop.expand(2, -1, -1, -1).clone().requires_grad_(True)
    out = jpeg(images, torch.tensor([20, 95]))
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out[:1], jpeg(images[:1], 20))  # each image only sees its own quality
    error = (out - images).abs().mean((1, 2, 3))
    assert error[0] > 2 * error[1]
    out.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_high_quality_is_nearly_lossless_on_a_real_image():
    x = _tensor(np.asarray(Image.open(EXAMPLE).convert("RGB")))
    assert psnr_y(jpeg(x, 100), x).item() > 45
