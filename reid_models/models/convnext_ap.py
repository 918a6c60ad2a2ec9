"""``convnext_ap``: ConvNeXt + SimAM + PCB/RPP parts (Sun et al., Eng OA 2024, ConvNeXt-AP).

Decisions (convnext-ap-simam-pcb-rpp.txt):
- Backbone: torchvision ConvNeXt with its head (pool, norm, linear) removed; ``variant``
  tiny/small/base, default base, which matches the paper's 90.74 M parameters / 10.04 G
  multiply-adds at 256x128. The standard stride-32 trunk is kept (the paper's FLOPs match it),
  so the map is 8x4 at 256x128 and 12x4 at 384x128.
- SimAM (lambda 1e-4, no parameters) is appended to the residual branch of every ConvNeXt
  block, after the second pointwise linear and before layer scale / stochastic depth / the
  residual add (fig. 5 places it inside the block; the exact spot is not given).
- PCB: p=6 horizontal stripes average-pooled (adaptive pooling: on 8 rows the stripes
  overlap by one row), each reduced by a 1x1 conv (== linear on the pooled vector) to 256-d +
  BN, dropout 0.5, then one linear ID classifier per part (softmax CE per part). The test
  embedding is the concatenation of the six 256-d part features (1536-d).
- RPP (``rpp=True``) replaces the uniform stripes by a learned part classifier (softmax over
  parts at every location, parts = probability-weighted averages). As in PCB it is meant as
  a second stage: train with ``rpp=False``, then build with ``rpp=True``, load that state dict
  with ``strict=False`` (only ``pool.classifier.weight`` is new) and fine-tune.
- Stochastic depth rate of the last block ``drop_path_rate`` = 0.1 (not given in the paper).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..backbones import add_to_convnext_blocks, convnext
from ..layers import RPP, PCBPool, SimAM
from ..output import ReIDOutput
from ..registry import DEFAULT_INPUT_SIZE, register_model


class ConvNeXtAP(nn.Module):
    """forward: x (B, 3, H, W) -> ReIDOutput; embedding (B, parts*part_dim); train: features
    [parts x (B, part_dim)], logits [parts x (B, num_classes)], aux {"part_features": (B, parts, part_dim)}."""

    def __init__(self, num_classes: int, pretrained: bool | str | Path | None = None, variant: str = "base",
                 parts: int = 6, part_dim: int = 256, rpp: bool = False, dropout: float = 0.5,
                 drop_path_rate: float = 0.1, input_size: tuple[int, int] = DEFAULT_INPUT_SIZE) -> None:
        super().__init__()
        self.backbone = add_to_convnext_blocks(convnext(variant, pretrained, drop_path_rate), SimAM)
        channels = self.backbone.out_channels
        self.pool: nn.Module = RPP(channels, parts) if rpp else PCBPool(parts)
        self.reduce = nn.ModuleList(
            nn.Sequential(nn.Linear(channels, part_dim, bias=False), nn.BatchNorm1d(part_dim)) for _ in range(parts))
        self.dropout = nn.Dropout(dropout)
        self.classifiers = nn.ModuleList(nn.Linear(part_dim, num_classes) for _ in range(parts))
        for cls in self.classifiers:
            nn.init.normal_(cls.weight, std=0.001)
            nn.init.zeros_(cls.bias)
        self.parts, self.variant, self.rpp = parts, variant, rpp
        self.embedding_dim = parts * part_dim
        self.input_size = (int(input_size[0]), int(input_size[1]))

    def forward(self, x: torch.Tensor) -> ReIDOutput:
        pooled = self.pool(self.backbone(x))                                    # (B, C, parts)
        feats = [reduce(pooled[:, :, i]) for i, reduce in enumerate(self.reduce)]  # parts x (B, part_dim)
        emb = torch.cat(feats, dim=1)
        if not self.training:
            return ReIDOutput(embedding=emb)
        logits = [cls(self.dropout(f)) for cls, f in zip(self.classifiers, feats)]
        return ReIDOutput(embedding=emb, features=feats, logits=logits,
                          aux={"part_features": torch.stack(feats, dim=1)})


@register_model(embedding_dim=1536)
def convnext_ap(num_classes: int, pretrained: bool | str | Path | None = None, **kwargs) -> ConvNeXtAP:
    """ConvNeXt-AP; kwargs: variant ('base'), parts (6), part_dim (256), rpp (False), dropout (0.5),
    drop_path_rate (0.1), input_size (registered default)."""
    return ConvNeXtAP(num_classes, pretrained, **kwargs)
