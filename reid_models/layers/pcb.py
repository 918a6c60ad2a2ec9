"""PCB stripe pooling and RPP refined part pooling (Sun et al. ECCV 2018)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class PCBPool(nn.Module):
    """Average-pool p horizontal stripes (uniform partition, top to bottom).

    When H is not a multiple of p the stripes come from adaptive pooling and overlap by
    one row (e.g. H=8 rows at 256x128 input with p=6).
    Shapes: x (B, C, H, W) -> (B, C, p).
    """

    def __init__(self, parts: int = 6) -> None:
        super().__init__()
        self.parts = parts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, (self.parts, 1)).squeeze(-1)


class RPP(nn.Module):
    """Refined part pooling: a part classifier assigns every column vector f to the p parts.

    ``P(P_i | f) = softmax_i(W_i^T f)`` (ConvNeXt-AP eq. 1, a 1x1 conv without bias), then
    part i is the P(P_i|f)-weighted average of all f (eq. 2, normalised by the part's total
    weight so a one-hot assignment to a stripe gives exactly that stripe's average).
    The PCB paper trains W in a second stage, after the uniform-stripe model has converged.
    Shapes: x (B, C, H, W) -> (B, C, p).
    """

    def __init__(self, channels: int, parts: int = 6) -> None:
        super().__init__()
        self.parts = parts
        self.classifier = nn.Conv2d(channels, parts, 1, bias=False)

    def part_probs(self, x: torch.Tensor) -> torch.Tensor:
        """(B, p, H, W) probabilities, summing to 1 over p at each location."""
        return torch.softmax(self.classifier(x), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = self.part_probs(x).flatten(2)                       # (B, p, N)
        weighted = x.flatten(2) @ probs.transpose(1, 2)             # (B, C, p)
        return weighted / probs.sum(dim=2).unsqueeze(1).clamp_min(1e-6)
