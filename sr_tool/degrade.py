"""Real-photo degradations for training LR (first-order, in the spirit of Real-ESRGAN).

HR (3xHxW in [0, 1]) -> Gaussian blur -> MATLAB bicubic downscale -> Gaussian noise -> JPEG. Each
step's strength is drawn from a range with the caller's ``random.Random``, so samples are
deterministic. Runs on the CPU (JPEG goes through Pillow, via the image I/O module).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sr_tool.image_io import jpeg_round_trip
from sr_tool.losses.ssim import gaussian_window
from sr_tool.resize import imresize


@dataclass(frozen=True)
class Degradation:
    blur_sigma: tuple[float, float] = (0.2, 2.0)  # pixels of the HR image; 0 = off
    noise_sigma: tuple[float, float] = (0.0, 10.0)  # on the 0-255 scale
    jpeg_quality: tuple[int, int] = (40, 95)
    probability: float = 0.8  # of applying each step


def degrade(hr: torch.Tensor, scale: int, d: Degradation, rng: random.Random) -> torch.Tensor:
    """Degraded LR (3x(H/s)x(W/s), float in [0, 1]) from an HR crop."""
    x = hr[None]
    if d.blur_sigma[1] > 0 and rng.random() < d.probability:
        sigma = rng.uniform(*d.blur_sigma)
        radius = max(1, int(3 * sigma + 0.5))
        win = gaussian_window(2 * radius + 1, sigma)
        x = F.pad(x, (radius,) * 4, mode="reflect")
        x = F.conv2d(x, win.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
        x = F.conv2d(x, win.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    x = imresize(x, 1 / scale).clamp(0, 1)
    if d.noise_sigma[1] > 0 and rng.random() < d.probability:
        sigma = rng.uniform(*d.noise_sigma) / 255
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(rng.randrange(1 << 31)))
        x = (x + sigma * noise).clamp(0, 1)
    if rng.random() < d.probability:
        x = jpeg_round_trip(x, rng.randint(*d.jpeg_quality))
    return x[0]
