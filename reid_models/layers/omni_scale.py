"""Omni-scale building blocks of OSNet (Zhou et al., ICCV 2019) and OSNet-AIN (Zhou et al., TPAMI 2021).

An omni-scale bottleneck reduces the channels with a 1x1 convolution, runs T parallel streams of
1..T "lite" 3x3 convolutions (receptive fields 3, 5, 7, 9 for T = 4), weighs every stream with
one shared unified aggregation gate (a channel-wise sigmoid computed from the stream itself) and
sums them, expands back with a 1x1 convolution and adds the shortcut.

Module names follow the layout of the published OSNet checkpoints, so their state dicts load
unchanged: ``conv``/``bn``/``relu`` inside a conv unit, ``conv1``/``conv2``/``bn``/``relu`` inside a
lite 3x3, ``fc1``/``fc2`` in the gate, ``IN`` for a block's instance norm, and the streams either
lettered (``conv2a`` .. ``conv2d``, OSNet and OSNet-IBN) or listed (``conv2.{t}.layers``, OSNet-AIN).
"""
from __future__ import annotations

import torch
import torch.nn as nn


class ConvUnit(nn.Module):
    """Conv -> norm -> optional ReLU. ``norm``: 'bn' (BatchNorm2d), 'in' (affine InstanceNorm2d) or None.

    Shapes: (B, C_in, H, W) -> (B, C_out, H / stride, W / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 padding: int = 0, *, norm: str | None = "bn", relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        if norm == "bn":
            self.bn: nn.Module | None = nn.BatchNorm2d(out_channels)
        elif norm == "in":
            self.bn = nn.InstanceNorm2d(out_channels, affine=True)
        elif norm is None:
            self.bn = None
        else:
            raise ValueError(f"norm must be 'bn', 'in' or None, got {norm!r}")
        self.relu = nn.ReLU(inplace=True) if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.relu(x) if self.relu is not None else x


class LiteConv3x3(nn.Module):
    """Pointwise 1x1 then depthwise 3x3 (a factorised 3x3 convolution), BatchNorm, ReLU. (B, C_in, H, W) ->
    (B, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, groups=out_channels, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv2(self.conv1(x))))


class LiteStream(nn.Module):
    """``depth`` stacked lite 3x3 convolutions (receptive field 2 * depth + 1), kept under ``layers``."""

    def __init__(self, channels: int, depth: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*(LiteConv3x3(channels, channels) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class AggregationGate(nn.Module):
    """Unified aggregation gate: x * sigmoid(fc2(relu(fc1(GAP(x))))), one set of weights shared by all streams.

    Shapes: (B, C, H, W) -> (B, C, H, W); the hidden width is C // reduction (at least 1).
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc2(self.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(weights)


class OmniScaleBlock(nn.Module):
    """Omni-scale residual bottleneck. (B, C_in, H, W) -> (B, C_out, H, W).

    residual = expand(sum_t gate(stream_t(reduce(x)))), out = relu(residual + shortcut(x)), with
    ``instance_norm``:
      - None: plain OSNet block;
      - 'output' (OSNet-IBN): InstanceNorm2d on the sum, before the final ReLU;
      - 'residual' (OSNet-AIN): the expansion has no BatchNorm and an InstanceNorm2d normalises the
        residual branch before the addition.
    ``lettered_streams`` picks the checkpoint layout of the streams (OSNet/IBN: True, AIN: False).
    The shortcut is a 1x1 conv + BN when C_in != C_out, the identity otherwise.
    """

    def __init__(self, in_channels: int, out_channels: int, *, streams: int = 4, bottleneck_reduction: int = 4,
                 instance_norm: str | None = None, lettered_streams: bool = True) -> None:
        super().__init__()
        if instance_norm not in (None, "output", "residual"):
            raise ValueError(f"instance_norm must be None, 'output' or 'residual', got {instance_norm!r}")
        if lettered_streams and not 1 <= streams <= 26:
            raise ValueError(f"lettered streams need 1..26 streams, got {streams}")
        mid = out_channels // bottleneck_reduction
        self.conv1 = ConvUnit(in_channels, mid)
        self.lettered_streams = lettered_streams
        if lettered_streams:
            for t in range(1, streams + 1):
                convs = [LiteConv3x3(mid, mid) for _ in range(t)]
                self.add_module(f"conv2{chr(ord('a') + t - 1)}", convs[0] if t == 1 else nn.Sequential(*convs))
        else:
            self.conv2 = nn.ModuleList(LiteStream(mid, t) for t in range(1, streams + 1))
        self.streams = streams
        self.gate = AggregationGate(mid)
        self.conv3 = ConvUnit(mid, out_channels, norm=None if instance_norm == "residual" else "bn", relu=False)
        self.downsample = ConvUnit(in_channels, out_channels, relu=False) if in_channels != out_channels else None
        self.instance_norm = instance_norm
        self.IN = nn.InstanceNorm2d(out_channels, affine=True) if instance_norm is not None else None

    def stream_modules(self) -> list[nn.Module]:
        """The T streams, shortest receptive field first."""
        if self.lettered_streams:
            return [getattr(self, f"conv2{chr(ord('a') + t)}") for t in range(self.streams)]
        return list(self.conv2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.conv1(x)
        mixed = sum(self.gate(stream(reduced)) for stream in self.stream_modules())
        residual = self.conv3(mixed)
        if self.instance_norm == "residual":
            residual = self.IN(residual)
        shortcut = x if self.downsample is None else self.downsample(x)
        out = residual + shortcut
        if self.instance_norm == "output":
            out = self.IN(out)
        return torch.relu(out)
