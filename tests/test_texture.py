import pytest
import torch
import torch.nn.functional as F

from sr_tool.losses.deep import load_st_lpips
from sr_tool.losses.texture import GramTextureLoss, window_grams


@pytest.fixture(scope="module")
def texture_loss():
    return GramTextureLoss(load_st_lpips("alex"))


def _grain(seed: int) -> torch.Tensor:
    """A random grain texture, like gravel or sand: mildly smoothed noise around mid-grey."""
    noise = torch.rand(1, 3, 104, 104, generator=torch.Generator().manual_seed(seed))
    return F.avg_pool2d(noise, 3, stride=1, padding=1) * 0.6 + 0.2


def test_a_shifted_texture_is_near_and_a_blurred_one_far(texture_loss):
    grain = _grain(0)
    image, shifted = grain[..., :96, :96], grain[..., 5:101, 3:99]  # same texture, other positions
    blurred = F.avg_pool2d(image, 5, stride=1, padding=2, count_include_pad=False)
    other_grain = _grain(1)[..., :96, :96]  # same statistics, unrelated pixels
    assert texture_loss(image, image).item() == pytest.approx(0, abs=1e-6)
    near, far = texture_loss(shifted, image).item(), texture_loss(blurred, image).item()
    assert near < 0.5 * far
    assert texture_loss(other_grain, image).item() < 0.5 * far  # statistics, not positions


def test_window_grams_are_per_block_feature_correlations():
    features = torch.zeros(1, 2, 4, 6)
    features[:, 0, :2, :2] = 1  # channel 0 fires in the top-left block only
    features[:, 1, :2, :2] = 2
    grams = window_grams(features, 2)  # 2 x 3 blocks; the edge cells that do not fill one are left out
    assert grams.shape == (1, 6, 2, 2)
    assert torch.allclose(grams[0, 0], torch.tensor([[1.0, 2.0], [2.0, 4.0]]))
    assert grams[0, 1:].abs().sum() == 0


def test_too_small_images_are_a_clear_error(texture_loss):
    with pytest.raises(ValueError, match="smaller than the 32 px window"):
        texture_loss(torch.rand(1, 3, 24, 24), torch.rand(1, 3, 24, 24))
