import pytest
import torch

from sr_tool.degrade import (PRESETS, Degradation, Stage, add_noise, blur_kernels, degradation_from_spec, degrade,
                             sinc_kernels)
from sr_tool.image_io import read_image
from sr_tool.jpeg import jpeg
from sr_tool.resize import imresize


@pytest.fixture(scope="module")
def hr():
    """Four 96 px crops of a real photo (the bundled example, upscaled so that it holds 192 px)."""
    image = read_image("examples/zebra.png").pixels
    image = imresize(image, size=(192, 192)).clamp(0, 1)
    return image.reshape(1, 3, 2, 96, 2, 96).permute(0, 2, 4, 1, 3, 5).reshape(4, 3, 96, 96).contiguous()


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _detail(x):
    """Mean absolute difference of neighbouring pixels: what blur removes and noise adds."""
    return (x[..., 1:] - x[..., :-1]).abs().mean().item()


def test_clean_is_the_benchmark_bicubic(hr):
    assert torch.equal(degrade(hr, 4, PRESETS["clean"], _gen()), imresize(hr, 0.25, round_8bit=True))


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_make_8bit_lr_that_a_seed_reproduces(hr, name):
    a = degrade(hr, 4, PRESETS[name], _gen(3))
    assert a.shape == (4, 3, 24, 24) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, torch.round(a * 255) / 255)
    assert torch.equal(a, degrade(hr, 4, PRESETS[name], _gen(3)))
    if name != "clean":
        assert not torch.equal(a, degrade(hr, 4, PRESETS[name], _gen(4)))
        assert (a - imresize(hr, 0.25, round_8bit=True)).abs().mean() > 2 / 255


def test_blur_stage_removes_detail(hr):
    clean = degrade(hr, 2, Degradation(), _gen())
    blurred = degrade(hr, 2, Degradation("b", (Stage(blur_probability=1, blur_sigma=(2.5, 3.0)),)), _gen())
    assert _detail(blurred) < 0.7 * _detail(clean)


def test_blur_kernels_have_the_drawn_shapes():
    stage = Stage(blur_sigma=(2.5, 3.0), blur_kernel_size=(7, 21), anisotropic_probability=0.0)
    k = blur_kernels(stage, 64, _gen())
    assert k.shape == (64, 21, 21)
    assert torch.allclose(k.sum((1, 2)), torch.ones(64))
    assert torch.allclose(k, k.flip(1)) and torch.allclose(k, k.transpose(1, 2), atol=1e-6)  # isotropic
    sizes = (k > 0).any(1).sum(1)
    assert set(sizes.tolist()) <= set(range(7, 22, 2)) and len(set(sizes.tolist())) > 3
    # Anisotropic: sigma (0.5, 3) along random axes gives kernels that aren't symmetric under a turn.
    k = blur_kernels(Stage(blur_sigma=(0.5, 3.0), anisotropic_probability=1.0), 32, _gen())
    assert (k - k.transpose(1, 2)).abs().amax((1, 2)).max() > 0.01


def test_sinc_kernels_ring():
    k = sinc_kernels(torch.tensor([21, 7]), _gen())
    assert torch.allclose(k.sum((1, 2)), torch.ones(2))
    assert k[0].min() < 0  # negative lobes: the overshoot of a sharp low-pass
    assert (k[1] != 0).sum() == 49


def test_resize_stage_down_then_back_loses_detail():
    hr = torch.rand(4, 3, 96, 96, generator=_gen(1))  # detail at every frequency
    stage = Stage(resize_probabilities=(0, 1, 0), resize_range=(0.3, 0.4), resize_modes=("bilinear",))
    lr = degrade(hr, 2, Degradation("r", (stage, Stage())), _gen())
    assert lr.shape == (4, 3, 48, 48)
    assert _detail(lr) < 0.8 * _detail(degrade(hr, 2, Degradation(), _gen()))


def test_gaussian_noise_has_the_drawn_sigma_and_gray_noise_is_gray():
    flat = torch.full((8, 3, 64, 64), 0.5)
    colour = add_noise(flat, Stage(noise_probability=1, noise_sigma=(10, 10), gray_noise_probability=0), _gen())
    assert abs((colour - flat).std().item() * 255 - 10) < 0.3
    gray = add_noise(flat, Stage(noise_probability=1, noise_sigma=(10, 10), gray_noise_probability=1), _gen())
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])


def test_poisson_noise_grows_with_brightness():
    stage = Stage(noise_probability=1, poisson_share=1, poisson_scale=(1, 1), gray_noise_probability=0)
    dark, bright = torch.full((4, 3, 64, 64), 0.05), torch.full((4, 3, 64, 64), 0.8)
    noise_dark = (add_noise(dark, stage, _gen()) - dark).std()
    noise_bright = (add_noise(bright, stage, _gen()) - bright).std()
    # Shot noise: variance proportional to the signal, so std grows as its square root (4x here).
    assert 3.2 < (noise_bright / noise_dark).item() < 4.8


def test_jpeg_stage_is_jpeg_at_the_drawn_quality(hr):
    stage = Stage(jpeg_probability=1, jpeg_quality=(40, 40))
    assert torch.equal(degrade(hr, 4, Degradation("j", (stage,)), _gen()),
                       torch.floor(jpeg(imresize(hr, 0.25, round_8bit=True), 40) * 255 + 0.5) / 255)  # fmt: skip


def test_probability_zero_stages_do_nothing_and_one_always_acts(hr):
    off = Stage(blur_probability=0, noise_probability=0, jpeg_probability=0)
    assert torch.equal(degrade(hr, 4, Degradation("off", (off,)), _gen()), degrade(hr, 4, Degradation(), _gen()))
    on = Stage(noise_probability=1, noise_sigma=(5, 5))
    changed = (degrade(hr, 4, Degradation("on", (on,)), _gen()) != degrade(hr, 4, Degradation(), _gen()))
    assert changed.flatten(1).any(1).all()  # every image of the batch


def test_specs_from_recipes():
    assert degradation_from_spec("jpeg") is PRESETS["jpeg"]
    assert degradation_from_spec(True) is PRESETS["first-order"] and degradation_from_spec(False) is PRESETS["clean"]
    custom = degradation_from_spec({"preset": "second-order", "jpeg_quality": [60, 90]})
    assert all(stage.jpeg_quality == (60, 90) for stage in custom.stages) and len(custom.stages) == 2
    with pytest.raises(ValueError, match="presets: clean"):
        degradation_from_spec("jpg")
    with pytest.raises(ValueError, match="unknown degradation settings"):
        degradation_from_spec({"preset": "jpeg", "jpeg_qualty": [1, 2]})
    with pytest.raises(ValueError, match="jpeg_probability"):
        Stage(jpeg_probability=2)


def test_rejects_sizes_that_do_not_divide():
    with pytest.raises(ValueError, match="multiples of 4"):
        degrade(torch.rand(1, 3, 30, 32), 4, PRESETS["jpeg"], _gen())
