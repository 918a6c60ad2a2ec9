"""``nam_dyrelu_r50``: NAM attention + Dynamic ReLU + ArcFace (Bi et al., Entropy 2024).

Decisions (nam-dyrelu-arcface-resnet50.txt):
- Backbone ResNet50 with last stride 2 (sec. 4.2: "the final convolution stride was set to 2").
- NAM (BN-gamma channel weights ``|g_i|/sum|g_j|``, sigmoid, times the input) on the residual
  branch of the *last* bottleneck of each of layer1..layer4 (sec. 3.2, fig. 2); following
  fig. 4 the attended features are *added* to the branch output, ``r + NAM(r)``, before the
  identity shortcut.
- Every ReLU of the backbone (stem and the three per bottleneck) becomes DyReLU-B
  (spatial-shared, channel-wise; K=2, SE-style hyper-function with reduction 4, ``2 sigmoid - 1``).
  This adds ~28 M parameters (FLOPs barely change); ``dyrelu_reduction`` trades that off.
- Head (sec. 3.1, fig. 1): GAP and FC removed, adaptive max pooling to 2048x4x1, flattened to
  8192-d (the triplet feature) -> BN (BNNeck, frozen bias) -> FC without bias used as the
  ArcFace classifier: the model returns raw cosines; reid_models.losses.ArcFaceLoss applies
  m=0.4, s=135. The test embedding is the BN output (8192-d).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..backbones import resnet50, wrap_bottlenecks
from ..layers import NAM, BNNeck, CosineClassifier, DynamicReLUB
from ..output import ReIDOutput
from ..registry import DEFAULT_INPUT_SIZE, register_model


class NAMDyReLUResNet50(nn.Module):
    """forward: x (B, 3, H, W) -> ReIDOutput; embedding (B, 8192); train: features [(B, 8192)],
    logits [cosines (B, num_classes)]."""

    def __init__(self, num_classes: int, pretrained: bool | str | Path | None = None, last_stride: int = 2,
                 dyrelu_reduction: int = 4, input_size: tuple[int, int] = DEFAULT_INPUT_SIZE) -> None:
        super().__init__()
        self.backbone = wrap_bottlenecks(
            resnet50(pretrained, last_stride=last_stride), attention=NAM, last_only=True, fuse=True,
            activation=lambda c: DynamicReLUB(c, reduction=dyrelu_reduction))
        self.pool = nn.AdaptiveMaxPool2d((4, 1))
        self.embedding_dim = 2048 * 4
        self.neck = BNNeck(self.embedding_dim)
        self.classifier = CosineClassifier(self.embedding_dim, num_classes)
        self.input_size = (int(input_size[0]), int(input_size[1]))

    def forward(self, x: torch.Tensor) -> ReIDOutput:
        feat = self.pool(self.backbone(x)).flatten(1)
        emb = self.neck(feat)
        if not self.training:
            return ReIDOutput(embedding=emb)
        return ReIDOutput(embedding=emb, features=[feat], logits=[self.classifier(emb)])


@register_model(embedding_dim=8192)
def nam_dyrelu_r50(num_classes: int, pretrained: bool | str | Path | None = None, **kwargs) -> NAMDyReLUResNet50:
    """NAM + DyReLU ResNet50 with an ArcFace (cosine) head; kwargs: last_stride, dyrelu_reduction, input_size."""
    return NAMDyReLUResNet50(num_classes, pretrained, **kwargs)
