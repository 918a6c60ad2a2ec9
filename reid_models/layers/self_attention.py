"""SAGAN-style self-attention as used by the self-attention guided ResNet50 (Li et al. 2019)."""
from __future__ import annotations

import torch
import torch.nn as nn


class SelfAttention(nn.Module):
    """``y = alpha * o + x`` with ``o_j = sum_i s_ji h(x_i)`` (paper eqs. 2-6).

    f, g: 1x1 convs C -> C/reduction (D/8 in the paper) followed by ReLU (eq. 3:
    ``e_ij = max(f(x_i), 0)^T max(g(x_j), 0)``); h: 1x1 conv C -> C; s = softmax of e over
    the positions i attended to (eq. 4); alpha is a learned scalar initialised to 0, so the
    block starts as the identity.

    Shapes: x (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        inner = max(channels // reduction, 1)
        self.f = nn.Conv2d(channels, inner, 1)
        self.g = nn.Conv2d(channels, inner, 1)
        self.h = nn.Conv2d(channels, channels, 1)
        self.alpha = nn.Parameter(torch.zeros(1))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, N) attention map s[b, j, i] over positions i for each output position j."""
        f = torch.relu(self.f(x)).flatten(2)                          # (B, C', N)
        g = torch.relu(self.g(x)).flatten(2)                          # (B, C', N)
        return torch.softmax(g.transpose(1, 2) @ f, dim=-1)           # (B, N_j, N_i)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        out = self.h(x).flatten(2) @ self.attention(x).transpose(1, 2)  # (B, C, N)
        return x + self.alpha * out.view(b, c, h, w)
