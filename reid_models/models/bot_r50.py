"""``bot_r50``: the "bag of tricks" strong baseline (Luo et al. CVPRW 2019) every paper compares with.

ResNet50 with last stride 1 -> global average pooling -> BNNeck -> linear classifier without
bias. Triplet (and center) losses act on the pooled feature, label-smoothed CE on the BNNeck
output, which is also the test-time embedding (BoT's "neck_feat=after").
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..backbones import ResNetTrunk, resnet50
from ..layers import BNNeck, CosineClassifier
from ..output import ReIDOutput
from ..registry import DEFAULT_INPUT_SIZE, register_model


class GlobalReIDNet(nn.Module):
    """Backbone -> GAP -> BNNeck -> classifier (linear, or cosine for ArcFace/circle losses).

    forward: x (B, 3, H, W) -> ReIDOutput; eval: embedding (B, 2048) = BNNeck feature;
    train: also features [pooled (B, 2048)], logits [(B, num_classes)].
    """

    def __init__(self, backbone: nn.Module, num_classes: int, *, feat_dim: int = 2048, cosine: bool = False,
                 input_size: tuple[int, int] = DEFAULT_INPUT_SIZE) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = BNNeck(feat_dim)
        if cosine:
            self.classifier: nn.Module = CosineClassifier(feat_dim, num_classes)
        else:
            self.classifier = nn.Linear(feat_dim, num_classes, bias=False)
            nn.init.normal_(self.classifier.weight, std=0.001)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.embedding_dim = feat_dim

    def forward(self, x: torch.Tensor) -> ReIDOutput:
        feat = self.backbone(x).mean(dim=(2, 3))
        emb = self.neck(feat)
        if not self.training:
            return ReIDOutput(embedding=emb)
        return ReIDOutput(embedding=emb, features=[feat], logits=[self.classifier(emb)])


@register_model(embedding_dim=2048)
def bot_r50(num_classes: int, pretrained: bool | str | Path | None = None, last_stride: int = 1,
            input_size: tuple[int, int] = DEFAULT_INPUT_SIZE) -> GlobalReIDNet:
    """BoT baseline; ``pretrained``: None, a torchvision resnet50 ImageNet file, or True (download)."""
    trunk: ResNetTrunk = resnet50(pretrained, last_stride=last_stride)
    return GlobalReIDNet(trunk, num_classes, input_size=input_size)
