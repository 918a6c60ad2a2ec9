"""SimAM: parameter-free 3-D attention (Yang et al. ICML 2021)."""
from __future__ import annotations

import torch
import torch.nn as nn


class SimAM(nn.Module):
    """Energy-based neuron weights with no parameters.

    Per channel, with n = H*W - 1, mu the spatial mean and ``var = sum((x-mu)^2) / n``:
    ``1/e* = (x-mu)^2 / (4 (var + lambda)) + 0.5`` and output ``x * sigmoid(1/e*)``
    (SimAM eq. 5/6, lambda = 1e-4 as in the paper). ``channels`` is accepted only so every
    attention block shares one constructor.

    Shapes: x (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int = 0, lambda_: float = 1e-4) -> None:
        super().__init__()
        self.lambda_ = lambda_

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[2] * x.shape[3] - 1
        d = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2)
        var = d.sum(dim=(2, 3), keepdim=True) / max(n, 1)
        inv_energy = d / (4 * (var + self.lambda_)) + 0.5
        return x * torch.sigmoid(inv_energy)

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_}"
