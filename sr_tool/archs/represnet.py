"""RepResNet: an SRResNet-style upscaler for the quality-per-CPU-second frontier.

What makes it cheap, from the NTIRE efficient-SR winners (RLFN 2022, SPAN 2024):
- every convolution runs at the LR resolution, few channels (32 to 56), 3x3 only;
- the output comes from one 3x3 convolution to ``3 * scale**2`` channels and a PixelShuffle, plus the
  input repeated ``scale**2`` times (a nearest-neighbour skip: the network learns the residual, for
  free at inference);
- re-parameterisation (RepVGG, Ding et al. 2021; ECB, Zhang et al. 2021): in training, each 3x3
  convolution is a :class:`RepConv`, the sum of a 3x3, a 1x1, a 1x1-then-3x3 expansion and the
  identity. All are linear, so :meth:`RepResNet.fold` merges them into one plain 3x3 convolution that
  computes the same function. Exported models are folded: a short stack of plain convolutions.

Input Nx3xHxW in [0, 1]; output Nx3x(sH)x(sW), not clamped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from sr_tool.archs.srresnet import SCALES


@dataclass(frozen=True)
class RepResNetConfig:
    scale: int = 4
    channels: int = 48
    blocks: int = 6
    expand: int = 2  # width multiple of the 1x1-then-3x3 branch in training; 0 = no such branch
    image_channels: int = 3
    folded: bool = False  # plain 3x3 convolutions (inference) instead of multi-branch RepConvs
    arch: str = "represnet"

    def __post_init__(self):
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale}")
        if self.channels < 1 or self.blocks < 0 or self.expand < 0:
            raise ValueError(f"channels must be >= 1, blocks and expand >= 0, got {self.channels}, "
                             f"{self.blocks}, {self.expand}")  # fmt: skip
        if self.arch != "represnet":
            raise ValueError(f"not a represnet config: arch {self.arch!r}")


class RepConv(nn.Module):
    """A 3x3 convolution trained as the sum of 3x3, 1x1, 1x1->3x3 (``expand`` times wider) and
    identity branches. The branches add capacity to the optimisation only: :meth:`folded` returns the
    one 3x3 ``nn.Conv2d`` equal to their sum."""

    def __init__(self, in_channels: int, out_channels: int, expand: int, identity: bool = True):
        super().__init__()
        self.conv3 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1)
        # No bias before the 3x3: zero padding of its output must equal padding of the input.
        self.expand_in = nn.Conv2d(in_channels, in_channels * expand, 1, bias=False) if expand else None
        self.expand_out = nn.Conv2d(in_channels * expand, out_channels, 3, padding=1) if expand else None
        self.identity = identity and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(x) + self.conv1(x)
        if self.expand_in is not None:
            out = out + self.expand_out(self.expand_in(x))
        return out + x if self.identity else out

    @torch.no_grad()
    def zero_(self) -> RepConv:
        """Make every learned branch zero (the identity branch, if any, stays)."""
        for conv in (self.conv3, self.conv1, self.expand_out):
            if conv is not None:
                conv.weight.zero_()
                conv.bias.zero_()
        return self

    @torch.no_grad()
    def folded(self) -> nn.Conv2d:
        weight = self.conv3.weight + F.pad(self.conv1.weight, (1, 1, 1, 1))
        bias = self.conv3.bias + self.conv1.bias
        if self.expand_in is not None:
            # (W3 * (W1 x))[o] = sum_e W3[o, e] * sum_i W1[e, i] x[i]: one 3x3 kernel W3 . W1.
            weight = weight + torch.einsum("oekl,ei->oikl", self.expand_out.weight, self.expand_in.weight[:, :, 0, 0])
            bias = bias + self.expand_out.bias
        if self.identity:
            eye = torch.zeros_like(weight)
            eye[range(weight.shape[0]), range(weight.shape[0]), 1, 1] = 1
            weight = weight + eye
        conv = nn.Conv2d(weight.shape[1], weight.shape[0], 3, padding=1).to(weight.device, weight.dtype)
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        return conv


def _conv(config: RepResNetConfig, cin: int, cout: int, identity: bool = True) -> nn.Module:
    return nn.Conv2d(cin, cout, 3, padding=1) if config.folded else RepConv(cin, cout, config.expand, identity)


class RepBlock(nn.Module):
    def __init__(self, config: RepResNetConfig):
        super().__init__()
        c = config.channels
        # The block's own skip is the identity; a second one inside conv2 would double the signal
        # per block (64x over six blocks at initialisation).
        self.conv1, self.act, self.conv2 = _conv(config, c, c), nn.PReLU(c), _conv(config, c, c, identity=False)
        if isinstance(self.conv2, RepConv):  # start as the identity (zero-initialised residual branch)
            self.conv2.zero_()

    def forward(self, x):
        return x + self.conv2(self.act(self.conv1(x)))


class RepResNet(nn.Module):
    def __init__(self, config: RepResNetConfig):
        super().__init__()
        self.config = config
        c, n, s = config.channels, config.image_channels, config.scale
        self.head = _conv(config, n, c)
        self.body = nn.Sequential(*(RepBlock(config) for _ in range(config.blocks)))
        self.body_tail = _conv(config, c, c)
        self.to_pixels = _conv(config, c, n * s * s)
        if isinstance(self.to_pixels, RepConv):
            # Start as the nearest-neighbour skip alone: a random last layer put the first outputs
            # about 1.0 (of a 0..1 range) away from it, far below bicubic for hundreds of steps.
            self.to_pixels.zero_()
        self.shuffle = nn.PixelShuffle(s)

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        h = h + self.body_tail(self.body(h))
        # Each output pixel starts from its LR pixel (repeat = nearest upscale after the shuffle).
        skip = x.repeat_interleave(self.config.scale**2, dim=1)
        return self.shuffle(self.to_pixels(h) + skip)

    def unfolded_state(self, folded_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A state dict for this (unfolded) model that computes the same function as a folded one's:
        each RepConv gets the folded kernel in its 3x3 branch (less the identity), zero elsewhere.
        Training that continues from a shipped (folded) model starts exactly where it left off."""
        state = dict(self.state_dict())
        for name, module in self.named_modules():
            if not isinstance(module, RepConv):
                continue
            weight, bias = folded_state[f"{name}.weight"].clone(), folded_state[f"{name}.bias"]
            if module.identity:
                weight[range(weight.shape[0]), range(weight.shape[0]), 1, 1] -= 1
            state[f"{name}.conv3.weight"], state[f"{name}.conv3.bias"] = weight, bias
            for key in (f"{name}.conv1.weight", f"{name}.conv1.bias", f"{name}.expand_out.weight",
                        f"{name}.expand_out.bias"):  # fmt: skip
                if key in state:
                    state[key] = torch.zeros_like(state[key])
        for name, value in folded_state.items():  # the rest (PReLU slopes) has the same names
            if name in state and state[name].shape == value.shape:
                state[name] = value
        return state

    def fold(self) -> RepResNet:
        """The same function with every RepConv merged into one plain 3x3 convolution (a new model)."""
        if self.config.folded:
            return self
        first = next(self.parameters())
        folded = RepResNet(replace(self.config, folded=True)).to(first.device, first.dtype)
        state, reps = {}, set()
        for name, module in self.named_modules():
            if isinstance(module, RepConv):
                conv = module.folded()
                state[f"{name}.weight"], state[f"{name}.bias"] = conv.weight, conv.bias
                reps.add(name)
        for name, value in self.state_dict().items():  # the rest (PReLU slopes) as they are
            if not any(name.startswith(f"{rep}.") for rep in reps):
                state[name] = value
        folded.load_state_dict(state)
        return folded.train(self.training)
