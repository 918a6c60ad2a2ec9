"""Generalized-mean (GeM) pooling (Radenovic et al. TPAMI 2018)."""
from __future__ import annotations

import torch
import torch.nn as nn


class GeM(nn.Module):
    """``(mean_{h,w} clamp(x, eps)^p)^(1/p)``; p=1 is average pooling, p->inf max pooling.

    p is learned (initial 3.0) unless ``learn_p=False``.
    Shapes: x (B, C, H, W) -> (B, C).
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learn_p: bool = True) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learn_p)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p.clamp_min(1e-3)
        return x.clamp_min(self.eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)

    def extra_repr(self) -> str:
        p = "meta" if self.p.is_meta else f"{self.p.item():.3f}"
        return f"p={p}, eps={self.eps}"
