import pytest
import torch

from sr_tool.losses import build_loss, loss_networks
from sr_tool.losses.deep import load_st_lpips
from sr_tool.losses.ensemble import LowFrequencyL1Loss, RandomTransformEnsemble


class _RecordingDistance(torch.nn.Module):
    """A stand-in distance that keeps what it was given (mean |x - y| per image)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, y):
        self.seen.append((x.detach().clone(), y.detach().clone()))
        return (x - y).abs().flatten(1).mean(1)


def test_both_images_get_the_same_transformation_and_the_draws_vary():
    distance = _RecordingDistance()
    loss = RandomTransformEnsemble(distance, samples=40, generator=torch.Generator().manual_seed(1))
    image = torch.rand(2, 3, 72, 72)
    assert loss(image, image.clone()) == 0  # identical inputs stay identical under every draw
    sides = {x.shape[-1] for x, _ in distance.seen}
    assert 65 in sides and min(sides) >= 32 and len(sides) > 5  # shifted crop, often resampled by 0.5 to 1
    distance.seen.clear()
    loss(torch.rand(1, 3, 40, 40), torch.rand(1, 3, 40, 40))
    assert {tuple(x.shape) for x, _ in distance.seen} == {(1, 3, 33, 33)}  # small views are not resampled
    firsts = {round(float(x[0, 0, 0, 0]), 6) for x, _ in distance.seen}
    assert len(firsts) > 10  # shifts, turns and colour orders really change the view


def test_a_seeded_generator_reproduces_the_value():
    net = load_st_lpips("alex")
    x, y = torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48)
    values = [float(RandomTransformEnsemble(net, generator=torch.Generator().manual_seed(7))(x, y)) for _ in range(2)]
    other = float(RandomTransformEnsemble(net, generator=torch.Generator().manual_seed(8), samples=3)(x, y))
    assert values[0] == values[1] > 0 and other != values[0]


def test_ensemble_gradient_is_finite_and_moves_the_prediction_toward_the_target():
    loss = build_loss("elpips-alex")
    target = torch.rand(2, 3, 40, 40)
    pred = (target + 0.2 * torch.randn_like(target)).clamp(0, 1).requires_grad_(True)
    sum(loss(pred, target) for _ in range(8)).backward()  # the expectation over 8 draws
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    with torch.no_grad():
        stepped = (pred - 0.01 * pred.grad.sign()).clamp(0, 1)  # a small descent step
        before, after = (sum(float(loss(x, target)) for _ in range(16)) / 16 for x in (pred, stepped))
    assert after < before


def test_bad_shapes_are_refused():
    loss = RandomTransformEnsemble(_RecordingDistance())
    with pytest.raises(ValueError, match="too small"):
        loss(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="Nx3xHxW"):
        loss(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32))


def test_low_frequency_l1_ignores_the_finest_octave():
    base = torch.rand(1, 3, 16, 16)
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 0.2 - 0.1  # 2x2 sums to zero
    assert float(LowFrequencyL1Loss()(base + checker, base)) < 1e-6
    assert float(LowFrequencyL1Loss()(base + 0.1, base)) == pytest.approx(0.1)


def test_loss_networks_name_what_a_loss_trained_on():
    assert loss_networks("l1+0.05*elpips-alex") == ["st-lpips-alex"]
    assert loss_networks("stlpips-alex+0.1*stlpips-vgg") == ["st-lpips-alex", "st-lpips-vgg"]
    assert loss_networks("msssim+l1") == []
