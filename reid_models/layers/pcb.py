"""PCB stripe pooling and RPP refined part pooling (Sun et al. ECCV 2018)."""
from __future__ import annotations

import torch
import torch.nn as nn


def stripe_bounds(height: int, parts: int) -> list[tuple[int, int]]:
    """Row ranges [start, end) of ``parts`` stripes of ``height`` rows, the bins of adaptive pooling:
    start = floor(i * H / p), end = ceil((i + 1) * H / p). When p does not divide H, neighbours
    share a row (e.g. H=8, p=6)."""
    return [(i * height // parts, -(-(i + 1) * height // parts)) for i in range(parts)]


class PCBPool(nn.Module):
    """Average-pool p horizontal stripes (uniform partition, top to bottom).

    The stripes are the bins of ``F.adaptive_avg_pool2d(x, (p, 1))`` (same numbers), written as
    fixed row slices so that the ONNX exporter also takes a p that does not divide H (6 stripes
    of the 8-row map at 256x128 input, where neighbouring stripes overlap by one row).
    Shapes: x (B, C, H, W) -> (B, C, p).
    """

    def __init__(self, parts: int = 6) -> None:
        super().__init__()
        self.parts = parts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bounds = stripe_bounds(int(x.shape[-2]), self.parts)
        return torch.stack([x[..., r0:r1, :].mean(dim=(-2, -1)) for r0, r1 in bounds], dim=-1)


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
