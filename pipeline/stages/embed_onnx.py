"""The embedder as an ONNX graph run by onnxruntime, for the photo query: importing torch and building the
network cost a CLI query most of its time (about 3 of 4 s); onnxruntime loads the exported graph in
~0.6 s and gives nearly the same vectors (default embedder, streams/suspect.jpg: cosine 0.999997 to
PyTorch's vector, max abs element difference 1.2e-3, from the colour histogram's square roots of
near-empty bins; query scores within 2e-4, same ranking).

:func:`export_onnx` (needs torch) writes ``<folder>/<embedder_id>.onnx`` from a built
:class:`~pipeline.stages.embed.Embedder` after checking onnxruntime against PyTorch on real-sized input;
:meth:`OnnxEmbedder.load` finds it by the embedder id (which includes the weights' sha256), so a file
made for other weights is never used. This module imports neither torch nor the store.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

PARITY_TOLERANCE = 5e-3  # max abs difference to PyTorch an exported graph may have, per vector element
PARITY_COSINE = 0.99999  # least cosine between its vector and PyTorch's for the same crop


def preprocess_crops(crops: Sequence[np.ndarray], input_size: tuple[int, int]) -> np.ndarray:
    """BGR crops of any size -> (N, H, W, 3) uint8 RGB at ``input_size`` (H, W) (bilinear)."""
    h, w = input_size
    out = np.empty((len(crops), h, w, 3), np.uint8)
    for i, crop in enumerate(crops):
        if crop is None or crop.ndim != 3 or crop.shape[0] < 1 or crop.shape[1] < 1:
            shape = None if crop is None else crop.shape
            raise ValueError(f"crop {i} is empty or not an (H, W, 3) image: shape {shape}")
        out[i] = cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)[..., ::-1]
    return out


def _safe(embedder_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in embedder_id)


def onnx_path(folder: str | Path, embedder_id: str) -> Path:
    return Path(folder) / f"{_safe(embedder_id)}.onnx"


class OnnxEmbedder:
    """``embedder(crops) -> (N, D)`` float32 unit rows, like :class:`~pipeline.stages.embed.Embedder`
    (same preprocessing and normalisation), on the CPU with onnxruntime."""

    def __init__(self, path: Path, meta: dict) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.embedder_id, self.dim = str(meta["embedder_id"]), int(meta["dim"])
        self.input_size = (int(meta["input_size"][0]), int(meta["input_size"][1]))
        self._mean = np.asarray(meta["mean255"], np.float32).reshape(1, 3, 1, 1)  # the Embedder's own constants
        self._std = np.asarray(meta["std255"], np.float32).reshape(1, 3, 1, 1)

    @classmethod
    def load(cls, folder: str | Path, embedder_id: str) -> OnnxEmbedder | None:
        """The exported embedder ``embedder_id`` in ``folder``, or None (none there, or no onnxruntime)."""
        path = onnx_path(folder, embedder_id)
        meta_file = path.with_suffix(".json")
        if not path.is_file() or not meta_file.is_file():
            return None
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return None
        meta = json.loads(meta_file.read_text())
        return cls(path, meta) if meta.get("embedder_id") == embedder_id else None

    def to_input(self, batch: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 RGB -> (B, 3, H, W) float32 normalised as the network was trained."""
        x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2)).astype(np.float32)
        return (x - self._mean) / self._std

    def __call__(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        x = self.to_input(preprocess_crops(crops, self.input_size))
        out = self.session.run(None, {"images": x})[0].astype(np.float32).reshape(len(crops), -1)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def export_onnx(embedder, folder: str | Path) -> Path:
    """Export a built Embedder's network to ``folder`` (temp file + rename; skipped when there already);
    RuntimeError when onnxruntime's vectors differ from PyTorch's by more than PARITY_TOLERANCE."""
    import torch

    path = onnx_path(folder, embedder.embedder_id)
    if path.is_file() and path.with_suffix(".json").is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)

    class Graph(torch.nn.Module):
        def __init__(self, model) -> None:
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x).embedding.float().flatten(1)

    model = embedder.model
    if embedder.half or embedder.device.type != "cpu":  # a copy: the caller's model stays as it is
        import copy

        model = copy.deepcopy(model).float().to("cpu")
    graph = Graph(model).eval()
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (3, *embedder.input_size, 3), dtype=np.uint8)
    h = embedder.input_size[0]
    batch[2] = (40, 60, 90)  # like a real crop: flat colour regions (near-empty histogram bins)
    batch[2, : h // 2] = (200, 180, 170)
    batch[2, h // 3: h // 2, :, 1] = np.linspace(0, 255, batch.shape[2], dtype=np.uint8)
    mean255 = embedder._mean.float().cpu().numpy().reshape(-1)
    std255 = embedder._std.float().cpu().numpy().reshape(-1)
    meta = {"embedder_id": embedder.embedder_id, "dim": embedder.dim, "input_size": list(embedder.input_size),
            "mean255": mean255.tolist(), "std255": std255.tolist()}
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    x = torch.from_numpy((batch.transpose(0, 3, 1, 2).astype(np.float32) - mean255.reshape(1, 3, 1, 1))
                         / std255.reshape(1, 3, 1, 1))
    with torch.inference_mode():
        want = torch.nn.functional.normalize(graph(x), dim=1).numpy()
    import warnings

    with warnings.catch_warnings():  # the tracer's notes on Python-side shape arithmetic (fixed per input size)
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, x, str(tmp), input_names=["images"], output_names=["embedding"], opset_version=17,
                          dynamic_axes={"images": {0: "batch"}, "embedding": {0: "batch"}}, dynamo=False)
    try:
        meta_tmp = tmp.with_suffix(".json.tmp")
        meta_tmp.write_text(json.dumps(meta))
        got = OnnxEmbedder(tmp, meta)(list(batch[..., ::-1]))  # BGR crops at the input size
        diff, cos = float(np.abs(got - want).max()), float(np.min(np.sum(got * want, axis=1)))
        if not (diff <= PARITY_TOLERANCE and cos >= PARITY_COSINE):
            raise RuntimeError(f"onnxruntime differs from PyTorch (max abs {diff:.3g}, cosine {cos:.6f}; allowed "
                               f"{PARITY_TOLERANCE:g}, {PARITY_COSINE})")
        os.replace(meta_tmp, path.with_suffix(".json"))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_suffix(".json.tmp").unlink(missing_ok=True)
    return path
