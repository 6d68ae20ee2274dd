import pytest
import torch

from sr_tool.archs import (
    PRESETS,
    RepResNetConfig,
    SRResNetConfig,
    build_model,
    config_from_dict,
    fold,
    load_model,
    parameter_count,
    preset_config,
    save_model,
)
from sr_tool.archs.represnet import RepConv
from sr_tool.image_io import read_image


@pytest.mark.parametrize("preset", ["srresnet-tiny", "rep-tiny"])
@pytest.mark.parametrize("scale", [2, 3, 4, 8])
@pytest.mark.parametrize("size", [(7, 9), (10, 13), (1, 1)])
def test_output_is_scale_times_input(preset, scale, size):
    model = build_model(preset_config(preset, scale))
    out = model(torch.rand(2, 3, *size))
    assert out.shape == (2, 3, size[0] * scale, size[1] * scale)


def test_srresnet_preset_size_matches_the_paper():
    # Ledig et al.: ~1.5M parameters for 16 blocks x 64 channels at x4 (ours has no BN).
    assert 1.4e6 < parameter_count(build_model(preset_config("srresnet", 4))) < 1.6e6
    assert parameter_count(build_model(preset_config("srresnet-light", 4))) < 3e5


def test_batch_norm_option_adds_norm_layers():
    plain = build_model(SRResNetConfig(scale=2, channels=8, blocks=2))
    bn = build_model(SRResNetConfig(scale=2, channels=8, blocks=2, batch_norm=True))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in bn.modules()) == 5


def test_state_dict_plus_config_rebuilds_the_same_model(tmp_path):
    model = build_model(SRResNetConfig(scale=3, channels=8, blocks=3))
    save_model(model, tmp_path / "m.pt", extra={"loss": "l1"})
    rebuilt, extra = load_model(tmp_path / "m.pt")
    assert rebuilt.config == model.config and extra == {"loss": "l1"}
    x = torch.rand(1, 3, 11, 7)
    assert torch.equal(rebuilt(x), model(x))


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="scale must be one of"):
        SRResNetConfig(scale=5)
    with pytest.raises(ValueError, match="unknown preset"):
        preset_config("nope", 4)
    with pytest.raises(ValueError, match="unknown srresnet config keys"):
        config_from_dict({"scale": 2, "wat": 1})
    with pytest.raises(ValueError, match="unknown architecture 'vit'"):
        config_from_dict({"arch": "vit", "scale": 2})


def test_load_refuses_non_model_files(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not an srtool model file"):
        load_model(tmp_path / "x.pt")


def test_presets_registry_is_explicit():
    assert set(PRESETS) == {"srresnet", "srresnet-light", "srresnet-tiny", "rep-s", "rep-m", "rep-l", "rep-tiny"}


def test_configs_without_a_family_are_the_srresnets_of_older_files():
    assert config_from_dict({"scale": 4, "channels": 64, "blocks": 16}) == SRResNetConfig(4, 64, 16)


def test_efficient_presets_span_the_frontier_sizes():
    counts = [parameter_count(fold(build_model(preset_config(p, 4)))) for p in ("rep-s", "rep-m", "rep-l")]
    assert 0.1e6 < counts[0] < counts[1] < counts[2] < 0.4e6


def _trained_looking(model):
    """Perturb every weight, so that no branch is at its (partly zero) initialisation."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # outputs stay near [0, 1], as a trained model's
    return model.eval()


@pytest.mark.parametrize("scale", [2, 4])
def test_folded_model_equals_the_unfolded_one_on_a_real_image(scale):
    model = _trained_looking(build_model(preset_config("rep-m", scale)))
    folded = fold(model)
    assert folded.config == RepResNetConfig(scale=scale, channels=48, blocks=6, folded=True)
    assert not any(isinstance(m, RepConv) for m in folded.modules())
    assert parameter_count(folded) < parameter_count(model) / 3
    image = read_image("examples/zebra.png").pixels
    with torch.no_grad():
        assert (folded(image) - model(image)).abs().max() < 1e-5


def test_unfolding_a_shipped_model_continues_the_same_function():
    model = _trained_looking(build_model(preset_config("rep-s", 2)))
    folded = fold(model)
    fresh = build_model(preset_config("rep-s", 2)).eval()
    fresh.load_state_dict(fresh.unfolded_state(folded.state_dict()))
    x = torch.rand(1, 3, 20, 17)
    with torch.no_grad():
        assert (fresh(x) - folded(x)).abs().max() < 1e-5


@pytest.mark.parametrize("preset", ["rep-tiny", "rep-s", "rep-l"])
def test_a_new_efficient_model_starts_as_the_nearest_neighbour_upscale_and_learns(preset):
    # A random last layer started rep-tiny ~1.0 away from it: 14 dB on validation after 60 steps.
    model = build_model(preset_config(preset, 4))
    image = read_image("examples/zebra.png").pixels[..., :48, :48]
    with torch.no_grad():
        assert torch.equal(model(image), image.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3))
    body = [p.detach().clone() for p in model.body.parameters()]
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    target = torch.nn.functional.interpolate(image, scale_factor=4, mode="bicubic", align_corners=False)
    for _ in range(3):  # the last layer moves first; then the gradient reaches the body
        optimiser.zero_grad()
        (model(image) - target).abs().mean().backward()
        optimiser.step()
    assert any(not torch.equal(a, b) for a, b in zip(body, model.body.parameters()))
