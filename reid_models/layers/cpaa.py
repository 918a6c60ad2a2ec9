"""Channel Point Affinity Attention (CPAA) of the MFA re-ID network (2024).

The MFA paper's extracted text lost the CPAA formulas; this is the reading settled in
../shared/papers/README.md: channel-wise self-attention first, then spatial (point-wise)
self-attention, each added back through a learned residual scale initialised to 0, so a
fresh CPAA is the identity and ImageNet features pass through unchanged at the start.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn


class ChannelAffinity(nn.Module):
    """``y = x + gamma * softmax(X X^T / sqrt(N)) X`` over channels, no weights except gamma.

    X is x flattened to (B, C, N=H*W). The 1/sqrt(N) temperature (our choice) keeps the
    C x C softmax from saturating on large un-normalised activations; the affinity is computed
    in float32 even under autocast.
    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        flat = x.flatten(2)                                                  # (B, C, N)
        amp_off = (torch.autocast(x.device.type, enabled=False) if x.device.type in ("cpu", "cuda")
                   else contextlib.nullcontext())
        with amp_off:                                                         # sums of N squares overflow fp16
            f32 = flat.float()
            affinity = torch.softmax(f32 @ f32.transpose(1, 2) / math.sqrt(h * w), dim=-1)  # (B, C, C)
            out = (affinity @ f32).view(b, c, h, w)
        return x + self.gamma.to(x.dtype) * out.to(x.dtype)


class PointAffinity(nn.Module):
    """``y = x + gamma * X softmax(q^T k)^T``: every position re-aggregated from similar positions.

    q, k: 1x1 convs C -> C/reduction. The value is the input map itself (no value conv):
    MFA's reported 28.3 M parameters leave no room for three C x C value convs at 512, 1024
    and 2048 channels (6.9 M on their own), so "affinity" attention re-weights features
    directly, like the channel branch.
    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        inner = max(channels // reduction, 1)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)                  # (B, N, C')
        k = self.key(x).flatten(2)                                    # (B, C', N)
        attn = torch.softmax(q @ k, dim=-1)                           # (B, N, N): row j sums to 1 over i
        out = x.flatten(2) @ attn.transpose(1, 2)                     # (B, C, N)
        return x + self.gamma * out.view(b, c, h, w)


class CPAA(nn.Module):
    """Channel affinity followed by point (position) affinity; identity at initialisation.

    Shapes: x (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.channel = ChannelAffinity(channels)
        self.point = PointAffinity(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point(self.channel(x))
