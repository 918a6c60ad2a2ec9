"""Small interchangeable layers of the re-ID networks.

Attention blocks (and the DyReLU activation) share one constructor, ``Block(channels, **options)``,
and map (B, C, H, W) -> (B, C, H, W); ``ATTENTION_BLOCKS`` names them.
"""
from __future__ import annotations

import torch.nn as nn

from .bnneck import BNNeck
from .cbam import CBAM, ChannelAttention, SpatialAttention
from .cosine_classifier import CosineClassifier
from .cpaa import CPAA, ChannelAffinity, PointAffinity
from .dyrelu import DynamicReLUB
from .gem import GeM
from .nam import NAM
from .pcb import RPP, PCBPool
from .self_attention import SelfAttention
from .simam import SimAM

ATTENTION_BLOCKS: dict[str, type[nn.Module]] = {
    "nam": NAM, "simam": SimAM, "cbam": CBAM, "cpaa": CPAA, "self_attention": SelfAttention,
    "dyrelu": DynamicReLUB,
}

__all__ = ["ATTENTION_BLOCKS", "BNNeck", "CBAM", "ChannelAttention", "SpatialAttention", "CosineClassifier",
           "CPAA", "ChannelAffinity", "PointAffinity", "DynamicReLUB", "GeM", "NAM", "RPP", "PCBPool",
           "SelfAttention", "SimAM"]
