import pytest
import pytorch_msssim
import torch

from sr_tool.image_io import read_image
from sr_tool.losses.ssim import MSSSIML1Loss, MSSSIMLoss, SSIMLoss, gaussian_l1, ms_ssim, ms_ssim_levels, ssim
from sr_tool.resize import imresize


def _pair(n=2, c=3, size=(170, 190)):
    x = torch.rand(n, c, *size, dtype=torch.float64)
    y = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    return x, y


@pytest.mark.parametrize("size", [(161, 161), (170, 190), (256, 200)])
@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_ms_ssim_equals_pytorch_msssim(size, data_range):
    x, y = _pair(size=size)
    x, y = x * data_range, y * data_range
    ours = ms_ssim(x, y, data_range=data_range, reduction="none")
    ref = pytorch_msssim.ms_ssim(x, y, data_range=data_range, size_average=False)
    assert torch.allclose(ours, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", [(11, 11), (48, 48), (161, 200)])
def test_ssim_equals_pytorch_msssim(size):
    x, y = _pair(size=size)
    ref = pytorch_msssim.ssim(x, y, data_range=1.0, size_average=False)
    assert torch.allclose(ssim(x, y, reduction="none"), ref, atol=1e-5, rtol=0)


def test_ms_ssim_on_real_images_equals_reference(data_dir):
    hr = read_image(data_dir / "Set5" / "HR" / "butterfly.png").pixels.double()
    lr = read_image(data_dir / "Set5" / "LR_bicubic" / "X4" / "butterflyx4.png").pixels.double()
    sr = imresize(lr, 4).clamp(0, 1)
    assert torch.allclose(ms_ssim(sr, hr), pytorch_msssim.ms_ssim(sr, hr, data_range=1.0), atol=1e-5)


def test_levels_fit_the_patch():
    assert ms_ssim_levels(48) == 3  # 48, 24, 12
    assert ms_ssim_levels(96) == 4
    assert ms_ssim_levels(160) == 4 and ms_ssim_levels(161) == 5  # pytorch-msssim needs > 160
    assert ms_ssim_levels(512) == 5
    with pytest.raises(ValueError, match="smaller than the 11 px window"):
        ms_ssim_levels(10)


@pytest.mark.parametrize(
    "case",
    ["random", "identical", "constant", "constant_pair", "anticorrelated"],
)
@pytest.mark.parametrize("loss", [MSSSIMLoss(), MSSSIML1Loss(), SSIMLoss()])
def test_gradients_are_finite_on_48px_patches(case, loss):
    x = torch.rand(4, 3, 48, 48)
    targets = {
        "random": torch.rand_like(x),
        "identical": x.clone(),
        "constant": torch.full_like(x, 0.5),
        "constant_pair": torch.full_like(x, 0.5),
        "anticorrelated": 1 - x,
    }
    y = targets[case]
    if case in ("identical", "constant_pair"):
        x = y.clone() if case == "identical" else torch.full_like(x, 0.5)
    pred = x.clone().requires_grad_(True)
    value = loss(pred, y)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(pred.grad).all()


def test_identical_images_have_zero_loss():
    x = torch.rand(2, 3, 64, 64)
    assert MSSSIMLoss()(x, x).abs() < 1e-6
    assert MSSSIML1Loss()(x, x).abs() < 1e-6


def test_zhao_mix_weights():
    x, y = torch.rand(2, 3, 96, 96), torch.rand(2, 3, 96, 96)
    expected = 0.84 * (1 - ms_ssim(x, y)) + 0.16 * gaussian_l1(x, y)
    assert torch.allclose(MSSSIML1Loss()(x, y), expected)
    # Gaussian-weighted L1 of a uniform error equals that error away from the zero-padded borders.
    assert gaussian_l1(torch.full((1, 1, 80, 80), 0.3), torch.zeros(1, 1, 80, 80)) < 0.3
