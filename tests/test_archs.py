import pytest
import torch

from sr_tool.archs import (
    PRESETS,
    SRResNetConfig,
    build_model,
    load_model,
    parameter_count,
    preset_config,
    save_model,
)


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
@pytest.mark.parametrize("size", [(7, 9), (10, 13), (1, 1)])
def test_output_is_scale_times_input(scale, size):
    model = build_model(preset_config("srresnet-tiny", scale))
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
    with pytest.raises(ValueError, match="unknown config keys"):
        SRResNetConfig.from_dict({"scale": 2, "wat": 1})


def test_load_refuses_non_model_files(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not an srtool model file"):
        load_model(tmp_path / "x.pt")


def test_presets_registry_is_explicit():
    assert set(PRESETS) == {"srresnet", "srresnet-light", "srresnet-tiny"}
