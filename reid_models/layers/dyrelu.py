"""Dynamic ReLU, type B (Chen et al. ECCV 2020): spatial-shared, channel-wise coefficients."""
from __future__ import annotations

import torch
import torch.nn as nn


class DynamicReLUB(nn.Module):
    """``y_c = max_k (a_c^k x_c + b_c^k)`` with per-sample, per-channel (a, b) from the input.

    Hyper-function theta(x) (DyReLU paper / NAM-ReID paper fig. 6): global average pool ->
    FC(C, C/reduction) -> ReLU -> FC(C/reduction, 2*K*C) -> ``2*sigmoid - 1`` (range (-1, 1)).
    Residual form of the DyReLU paper: ``a^k = alpha^k + lambda_a * da^k``,
    ``b^k = beta^k + lambda_b * db^k`` with alpha = (1, 0, ...), beta = 0, lambda_a = 1.0,
    lambda_b = 0.5; so with a zero hyper-function output the unit is exactly ReLU.
    Defaults K=2, reduction 4 (as in the common reference implementations).

    Shapes: x (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, reduction: int = 4, k: int = 2) -> None:
        super().__init__()
        self.channels, self.k = channels, k
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Linear(channels, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, 2 * k * channels)
        self.register_buffer("lambdas", torch.tensor([1.0] * k + [0.5] * k), persistent=False)
        self.register_buffer("init_v", torch.tensor([1.0] + [0.0] * (2 * k - 1)), persistent=False)

    def coefficients(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Slopes a and intercepts b, each (B, C, K), for input x (B, C, H, W)."""
        theta = 2.0 * torch.sigmoid(self.fc2(self.relu(self.fc1(x.mean(dim=(2, 3)))))) - 1.0
        coefs = theta.view(-1, self.channels, 2 * self.k) * self.lambdas + self.init_v
        return coefs[..., : self.k], coefs[..., self.k:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.coefficients(x)
        out = x * a[:, :, 0, None, None] + b[:, :, 0, None, None]
        for i in range(1, self.k):  # running max keeps memory at one extra map
            out = torch.maximum(out, x * a[:, :, i, None, None] + b[:, :, i, None, None])
        return out
