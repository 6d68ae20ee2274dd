import math

import pytest
import torch

from sr_tool import resize
from sr_tool.image_io import read_image
from sr_tool.resize import cubic, imresize

SETS = ("Set5", "Set14", "BSD100")


def test_cubic_kernel_is_keys_a_minus_half():
    x = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    expected = torch.tensor([1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0])
    assert torch.allclose(cubic(x), expected)


@pytest.mark.parametrize("scale, h, w", [(0.25, 37, 50), (1 / 3, 30, 31), (2.0, 9, 7), (1.5, 10, 11)])
def test_output_size_is_ceil(scale, h, w):
    out = imresize(torch.rand(1, 3, h, w), scale)
    assert out.shape[-2:] == (math.ceil(h * scale), math.ceil(w * scale))


def test_constant_image_stays_constant_and_batch_is_independent():
    x = torch.full((1, 3, 12, 16), 0.3)
    assert torch.allclose(imresize(x, 0.5), torch.full((1, 3, 6, 8), 0.3), atol=1e-6)
    batch = torch.rand(4, 3, 16, 16)
    together = imresize(batch, 0.25)
    alone = torch.cat([imresize(b[None], 0.25) for b in batch])
    assert torch.allclose(together, alone, atol=1e-6)


def test_banded_path_equals_dense_path(monkeypatch):
    x = torch.rand(2, 3, 40, 33, dtype=torch.float64)
    dense = imresize(x, 0.3)
    monkeypatch.setattr(resize, "DENSE_MAX", 4)
    assert torch.allclose(imresize(x, 0.3), dense, atol=1e-12)
    assert torch.allclose(imresize(x, 3.0), imresize(x, 3.0), atol=1e-12)


def test_size_argument_and_errors():
    assert imresize(torch.rand(1, 1, 10, 10), size=(5, 20)).shape == (1, 1, 5, 20)
    with pytest.raises(ValueError):
        imresize(torch.rand(1, 1, 4, 4))
    with pytest.raises(TypeError):
        imresize(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), 2)


def test_gradients_flow():
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    imresize(x, 0.25).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def _pairs(data_dir, scale):
    for name in SETS:
        for hr_path in sorted((data_dir / name / "HR").iterdir()):
            hr = read_image(hr_path).pixels
            h, w = hr.shape[-2:]
            lr = read_image(data_dir / name / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}.png").pixels
            yield hr[..., : h - h % scale, : w - w % scale], lr


def test_downscale_reproduces_matlab_lr_files(data_dir):
    """8-bit mode on mod-cropped HR gives MATLAB's LR files: >= 98% of pixels exact, >= 99% within 1."""
    total = exact = near = 0
    for scale in (2, 3, 4):
        for hr, lr in _pairs(data_dir, scale):
            ours = imresize(hr, 1 / scale, round_8bit=True)
            diff = ((ours - lr) * 255).round().abs()
            total += diff.numel()
            exact += (diff == 0).sum().item()
            near += (diff <= 1).sum().item()
    assert exact / total >= 0.98, exact / total
    assert near / total >= 0.99, near / total
