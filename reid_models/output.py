"""The one output type every re-ID model returns, in train and in eval mode."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ReIDOutput:
    """What a re-ID network's forward returns, whatever the mode or loss.

    embedding: (B, D) the retrieval feature (what is compared at test time). In eval mode it
        is the only field that must be filled.
    features: list of (B, d_i) features the metric losses (triplet, center, ...) act on,
        one per global/local branch; empty in eval mode.
    logits: list of (B, num_classes) classifier outputs, one per classifier. For cosine
        classifiers (ArcFace, circle softmax) these are the raw cosines in [-1, 1]; the loss
        applies margin and scale. Empty in eval mode.
    aux: model-specific extra tensors a loss may need (e.g. MFA's stripe features for GLA).
    """

    embedding: torch.Tensor
    features: list[torch.Tensor] = field(default_factory=list)
    logits: list[torch.Tensor] = field(default_factory=list)
    aux: dict[str, torch.Tensor] = field(default_factory=dict)
