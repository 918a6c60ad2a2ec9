"""Cosine classifier for margin-based softmax losses (ArcFace, CircleSoftmax)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class CosineClassifier(nn.Module):
    """Cosines between L2-normalised features and L2-normalised class weights.

    The losses (reid_models.losses ArcFaceLoss / CircleSoftmaxLoss) add the margin and the
    scale; the model only returns the raw cosines, in [-1, 1].
    Shapes: x (B, D) -> (B, num_classes).
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.in_features, self.num_classes = in_features, num_classes
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.normal_(self.weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}"
