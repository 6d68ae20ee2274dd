import torch

from sr_tool.losses import build_loss
from sr_tool.losses.adversarial import AdversarialLoss, PatchDiscriminator


def _grain(n: int = 4, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Random grain at several scales, as in photographs."""
    generator, image = torch.Generator().manual_seed(seed), torch.full((n, 3, size, size), 0.5)
    for cells in (4, 16, 64):
        noise = torch.randn(n, 3, cells, cells, generator=generator)
        image = image + 0.06 * torch.nn.functional.interpolate(noise, size=size, mode="bicubic", align_corners=False)
    return image.clamp(0, 1)


def _lattice(image: torch.Tensor) -> torch.Tensor:
    """The same image with a painted diagonal lattice of period 4 (what deep-feature losses invited)."""
    rows, cols = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    return (image + 0.08 * torch.cos(torch.pi * (rows + cols) / 2) * torch.cos(torch.pi * (rows - cols) / 2)).clamp(0, 1)


def test_patch_discriminator_gives_a_logit_per_patch():
    assert PatchDiscriminator()(torch.rand(2, 3, 64, 48)).shape == (2, 1, 8, 6)


def test_discriminator_learns_to_spot_a_painted_lattice_and_the_generator_loss_says_so():
    torch.manual_seed(0)
    real = _grain()
    fake = _lattice(_grain(seed=1))
    loss = AdversarialLoss(lr=2e-4, width=16)
    first = float(loss(fake, real))
    for _ in range(60):
        generator_loss = loss(fake, real)
    assert float(loss.last_discriminator_loss) < 0.9 * 2 * 0.6931  # below chance (2 log 2)
    assert float(generator_loss) > first + 0.3  # the lattice now costs the generator
    # on unseen images: fresh grain looks real, fresh grain with the lattice does not
    with torch.no_grad():
        d = loss.discriminator
        assert float(d(_grain(seed=7)).mean()) > float(d(_lattice(_grain(seed=8))).mean()) + 1.0


def test_only_training_calls_move_the_discriminator_and_its_gradient_reaches_the_output():
    loss = AdversarialLoss(width=16)
    before = [p.detach().clone() for p in loss.discriminator.parameters()]
    pred, target = _grain(seed=2).requires_grad_(), _grain(seed=3)
    with torch.no_grad():
        loss(pred, target)  # validation
    loss.eval()
    loss(pred, target).backward()  # evaluated, not trained
    assert all(torch.equal(a, b) for a, b in zip(before, loss.discriminator.parameters()))
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    loss.train()
    loss(pred.detach(), target)
    assert not all(torch.equal(a, b) for a, b in zip(before, loss.discriminator.parameters()))


def test_optimizer_state_round_trips_and_waits_for_the_next_training_call():
    a, b = AdversarialLoss(width=16), AdversarialLoss(width=16)
    pred, target = _grain(seed=4), _grain(seed=5)
    a(pred, target)
    b.load_state_dict(a.state_dict())
    b.load_optimizer_state(a.optimizer_state())
    assert b.optimizer_state()["state"][0]["step"] == 1  # pending, reported as it will be
    a(pred, target), b(pred, target)
    for p, q in zip(a.discriminator.parameters(), b.discriminator.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    assert b.optimizer_state()["state"][0]["step"] == 2


def test_gan_is_a_loss_term_that_training_keeps():
    loss = build_loss("l1+0.01*gan")
    assert list(loss.trained_terms) == ["1.gan"] and not build_loss("l1+0.1*elpips-alex").trained_terms
    value = loss(_grain(seed=6), _grain(seed=7))
    assert set(loss.last_terms) == {"l1", "gan"} and torch.isfinite(value)
