"""BNNeck (Luo et al. "Bag of Tricks", CVPRW 2019)."""
from __future__ import annotations

import torch
import torch.nn as nn


class BNNeck(nn.Module):
    """BatchNorm1d between the metric-loss feature and the classifier; its bias is frozen at 0.

    Triplet/center losses act on the input feature, the ID loss on the output (and the output
    is the retrieval embedding at test time).
    Shapes: x (B, D) -> (B, D).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        self.bn.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)
