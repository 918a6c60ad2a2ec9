"""OSNet family: ``osnet_x1_0``, ``osnet_x0_75``, ``osnet_x0_5``, ``osnet_x0_25``, ``osnet_ibn_x1_0`` and
``osnet_ain_x1_0`` (+ ``osnet_ain_x0_75``, ``osnet_ain_x0_5``, ``osnet_ain_x0_25``).

Structure (Zhou et al., "Omni-Scale Feature Learning for Person Re-Identification", ICCV 2019, table 1):
stem 7x7/2 conv (64 x width channels) + 3x3/2 max pool; three stages of two omni-scale bottlenecks
(256, 384, 512 x width channels), the first two stages followed by a 1x1 conv + 2x2 average-pool
transition; a 1x1 conv, global average pooling, and a 512-d fully connected layer (+ BN + ReLU) whose
output is the test-time embedding; a linear ID classifier on top.
- IBN (the paper's OSNet-IBN): instance norm in the stem instead of BN and on the output of both
  stage-1 blocks.
- AIN (Zhou et al., "Learning Generalisable Omni-Scale Representations for Person Re-Identification",
  TPAMI 2021): instance norm in the stem and inside the residual branch of the blocks the architecture
  search placed it in (both stage-1 blocks, the second stage-2 block, the first stage-3 block).

Parameter and buffer names follow the published OSNet checkpoints (see ``reid_models.layers.omni_scale``),
so those state dicts load unchanged; ``python -m reid_models.convert --from torchreid`` writes them as
``reid_models`` checkpoints.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..layers.omni_scale import ConvUnit, OmniScaleBlock
from ..output import ReIDOutput
from ..registry import register_model

BASE_CHANNELS = (64, 256, 384, 512)  # stem, stage 1, stage 2, stage 3 at width 1.0
EMBEDDING_DIM = 512

#: name -> (width multiplier, variant); variant None (plain), "ibn" or "ain".
OSNET_VARIANTS: dict[str, tuple[float, str | None]] = {
    "osnet_x1_0": (1.0, None), "osnet_x0_75": (0.75, None), "osnet_x0_5": (0.5, None), "osnet_x0_25": (0.25, None),
    "osnet_ibn_x1_0": (1.0, "ibn"),
    "osnet_ain_x1_0": (1.0, "ain"), "osnet_ain_x0_75": (0.75, "ain"), "osnet_ain_x0_5": (0.5, "ain"),
    "osnet_ain_x0_25": (0.25, "ain"),
}

# Which blocks of each stage carry instance norm, per variant: stage -> (block 0, block 1).
_INSTANCE_NORM = {
    None: ((None, None), (None, None), (None, None)),
    "ibn": (("output", "output"), (None, None), (None, None)),
    "ain": (("residual", "residual"), (None, "residual"), ("residual", None)),
}


def _transition(channels: int) -> nn.Sequential:
    """1x1 conv + 2x2 average pooling: (B, C, H, W) -> (B, C, H/2, W/2)."""
    return nn.Sequential(ConvUnit(channels, channels), nn.AvgPool2d(2, stride=2))


class OSNet(nn.Module):
    """forward: x (B, 3, H, W) -> ReIDOutput; eval: embedding (B, 512) = fc output;
    train: also features [embedding], logits [(B, num_classes)]. Feature map: (B, 512 x width, H/16, W/16).

    The AIN variant keeps its transitions as ``pool2``/``pool3``, the others inside ``conv2``/``conv3``
    (the layouts of the two published checkpoint families).
    """

    def __init__(self, num_classes: int, width: float = 1.0, variant: str | None = None, *,
                 embedding_dim: int = EMBEDDING_DIM, input_size: tuple[int, int] = (256, 128)) -> None:
        super().__init__()
        if variant not in _INSTANCE_NORM:
            raise ValueError(f"variant must be None, 'ibn' or 'ain', got {variant!r}")
        c0, c1, c2, c3 = (int(round(c * width)) for c in BASE_CHANNELS)
        ain = variant == "ain"
        norms = _INSTANCE_NORM[variant]
        self.conv1 = ConvUnit(3, c0, 7, stride=2, padding=3, norm="bn" if variant is None else "in")
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages = []
        for (cin, cout), stage_norms in zip(((c0, c1), (c1, c2), (c2, c3)), norms):
            stages.append([OmniScaleBlock(cin, cout, instance_norm=stage_norms[0], lettered_streams=not ain),
                           OmniScaleBlock(cout, cout, instance_norm=stage_norms[1], lettered_streams=not ain)])
        if ain:
            self.conv2, self.pool2 = nn.Sequential(*stages[0]), _transition(c1)
            self.conv3, self.pool3 = nn.Sequential(*stages[1]), _transition(c2)
        else:
            self.conv2 = nn.Sequential(*stages[0], _transition(c1))
            self.conv3 = nn.Sequential(*stages[1], _transition(c2))
        self.conv4 = nn.Sequential(*stages[2])
        self.conv5 = ConvUnit(c3, c3)
        self.fc = nn.Sequential(nn.Linear(c3, embedding_dim), nn.BatchNorm1d(embedding_dim), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(embedding_dim, num_classes)
        self.width, self.variant = width, variant
        self.embedding_dim = embedding_dim
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.InstanceNorm2d)) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 512 x width, H/16, W/16), after conv5."""
        x = self.maxpool(self.conv1(x))
        x = self.conv2(x)
        if self.variant == "ain":
            x = self.pool2(x)
        x = self.conv3(x)
        if self.variant == "ain":
            x = self.pool3(x)
        return self.conv5(self.conv4(x))

    def forward(self, x: torch.Tensor) -> ReIDOutput:
        emb = self.fc(self.feature_map(x).mean(dim=(2, 3)))
        if not self.training:
            return ReIDOutput(embedding=emb)
        return ReIDOutput(embedding=emb, features=[emb], logits=[self.classifier(emb)])


def _build(name: str, num_classes: int, pretrained: bool | str | Path | None,
           input_size: tuple[int, int]) -> OSNet:
    width, variant = OSNET_VARIANTS[name]
    model = OSNet(num_classes, width, variant, input_size=input_size)
    if pretrained is True:
        raise ValueError(f"{name}: pretrained=True has no download; pass the path of an {name} state dict "
                         "(e.g. torchreid's ImageNet file) or convert one with python -m reid_models.convert")
    if pretrained:
        from ..convert_weights import load_backbone_weights

        load_backbone_weights(model, pretrained, arch=name)
    return model


@register_model(embedding_dim=EMBEDDING_DIM)
def osnet_x1_0(num_classes: int, pretrained: str | Path | None = None,
               input_size: tuple[int, int] = (256, 128)) -> OSNet:
    """OSNet x1.0 (2.2 M parameters without the classifier); ``pretrained``: an OSNet state dict file."""
    return _build("osnet_x1_0", num_classes, pretrained, input_size)


@register_model(embedding_dim=EMBEDDING_DIM)
def osnet_x0_75(num_classes: int, pretrained: str | Path | None = None,
                input_size: tuple[int, int] = (256, 128)) -> OSNet:
    """OSNet x0.75."""
    return _build("osnet_x0_75", num_classes, pretrained, input_size)


@register_model(embedding_dim=EMBEDDING_DIM)
def osnet_x0_5(num_classes: int, pretrained: str | Path | None = None,
               input_size: tuple[int, int] = (256, 128)) -> OSNet:
    """OSNet x0.5."""
    return _build("osnet_x0_5", num_classes, pretrained, input_size)


@register_model(embedding_dim=EMBEDDING_DIM)
def osnet_x0_25(num_classes: int, pretrained: str | Path | None = None,
                input_size: tuple[int, int] = (256, 128)) -> OSNet:
    """OSNet x0.25."""
    return _build("osnet_x0_25", num_classes, pretrained, input_size)


@register_model(embedding_dim=EMBEDDING_DIM)
def osnet_ibn_x1_0(num_classes: int, pretrained: str | Path | None = None,
                   input_size: tuple[int, int] = (256, 128)) -> OSNet:
    """OSNet-IBN x1.0 (instance norm in the stem and after the stage-1 blocks)."""
    return _build("osnet_ibn_x1_0", num_classes, pretrained, input_size)


@register_model(embedding_dim=EMBEDDING_DIM)
def osnet_ain_x1_0(num_classes: int, pretrained: str | Path | None = None,
                   input_size: tuple[int, int] = (256, 128)) -> OSNet:
    """OSNet-AIN x1.0 (instance norm searched into the residual branches)."""
    return _build("osnet_ain_x1_0", num_classes, pretrained, input_size)


@register_model(embedding_dim=EMBEDDING_DIM)
def osnet_ain_x0_75(num_classes: int, pretrained: str | Path | None = None,
                    input_size: tuple[int, int] = (256, 128)) -> OSNet:
    """OSNet-AIN x0.75."""
    return _build("osnet_ain_x0_75", num_classes, pretrained, input_size)


@register_model(embedding_dim=EMBEDDING_DIM)
def osnet_ain_x0_5(num_classes: int, pretrained: str | Path | None = None,
                   input_size: tuple[int, int] = (256, 128)) -> OSNet:
    """OSNet-AIN x0.5."""
    return _build("osnet_ain_x0_5", num_classes, pretrained, input_size)


@register_model(embedding_dim=EMBEDDING_DIM)
def osnet_ain_x0_25(num_classes: int, pretrained: str | Path | None = None,
                    input_size: tuple[int, int] = (256, 128)) -> OSNet:
    """OSNet-AIN x0.25."""
    return _build("osnet_ain_x0_25", num_classes, pretrained, input_size)
