"""``cbam_r50``: ResNet50 + CBAM with a joint CE/triplet loss and a circle-loss classifier.

Li and Wang, IASC 2021 (cbam-joint-loss-resnet50.txt). Decisions on the paper's open points:
- CBAM (channel MLP reduction 16 with avg+max pooling, then 7x7 spatial conv on channel
  avg+max, as in Woo et al.) sits on the residual branch of *every* bottleneck of layer1..4
  ("added to the residual block by sequential combination", fig. 3), before the identity add.
- "Classifier based on circle loss" = a CircleSoftmax head (fast-reid's any_softmax style):
  the model returns the raw cosines of the BNNeck feature against L2-normalised class
  weights in ``logits``; reid_models.losses.CircleSoftmaxLoss adds margin/gamma. CE (through
  that head) and batch-hard triplet on the pooled feature form the joint loss.
- The neck is BoT's (GAP + BNNeck); the paper uses a BoT/fast-reid style global feature and
  does not state the last stride, so it is an argument defaulting to 1 as in the baseline.
"""
from __future__ import annotations

from pathlib import Path

from ..backbones import resnet50, wrap_bottlenecks
from ..layers import CBAM
from ..registry import DEFAULT_INPUT_SIZE, register_model
from .bot_r50 import GlobalReIDNet


@register_model(embedding_dim=2048)
def cbam_r50(num_classes: int, pretrained: bool | str | Path | None = None, last_stride: int = 1,
             reduction: int = 16, input_size: tuple[int, int] = DEFAULT_INPUT_SIZE) -> GlobalReIDNet:
    """ResNet50 + CBAM in every block, GAP, BNNeck, cosine (circle-softmax) classifier; embedding 2048."""
    trunk = wrap_bottlenecks(resnet50(pretrained, last_stride=last_stride),
                             attention=lambda c: CBAM(c, reduction=reduction))
    return GlobalReIDNet(trunk, num_classes, cosine=True, input_size=input_size)
