import pytest
import torch
import torchvision

from sr_tool.image_io import read_image
from sr_tool.losses.deep import DeepFeatureLoss, load_lpips, load_st_lpips
from sr_tool.resize import imresize


@pytest.fixture(scope="module")
def real_pairs(data_dir):
    """(HR crop, bicubic x4 crop) pairs from Set5 and Set14, 3 channels."""
    pairs = []
    for name in ("Set5/HR/baby.png", "Set5/HR/butterfly.png", "Set14/HR/comic.png"):
        hr = read_image(data_dir / name).pixels[..., :128, :128]
        sr = imresize(imresize(hr, 0.25), 4).clamp(0, 1)
        pairs.append((hr, sr))
    return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_st_lpips_equals_reference(real_pairs, net):
    stlpips = pytest.importorskip("stlpips_pytorch.stlpips")  # needs the test extras (IPython, torchsummary)
    hr, sr = real_pairs
    ref = stlpips.LPIPS(net=net, variant="shift_tolerant", verbose=False)
    ours = load_st_lpips(net)
    with torch.no_grad():
        expected = ref(hr, sr, normalize=True).flatten()
        got = ours(hr, sr)
    assert got.shape == (3,)
    assert torch.allclose(got, expected, atol=1e-5, rtol=0), (got, expected)
    assert (got > 0.01).all()  # a real difference, not a trivially zero distance


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_equals_lpips_package_given_same_backbone(net):
    import lpips

    ref = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)  # random backbone, real linear layers
    ours = load_lpips(net, random_backbone=True)
    ours.features.load_state_dict({k.split(".", 1)[1]: v for k, v in ref.net.state_dict().items()})
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x, y), ref(x, y, normalize=True).flatten(), atol=1e-6)


def test_lpips_reads_a_local_backbone_file(tmp_path):
    trunk = torchvision.models.alexnet(weights=None)
    torch.save(trunk.state_dict(), tmp_path / "alexnet.pth")
    model = load_lpips("alex", backbone_weights=tmp_path / "alexnet.pth")
    assert torch.equal(model.features[0].weight, trunk.features[0].weight)


def test_lpips_without_weights_names_both_options(monkeypatch):
    def offline(self, *args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(RuntimeError) as err:
        load_lpips("alex")
    message = str(err.value)
    assert "internet access" in message and "backbone_weights" in message and "--lpips-backbone" in message


def test_st_lpips_loss_has_finite_gradients_and_stays_frozen():
    loss = DeepFeatureLoss(load_st_lpips("alex"))
    loss.train()
    assert not loss.distance.training
    x = torch.rand(2, 3, 48, 48, requires_grad=True)
    for target in (torch.rand(2, 3, 48, 48), x.detach().clone(), torch.zeros(2, 3, 48, 48)):
        x.grad = None
        value = loss(x, target)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(x.grad).all()
    assert all(p.grad is None for p in loss.parameters())


def test_identical_images_have_zero_distance():
    model = load_st_lpips("alex")
    x = torch.rand(1, 3, 64, 64)
    assert model(x, x).abs().item() < 1e-6


def test_unknown_net():
    with pytest.raises(ValueError, match="choose one of alex, vgg"):
        load_st_lpips("squeeze")
