import pytest
import torch

from sr_tool.image_io import read_image
from sr_tool.metrics import ARTIFACT_THRESHOLD, ms_ssim_rgb, psnr_y, quantise_8bit, spectral_excess, ssim_y, y_channel
from sr_tool.resize import imresize

# Published bicubic PSNR-Y (dB) of the SR literature, e.g. Kim et al. 2016 (VDSR), Table 2.
PUBLISHED_BICUBIC = {
    ("Set5", 2): 33.66, ("Set5", 3): 30.39, ("Set5", 4): 28.42,
    ("Set14", 2): 30.24, ("Set14", 3): 27.55, ("Set14", 4): 26.00,
    ("BSD100", 2): 29.56, ("BSD100", 3): 27.21, ("BSD100", 4): 25.96,
}  # fmt: skip


def test_y_channel_matches_matlab_rgb2ycbcr():
    rgb = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]).T.reshape(1, 3, 1, 3)
    assert y_channel(rgb).flatten().tolist() == [16.0, 235.0, 81.0]  # MATLAB: 16, 235, 81
    gray = torch.tensor([[[[0.5]]]])
    assert y_channel(gray).item() == 128.0  # gray is scored on its own channel (0.5 -> 127.5 -> 128)


def test_psnr_of_known_error():
    hr = torch.full((1, 1, 8, 8), 100 / 255)
    sr = torch.full((1, 1, 8, 8), 110 / 255)
    expected = 10 * torch.log10(torch.tensor(255.0**2 / 100))
    assert torch.allclose(psnr_y(sr, hr).float(), expected)


def test_shave_and_quantisation():
    hr = quantise_8bit(torch.rand(1, 3, 20, 20))
    sr = hr.clone()
    sr[..., :2, :] = 0  # errors only inside the shaved border
    assert psnr_y(sr, hr, shave=2) > 90
    assert psnr_y(hr + 0.4 / 255, hr) > 90  # below half a level: quantised away
    assert torch.equal(quantise_8bit(torch.tensor([0.5 / 255, -1.0, 2.0])), torch.tensor([1 / 255, 0.0, 1.0]))


def test_ssim_and_ms_ssim_are_one_for_identical_images():
    x = torch.rand(2, 3, 64, 64)
    assert torch.allclose(ssim_y(x, x).float(), torch.ones(2))
    assert torch.allclose(ms_ssim_rgb(x, x).float(), torch.ones(2))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_baseline_reproduces_published_psnr(data_dir, scale):
    """Upscale the MATLAB LR files with our imresize; PSNR-Y within 0.02 dB of the published tables."""
    for name in ("Set5", "Set14", "BSD100"):
        values = []
        for hr_path in sorted((data_dir / name / "HR").iterdir()):
            hr = read_image(hr_path).pixels
            h, w = hr.shape[-2:]
            hr = hr[..., : h - h % scale, : w - w % scale]
            lr = read_image(data_dir / name / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}.png").pixels
            values.append(psnr_y(imresize(lr, scale), hr, shave=scale).item())
        mean = sum(values) / len(values)
        assert abs(mean - PUBLISHED_BICUBIC[name, scale]) <= 0.02, (name, scale, mean)


def _texture(size: int = 192) -> torch.Tensor:
    """A natural-looking test image: noise at several scales (energy falling with frequency)."""
    generator, image = torch.Generator().manual_seed(3), torch.full((1, 1, size, size), 0.5)
    for cells in (6, 12, 24, 48, 96, 192):
        noise = torch.randn(1, 1, cells, cells, generator=generator)
        image = image + 0.06 * torch.nn.functional.interpolate(noise, size=size, mode="bicubic", align_corners=False)
    return image.clamp(0, 1).expand(1, 3, size, size).contiguous()


def _gaussian_blur(images: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    taps = torch.arange(-3, 4, dtype=images.dtype)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = (kernel[:, None] * kernel[None, :] / kernel.sum() ** 2).expand(images.shape[1], 1, 7, 7)
    padded = torch.nn.functional.pad(images, (3, 3, 3, 3), mode="reflect")
    return torch.nn.functional.conv2d(padded, kernel, groups=images.shape[1])


def test_spectral_excess_flags_a_painted_mesh_but_not_blur_or_the_truth():
    hr = _texture()
    rows, cols = torch.meshgrid(torch.arange(192.0), torch.arange(192.0), indexing="ij")
    mesh = (torch.cos(2 * torch.pi * (rows + cols) / 8) + torch.cos(2 * torch.pi * (rows - cols) / 8)) * 3 / 255
    blurred = _gaussian_blur(hr)
    assert float(spectral_excess(hr, hr)) == 0.0
    assert float(spectral_excess(blurred, hr)) <= 0  # (0: the colourless test image has no chroma to lose)
    assert float(spectral_excess((hr + mesh).clamp(0, 1), hr)) > ARTIFACT_THRESHOLD  # a 3-level diagonal mesh
    assert float(spectral_excess((hr + mesh / 6).clamp(0, 1), hr)) < ARTIFACT_THRESHOLD  # half a level: invisible
    assert torch.isnan(spectral_excess(hr[..., :40, :40], hr[..., :40, :40])).all()  # too small to measure


def test_spectral_excess_sees_a_mesh_painted_in_colour_only():
    hr = _texture()
    rows, cols = torch.meshgrid(torch.arange(192.0), torch.arange(192.0), indexing="ij")
    mesh = torch.cos(2 * torch.pi * (rows + cols) / 8) * 3 / 255
    magenta_green = torch.stack([mesh, -mesh, mesh])[None]  # luma nearly unchanged, chroma striped
    assert float(spectral_excess((hr + magenta_green).clamp(0, 1), hr)) > ARTIFACT_THRESHOLD
    gray = hr[:, :1]
    assert float(spectral_excess(gray, gray)) == 0.0
