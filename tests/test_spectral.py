import pytest
import torch

from sr_tool.losses import build_loss
from sr_tool.losses.spectral import SpectralExcessLoss


def _scene(n: int = 4, size: int = 64) -> torch.Tensor:
    """Images with energy falling with frequency, as in photographs."""
    generator, image = torch.Generator().manual_seed(5), torch.full((n, 3, size, size), 0.5)
    for cells in (4, 8, 16, 32, 64):
        noise = torch.randn(n, 3, cells, cells, generator=generator)
        image = image + 0.05 * torch.nn.functional.interpolate(noise, size=size, mode="bicubic", align_corners=False)
    return image.clamp(0, 1)


def test_a_painted_mesh_costs_and_blur_or_the_truth_do_not():
    target = _scene()
    rows, cols = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    mesh = (torch.cos(torch.pi * (rows + cols) / 4) + torch.cos(torch.pi * (rows - cols) / 4)) * 4 / 255
    blurred = torch.nn.functional.avg_pool2d(target, 3, 1, 1, count_include_pad=False)
    loss = SpectralExcessLoss()
    assert float(loss(target, target)) == 0.0 and float(loss(blurred, target)) == 0.0
    assert float(loss((target + mesh).clamp(0, 1), target)) > 0.001


def test_its_gradient_removes_the_mesh():
    target = _scene()
    rows, cols = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    mesh = torch.cos(torch.pi * (rows + cols) / 4) * 6 / 255
    pred = (target + mesh).requires_grad_(True)
    loss = build_loss("spectral-excess")
    before = float(loss(pred, target))
    optimiser = torch.optim.Adam([pred], lr=1e-3)
    for _ in range(30):
        optimiser.zero_grad()
        loss(pred, target).backward()
        optimiser.step()
    assert torch.isfinite(pred.grad).all()
    assert float(loss(pred, target)) < 0.2 * before


def test_small_or_mismatched_images_are_refused():
    with pytest.raises(ValueError, match="at least 8 px"):
        SpectralExcessLoss()(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError):
        SpectralExcessLoss()(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17))
