"""``mfa_r50``: Multi-local Feature and Attention fused network (MFA, 2024).

Decisions (mfa-cpaa-local-branches-gla.txt; its CPAA and GLA formulas were lost in extraction):
- ResNet50, last stride 1 (16x8 map at 256x128), ImageNet-pretrained.
- CPAA after layer2, layer3 and layer4 (512, 1024, 2048 channels; Table 2 "adding the module
  [to] the feature map outputted after Layer3"): channel affinity (C x C softmax) then point
  affinity (HW x HW softmax from 1x1 query/key convs to C/8), each ``x + gamma * attn``, gamma
  initialised 0. The value is the map itself (no C x C value conv), see layers/cpaa.py.
- 4 local branches on the full backbone map, each a 1x1 conv 2048 -> 256 + BN + ReLU,
  GeM-pooled (learned p, initial 3) to a 256-d "global embedding" (triplet/center feature),
  then BNNeck -> linear ID classifier (label-smoothed CE). Test embedding = the 4 BN
  features concatenated (1024-d). With 751 classes this is ~27.8 M parameters (paper 28.3 M).
- Horizontal stripes for GLA: the map is split into 4 stripes (top to bottom) and
  average-pooled. Because each branch starts with a pointwise conv, stripe i is read in branch
  i's own 256-d space: ``GAP(stripe_i(branch_i(F)))``, i.e. backbone stripe i passed through
  branch i's 1x1 conv/BN/ReLU. GLA (in losses.py) pulls ``branch_features[:, i]`` (the GeM
  embedding of branch i) towards ``stripe_features[:, i]``, so branch i attends to region i.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backbones import resnet50
from ..layers import CPAA, BNNeck, GeM
from ..output import ReIDOutput
from ..registry import DEFAULT_INPUT_SIZE, register_model


class MFAResNet50(nn.Module):
    """forward: x (B, 3, H, W) -> ReIDOutput; embedding (B, branches*branch_dim); train: features
    [branches x (B, branch_dim)] (GeM), logits [branches x (B, N)], aux {"branch_features",
    "stripe_features"} both (B, branches, branch_dim) for the GLA loss."""

    def __init__(self, num_classes: int, pretrained: bool | str | Path | None = None, branches: int = 4,
                 branch_dim: int = 256, last_stride: int = 1, input_size: tuple[int, int] = DEFAULT_INPUT_SIZE) -> None:
        super().__init__()
        self.backbone = resnet50(pretrained, last_stride=last_stride)
        for layer, channels in ((self.backbone.layer2, 512), (self.backbone.layer3, 1024),
                                (self.backbone.layer4, 2048)):
            layer.append(CPAA(channels))
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(2048, branch_dim, 1, bias=False), nn.BatchNorm2d(branch_dim), nn.ReLU(inplace=True))
            for _ in range(branches))
        self.gems = nn.ModuleList(GeM() for _ in range(branches))
        self.necks = nn.ModuleList(BNNeck(branch_dim) for _ in range(branches))
        self.classifiers = nn.ModuleList(nn.Linear(branch_dim, num_classes, bias=False) for _ in range(branches))
        for cls in self.classifiers:
            nn.init.normal_(cls.weight, std=0.001)
        self.num_branches = branches
        self.embedding_dim = branches * branch_dim
        self.input_size = (int(input_size[0]), int(input_size[1]))

    def forward(self, x: torch.Tensor) -> ReIDOutput:
        fmap = self.backbone(x)
        maps = [branch(fmap) for branch in self.branches]                  # branches x (B, d, H, W)
        feats = [gem(m) for gem, m in zip(self.gems, maps)]                # branches x (B, d)
        bn = [neck(f) for neck, f in zip(self.necks, feats)]
        emb = torch.cat(bn, dim=1)
        if not self.training:
            return ReIDOutput(embedding=emb)
        n = self.num_branches
        stripes = [F.adaptive_avg_pool2d(m, (n, 1))[:, :, i, 0] for i, m in enumerate(maps)]  # stripe i of map i
        logits = [cls(b) for cls, b in zip(self.classifiers, bn)]
        aux = {"branch_features": torch.stack(feats, dim=1), "stripe_features": torch.stack(stripes, dim=1)}
        return ReIDOutput(embedding=emb, features=feats, logits=logits, aux=aux)


@register_model(embedding_dim=1024)
def mfa_r50(num_classes: int, pretrained: bool | str | Path | None = None, **kwargs) -> MFAResNet50:
    """MFA; kwargs: branches (4), branch_dim (256), last_stride (1), input_size (registered default)."""
    return MFAResNet50(num_classes, pretrained, **kwargs)
