"""``sa_r50``: self-attention guided ResNet50 (Li, Jiang and Hwang 2019, self-attention-resnet50.txt).

- ResNet50 conv layers with ImageNet weights, last stride 2 (the paper's 8x4 grid at 256x128).
- One SAGAN-style self-attention block on the final 2048-channel map: f, g = 1x1 convs to
  2048/8 followed by ReLU (eq. 3), h = 1x1 conv 2048 -> 2048, softmax over positions (eq. 4),
  ``y = alpha * o + x`` with alpha initialised to 0 (eq. 6).
- "Flattened into feature vectors ... a 2048-dimensional vector" (sec. 4): read as global
  average pooling of the attended map to 2048-d; that vector is the triplet feature, the input
  of the FC classifier (label-smoothed CE), and the test embedding. The paper has no BNNeck.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..backbones import resnet50
from ..layers import SelfAttention
from ..output import ReIDOutput
from ..registry import DEFAULT_INPUT_SIZE, register_model


class SAResNet50(nn.Module):
    """forward: x (B, 3, H, W) -> ReIDOutput; embedding (B, 2048); train: features [(B, 2048)], logits [(B, N)]."""

    def __init__(self, num_classes: int, pretrained: bool | str | Path | None = None, last_stride: int = 2,
                 reduction: int = 8, input_size: tuple[int, int] = DEFAULT_INPUT_SIZE) -> None:
        super().__init__()
        self.backbone = resnet50(pretrained, last_stride=last_stride)
        self.backbone.layer4.append(SelfAttention(2048, reduction=reduction))
        self.classifier = nn.Linear(2048, num_classes)
        nn.init.normal_(self.classifier.weight, std=0.001)
        nn.init.zeros_(self.classifier.bias)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.embedding_dim = 2048

    def forward(self, x: torch.Tensor) -> ReIDOutput:
        feat = self.backbone(x).mean(dim=(2, 3))
        if not self.training:
            return ReIDOutput(embedding=feat)
        return ReIDOutput(embedding=feat, features=[feat], logits=[self.classifier(feat)])


@register_model(embedding_dim=2048)
def sa_r50(num_classes: int, pretrained: bool | str | Path | None = None, **kwargs) -> SAResNet50:
    """Self-attention ResNet50; kwargs: last_stride (2), reduction (8), input_size (registered default)."""
    return SAResNet50(num_classes, pretrained, **kwargs)
