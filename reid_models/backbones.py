"""torchvision trunks (ResNet50, ConvNeXt tiny/small/base) with ImageNet weights from a file or a download.

``pretrained`` everywhere: None/False = random initialisation; a path = a torchvision ImageNet
state dict saved on disk (e.g. ``resnet50-0676ba61.pth``); True = torchvision's normal
download into the torch hub cache, which fails within seconds with a one-line error when the
machine is offline. Weights are loaded into the plain torchvision trunk *before* any block is
wrapped or extended, and the wrappers keep torchvision's parameter names, so the same files load
into every variant (DyReLU, NAM, CBAM, CPAA, SimAM, self-attention).
"""
from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
from torchvision import models as tvm
from torchvision.models.convnext import CNBlock
from torchvision.models.resnet import Bottleneck

DOWNLOAD_TIMEOUT_S = 15.0

BlockFactory = Callable[[int], nn.Module]  # channels -> (B,C,H,W)->(B,C,H,W) module

_CONVNEXT = {
    "tiny": (tvm.convnext_tiny, tvm.ConvNeXt_Tiny_Weights.IMAGENET1K_V1, 768),
    "small": (tvm.convnext_small, tvm.ConvNeXt_Small_Weights.IMAGENET1K_V1, 768),
    "base": (tvm.convnext_base, tvm.ConvNeXt_Base_Weights.IMAGENET1K_V1, 1024),
}


# ----------------------------------------------------------------------------- weights
def _download(weights: tvm.WeightsEnum, arch: str) -> dict[str, torch.Tensor]:
    """torchvision's own download (hub cache first) under a short socket timeout."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except (OSError, RuntimeError) as exc:  # URLError, timeouts, DNS failures, bad hash
        name = weights.url.rsplit("/", 1)[-1]
        raise RuntimeError(f"cannot download ImageNet weights for {arch} from {weights.url} "
                           f"({type(exc).__name__}: {exc}); on a machine without internet download "
                           f"that file elsewhere and pass pretrained=/path/to/{name}") from None
    finally:
        socket.setdefaulttimeout(old)


def _read_file(path: Path, arch: str, weights: tvm.WeightsEnum) -> dict[str, torch.Tensor]:
    name = weights.url.rsplit("/", 1)[-1]
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path} (expected torchvision's {arch} "
                                f"ImageNet state dict, e.g. {name} from {weights.url})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"cannot read pretrained weights {path}: {type(exc).__name__}: {exc}") from None
    for key in ("state_dict", "model"):  # tolerate common wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of {arch} weights")
    return state


def load_imagenet_weights(module: nn.Module, pretrained: bool | str | Path | None, *, arch: str,
                          weights: tvm.WeightsEnum, ignore_prefixes: tuple[str, ...]) -> None:
    """Load a torchvision ImageNet state dict into ``module`` (same parameter names, head dropped).

    Raises FileNotFoundError (missing file), ValueError (unreadable file, wrong keys or shapes)
    or RuntimeError (download impossible), each with a one-line message saying what to pass.
    """
    if pretrained is None or pretrained is False:
        return
    if pretrained is True:
        state, source = _download(weights, arch), weights.url
    elif isinstance(pretrained, (str, Path)):
        state, source = _read_file(Path(pretrained), arch, weights), str(pretrained)
    else:
        raise TypeError(f"pretrained must be None, False, True or a file path, not {type(pretrained).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = [f"{len(lst)} {what} (e.g. {lst[0]})" for lst, what in
                 ((missing, "missing keys"), (unexpected, "unexpected keys"), (shapes, "shape mismatches")) if lst]
        raise ValueError(f"{source} is not a torchvision {arch} ImageNet state dict: {', '.join(parts)}; "
                         f"expected the file from {weights.url}")
    module.load_state_dict(state, strict=False)


# ----------------------------------------------------------------------------- ResNet50
class ResNetTrunk(nn.Module):
    """torchvision ResNet without avgpool/fc, keeping torchvision's module names.

    Shapes: x (B, 3, H, W) -> (B, 2048, H/32, W/32), or H/16, W/16 with last_stride=1.
    """

    out_channels = 2048

    def __init__(self, net: tvm.ResNet) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def resnet50(pretrained: bool | str | Path | None = None, last_stride: int = 2) -> ResNetTrunk:
    """ResNet50 trunk; ``last_stride=1`` keeps layer4 at 1/16 resolution (16x8 at 256x128)."""
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
    trunk = ResNetTrunk(tvm.resnet50(weights=None))
    load_imagenet_weights(trunk, pretrained, arch="resnet50", weights=tvm.ResNet50_Weights.IMAGENET1K_V1,
                          ignore_prefixes=("fc.",))
    if last_stride == 1:
        first = trunk.layer4[0]
        first.conv2.stride = (1, 1)
        first.downsample[0].stride = (1, 1)
    return trunk


class AttentionBottleneck(nn.Module):
    """A torchvision Bottleneck rebuilt with its own activations and an attention block.

    ``r = bn3(conv3(act2(bn2(conv2(act1(bn1(conv1(x))))))))``; with an attention block A the
    residual branch becomes ``A(r)`` (``fuse=False``, CBAM placement) or ``r + A(r)``
    (``fuse=True``, NAM-ResNet fig. 4); output ``act3(r' + shortcut(x))``. The conv/bn/downsample
    modules are the original ones under the original names, so torchvision weights still load.
    """

    def __init__(self, block: Bottleneck, attention: nn.Module | None = None, fuse: bool = False,
                 activation: BlockFactory | None = None) -> None:
        super().__init__()
        self.conv1, self.bn1, self.conv2, self.bn2 = block.conv1, block.bn1, block.conv2, block.bn2
        self.conv3, self.bn3, self.downsample = block.conv3, block.bn3, block.downsample
        act = activation or (lambda _c: nn.ReLU(inplace=True))
        width, out = block.bn1.num_features, block.bn3.num_features
        self.act1, self.act2, self.act3 = act(width), act(width), act(out)
        self.attention, self.fuse = attention, fuse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.attention is not None:
            out = out + self.attention(out) if self.fuse else self.attention(out)
        identity = x if self.downsample is None else self.downsample(x)
        return self.act3(out + identity)


def wrap_bottlenecks(trunk: ResNetTrunk, attention: BlockFactory | None = None, *, last_only: bool = False,
                     fuse: bool = False, activation: BlockFactory | None = None) -> ResNetTrunk:
    """Rebuild every Bottleneck of layer1..4 in place as an AttentionBottleneck.

    attention(channels) is inserted on the residual branch of every block, or of the last block
    of each layer with ``last_only``; activation(channels) replaces each ReLU (the stem's too).
    """
    for layer in (trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4):
        for i, block in enumerate(layer):
            use = attention is not None and (not last_only or i == len(layer) - 1)
            attn = attention(block.bn3.num_features) if use else None
            layer[i] = AttentionBottleneck(block, attn, fuse=fuse, activation=activation)
    if activation is not None:
        trunk.relu = activation(trunk.bn1.num_features)
    return trunk


# ----------------------------------------------------------------------------- ConvNeXt
class ConvNeXtTrunk(nn.Module):
    """torchvision ConvNeXt ``features`` (stem + 4 stages) without the pooling/norm/linear head.

    Shapes: x (B, 3, H, W) -> (B, C, H/32, W/32), C = 768 (tiny, small) or 1024 (base).
    """

    def __init__(self, net: tvm.ConvNeXt, out_channels: int) -> None:
        super().__init__()
        self.features = net.features
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def blocks(self) -> list[CNBlock]:
        return [m for m in self.features.modules() if isinstance(m, CNBlock)]


def convnext(variant: str = "base", pretrained: bool | str | Path | None = None,
             drop_path_rate: float = 0.1) -> ConvNeXtTrunk:
    """ConvNeXt trunk of the given size; ``drop_path_rate`` is the last block's stochastic-depth rate."""
    if variant not in _CONVNEXT:
        raise ValueError(f"unknown ConvNeXt variant {variant!r}; choose one of {', '.join(_CONVNEXT)}")
    builder, weights, channels = _CONVNEXT[variant]
    trunk = ConvNeXtTrunk(builder(weights=None, stochastic_depth_prob=drop_path_rate), channels)
    load_imagenet_weights(trunk, pretrained, arch=f"convnext_{variant}", weights=weights,
                          ignore_prefixes=("classifier.",))
    return trunk


def add_to_convnext_blocks(trunk: ConvNeXtTrunk, attention: BlockFactory) -> ConvNeXtTrunk:
    """Append attention(dim) to the residual branch of every ConvNeXt block, before layer scale.

    The branch is a Sequential, so appending keeps every torchvision parameter name.
    """
    for block in trunk.blocks():
        block.block.append(attention(block.block[0].in_channels))
    return trunk
