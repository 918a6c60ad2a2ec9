"""``resnet50``: the plain softmax ResNet50 re-ID baseline (global average pooling, optional
fc + BN + ReLU embedding layer, linear ID classifier with bias), without BoT's BNNeck.

With the defaults (last stride 2, no fc layer) it is torchreid's ``resnet50``; with
``last_stride=1, fc_dim=512`` torchreid's ``resnet50_fc512``. The test-time embedding is the pooled
feature (2048-d), or the fc output when ``fc_dim`` is set. Checkpoints of both convert with
``python -m reid_models.convert --from torchreid``.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..backbones import ResNetTrunk
from ..backbones import resnet50 as resnet50_trunk
from ..output import ReIDOutput
from ..registry import DEFAULT_INPUT_SIZE, register_model

#: Per-model defaults (for the registry's per-model defaults).

class PooledReIDNet(nn.Module):
    """Backbone -> GAP -> [fc] -> embedding -> linear classifier (with bias).

    forward: x (B, 3, H, W) -> ReIDOutput; eval: embedding (B, D), D = fc_dim or the trunk's channels;
    train: also features [embedding], logits [(B, num_classes)].
    """

    def __init__(self, backbone: ResNetTrunk, num_classes: int, *, fc_dim: int | None = None,
                 input_size: tuple[int, int] = (256, 128)) -> None:
        super().__init__()
        self.backbone = backbone
        channels = backbone.out_channels
        if fc_dim is not None and fc_dim < 1:
            raise ValueError(f"fc_dim must be None or >= 1, got {fc_dim}")
        self.fc: nn.Module | None = None
        if fc_dim is not None:
            self.fc = nn.Sequential(nn.Linear(channels, fc_dim), nn.BatchNorm1d(fc_dim), nn.ReLU(inplace=True))
        self.embedding_dim = fc_dim or channels
        self.classifier = nn.Linear(self.embedding_dim, num_classes)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)
        self.input_size = (int(input_size[0]), int(input_size[1]))

    def forward(self, x: torch.Tensor) -> ReIDOutput:
        emb = self.backbone(x).mean(dim=(2, 3))
        if self.fc is not None:
            emb = self.fc(emb)
        if not self.training:
            return ReIDOutput(embedding=emb)
        return ReIDOutput(embedding=emb, features=[emb], logits=[self.classifier(emb)])


@register_model(embedding_dim=2048)
def resnet50(num_classes: int, pretrained: bool | str | Path | None = None, last_stride: int = 2,
             fc_dim: int | None = None, input_size: tuple[int, int] = DEFAULT_INPUT_SIZE) -> PooledReIDNet:
    """Plain ResNet50; ``pretrained``: None, a torchvision resnet50 ImageNet file, or True (download)."""
    return PooledReIDNet(resnet50_trunk(pretrained, last_stride=last_stride), num_classes, fc_dim=fc_dim,
                         input_size=input_size)
