"""Pixel losses for NxCxHxW images in [0, 1]: L1, L2 (MSE) and Charbonnier."""

from __future__ import annotations

import torch
from torch import nn


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).abs().mean()


def l2_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).pow(2).mean()


def charbonnier_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """sqrt((pred - target)^2 + eps^2): a smooth L1 whose gradient is finite at 0 (Lai et al. 2017)."""
    return torch.sqrt((pred - target).pow(2) + eps * eps).mean()


class L1Loss(nn.Module):
    def forward(self, pred, target):
        return l1_loss(pred, target)


class L2Loss(nn.Module):
    def forward(self, pred, target):
        return l2_loss(pred, target)


class CharbonnierLoss(nn.Module):
    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = eps

    def forward(self, pred, target):
        return charbonnier_loss(pred, target, self.eps)
