import pytest
import torch

from sr_tool.losses import build_loss
from sr_tool.losses.artifact_map import ArtifactMapLoss, artifact_map


def _target(size: int = 64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    smooth = torch.rand(2, 3, size // 8, size // 8, generator=generator)
    smooth = torch.nn.functional.interpolate(smooth, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
    return 0.25 + 0.5 * smooth  # room for the patterns below, unclipped


def _mesh(size: int = 64, amplitude: float = 0.1) -> torch.Tensor:
    """Painted grain whose size varies pixel to pixel (a pattern of one size everywhere, say a
    +-a checkerboard, has an even |error| and is not what the map looks for: the spectral guard is)."""
    return amplitude * torch.randn(size, size, generator=torch.Generator().manual_seed(4))


def test_a_painted_pattern_is_charged_far_more_than_an_even_error_of_the_same_size():
    target = _target()
    pred = target.clone()
    pred[..., :32] += 0.1  # left: off by an even amount (a tone shift, not an artifact)
    pred[..., 32:] += _mesh()[:, 32:]  # right: a painted mesh, as large pixel by pixel
    weights = artifact_map(pred, target, reference=target)  # the reference is perfect: nothing is excused
    assert weights.shape == (2, 1, 64, 64)
    left, right = weights[..., 4:24].mean(), weights[..., 40:60].mean()
    assert float(right) > 20 * float(left)
    assert float(weights.mean()) == pytest.approx(1.0, rel=1e-4)  # rescaled: a weight of 1 reads like an L1's


def test_pixels_where_the_model_beats_the_steadier_model_are_free():
    target = _target()
    pred = target + _mesh()
    worse = target + 2 * _mesh()
    reference = target.clone()
    reference[..., :32] = worse[..., :32]  # the steadier model is worse on the left only
    weights = artifact_map(pred, target, reference)
    assert float(weights[..., :32].abs().max()) == 0.0 and float(weights[..., 32:].mean()) > 0.5
    assert float(ArtifactMapLoss()(pred, target, reference=worse)) == 0.0


def test_its_gradient_pulls_a_new_pattern_back_and_leaves_the_rest():
    target = _target()
    pred = (target + _mesh() * (torch.arange(64.0) >= 32)).clamp(0, 1).requires_grad_(True)
    ArtifactMapLoss()(pred, target, reference=target).backward()
    assert float(pred.grad[..., 40:60].abs().mean()) > 0 and float(pred.grad[..., 4:24].abs().max()) == 0.0


def test_it_needs_the_reference_and_says_so():
    loss = build_loss("l1+ldl")
    assert loss.needs_reference and not build_loss("l1+0.05*gan").needs_reference
    pred, target = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="needs a reference"):
        loss(pred, target)
    assert torch.isfinite(loss(pred, target, reference=target))
    with pytest.raises(ValueError, match="one shape"):
        artifact_map(pred, target, torch.rand(1, 3, 16, 8))
    with pytest.raises(ValueError, match="too small"):
        artifact_map(torch.rand(1, 3, 2, 2), torch.rand(1, 3, 2, 2), torch.rand(1, 3, 2, 2))
