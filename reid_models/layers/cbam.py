"""CBAM: channel then spatial attention (Woo et al. ECCV 2018)."""
from __future__ import annotations

import torch
import torch.nn as nn


class ChannelAttention(nn.Module):
    """``M_c = sigmoid(MLP(avgpool x) + MLP(maxpool x))``, the MLP as two 1x1 convs.

    Shapes: x (B, C, H, W) -> weights (B, C, 1, 1).
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """``M_s = sigmoid(BN(conv7x7([mean_c x, max_c x])))`` (conv + BN as in the CBAM reference code).

    Shapes: x (B, C, H, W) -> weights (B, 1, H, W).
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.bn(self.conv(pooled)))


class CBAM(nn.Module):
    """``F' = M_c(F) * F``, ``F'' = M_s(F') * F'`` (CBAM eq. 1; cbam-joint-loss paper eq. 7).

    Shapes: x (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel(x)
        return x * self.spatial(x)
