"""NAM channel attention (Liu et al. 2021, "NAM: Normalization-based Attention Module")."""
from __future__ import annotations

import torch
import torch.nn as nn


class NAM(nn.Module):
    """Channel attention weighted by the BatchNorm scale factors; no FC or conv layers.

    ``W_i = |gamma_i| / sum_j |gamma_j|`` (NAM eq. 2), ``M = sigmoid(W * BN(x))`` (eq. 3),
    output ``x * M``. As in the NAM reference code the channel weights W are computed from
    the detached gamma (gamma still learns through the BN path).

    Shapes: x (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)

    def channel_weights(self) -> torch.Tensor:
        """(C,) ``|gamma| / sum |gamma|``, summing to 1."""
        gamma = self.bn.weight.detach().abs()
        return gamma / gamma.sum().clamp_min(1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.channel_weights().view(1, -1, 1, 1)
        return x * torch.sigmoid(self.bn(x) * w)
