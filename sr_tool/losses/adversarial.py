"""An adversarial term: a discriminator that learns, during training, to tell outputs from real
images by their local texture, arrangement included.

The deep-feature and spectral losses score texture by its energy: a generator that cannot know the
true texture can supply the energy with a cheap near-periodic pattern (a lattice over gravel, cells
over foliage; train/README.md), and neither loss can tell that from real grain. A discriminator can:
a pattern painted alike everywhere is what it learns to spot first, so the generator is pushed off
it. This is how ESRGAN and Real-ESRGAN train their perceptual models.

:class:`AdversarialLoss` trains its own discriminator. Each call in training mode with gradients on
first takes one Adam step of the discriminator (real: the target, fake: the detached prediction),
then returns the generator's loss against it. Used alone it invents texture freely: pair it with a
pixel or deep-feature term that keeps the output on the target (``l1+0.1*elpips-alex+0.005*gan``).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class PatchDiscriminator(nn.Module):
    """Spectrally normalised convolutions; one real/fake logit per ~46 px patch, every 8 px.

    Input Nx3xHxW in [0, 1]; output Nx1x(H/8)x(W/8). Patches, not whole images: the question is
    whether the texture is real, wherever it is.
    """

    def __init__(self, width: int = 64):
        super().__init__()
        chans = [3, width, width * 2, width * 4, width * 4]
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(chans, chans[1:])):
            stride = 1 if i == 0 else 2
            layers += [spectral_norm(nn.Conv2d(cin, cout, 3 if stride == 1 else 4, stride, 1)), nn.LeakyReLU(0.2, True)]
        layers.append(spectral_norm(nn.Conv2d(chans[-1], 1, 3, 1, 1)))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x * 2 - 1)


class AdversarialLoss(nn.Module):
    """Non-saturating GAN loss ``softplus(-D(pred))`` (= -log sigmoid), with D trained here.

    Inputs NxCxHxW in [0, 1] (C = 3, H and W >= 16); returns a scalar. The discriminator's
    weights and Adam state are training state: they belong in checkpoints (see
    :meth:`optimizer_state` and :meth:`load_optimizer_state`) so that a resumed run goes on exactly.
    """

    def __init__(self, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99), width: int = 64):
        super().__init__()
        self.discriminator = PatchDiscriminator(width)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas)
        self._pending_state: dict | None = None
        self.last_discriminator_loss = torch.zeros(())

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            self.train_discriminator(pred.detach(), target.detach())
        self.discriminator.requires_grad_(False)  # the generator's step must not move D
        try:
            return F.softplus(-self.discriminator(pred)).mean()
        finally:
            self.discriminator.requires_grad_(True)

    def train_discriminator(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        """One Adam step of the discriminator: ``real`` images are real, ``fake`` ones are not."""
        if self._pending_state is not None:  # loaded now that the parameters are on their device
            self.optimizer.load_state_dict(self._pending_state)
            self._pending_state = None
        loss = F.softplus(-self.discriminator(real)).mean() + F.softplus(self.discriminator(fake)).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.last_discriminator_loss = loss.detach()

    def optimizer_state(self) -> dict:
        return self._pending_state if self._pending_state is not None else self.optimizer.state_dict()

    def load_optimizer_state(self, state: dict) -> None:
        """Restored at the next training call, when the parameters are where training runs."""
        self._pending_state = copy.deepcopy(state)  # the caller's tensors may change before then
