"""Typed data passed between pipeline stages.

Every stage takes and returns these small frozen dataclasses of parallel numpy arrays,
never arrays with magic columns. Images are OpenCV BGR ``uint8``; timestamps are seconds since
the Unix epoch (UTC). Boxes are pixel ``x1, y1, x2, y2``: between stages (detection, tracking,
cropping, the annotated video) in the pixels of ``Frame.image``, which is the camera's roi crop;
the store, and so query results and exports, hold them in the full source frame
(``Frame.image`` pixels + ``Frame.origin``), matching the source frame indices.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded frame of one camera.

    camera_id: the camera's id from cams.yaml.
    index: frame number in the source (0-based, counts every decoded frame, stride included).
    timestamp: wall-clock seconds since the epoch (UTC) when the frame was seen.
    image: (H, W, 3) uint8 BGR: the source frame cropped to the camera's roi.
    origin: (x, y) pixels of ``image``'s top-left corner in the source frame ((0, 0) without roi).
    """

    camera_id: str
    index: int
    timestamp: float
    image: np.ndarray = field(repr=False)
    origin: tuple[int, int] = (0, 0)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return self.image.shape[0], self.image.shape[1]


def _as(a, dtype, shape) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=dtype).reshape(shape))


@dataclass(frozen=True)
class Detections:
    """N person boxes of one frame, with optional tracking and appearance columns.

    xyxy: (N, 4) float32 pixels of ``Frame.image`` (see the module docstring).
    confidence: (N,) float32 in [0, 1].
    class_id: (N,) int64 detector class.
    track_id: (N,) int64 camera-local track id, -1 where untracked.
    embedding: (N, D) float32 L2-normalised appearance vectors, or None.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    track_id: np.ndarray
    embedding: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(np.asarray(self.xyxy).reshape(-1, 4))
        object.__setattr__(self, "xyxy", _as(self.xyxy, np.float32, (n, 4)))
        object.__setattr__(self, "confidence", _as(self.confidence, np.float32, (n,)))
        object.__setattr__(self, "class_id", _as(self.class_id, np.int64, (n,)))
        object.__setattr__(self, "track_id", _as(self.track_id, np.int64, (n,)))
        if self.embedding is not None:
            emb = np.asarray(self.embedding, dtype=np.float32)
            if emb.ndim != 2 or emb.shape[0] != n:
                raise ValueError(f"embedding must be (N={n}, D), got {emb.shape}")
            object.__setattr__(self, "embedding", np.ascontiguousarray(emb))

    @classmethod
    def empty(cls, embedding_dim: int | None = None) -> Detections:
        emb = None if embedding_dim is None else np.zeros((0, embedding_dim), np.float32)
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0), np.zeros(0), emb)

    @classmethod
    def from_arrays(cls, xyxy, confidence, class_id=None, track_id=None, embedding=None) -> Detections:
        n = len(np.asarray(xyxy).reshape(-1, 4))
        class_id = np.zeros(n, np.int64) if class_id is None else class_id
        track_id = np.full(n, -1, np.int64) if track_id is None else track_id
        return cls(xyxy, confidence, class_id, track_id, embedding)

    @classmethod
    def from_ultralytics(cls, result, person_classes: Sequence[int]) -> Detections:
        """The boxes of one ultralytics ``Results`` whose class is in ``person_classes`` (input pixels)."""
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return cls.empty()
        xyxy = boxes.xyxy.float().cpu().numpy()
        conf = boxes.conf.float().cpu().numpy()
        cls_id = boxes.cls.cpu().numpy().astype(np.int64)
        keep = np.isin(cls_id, np.asarray(person_classes, np.int64))
        return cls.from_arrays(xyxy[keep], conf[keep], cls_id[keep])

    @classmethod
    def concatenate(cls, parts: Sequence[Detections]) -> Detections:
        """The rows of ``parts`` one after another (the embedding column only if every part has one)."""
        parts = list(parts)
        if not parts:
            return cls.empty()
        emb = None
        if all(p.embedding is not None for p in parts):
            emb = np.concatenate([p.embedding for p in parts])
        return cls(np.concatenate([p.xyxy for p in parts]), np.concatenate([p.confidence for p in parts]),
                   np.concatenate([p.class_id for p in parts]), np.concatenate([p.track_id for p in parts]), emb)

    def with_embedding(self, rows, embedding: np.ndarray) -> Detections:
        """A copy whose embedding column is ``embedding`` (K, D) at ``rows`` (K,) and zero elsewhere."""
        rows = np.asarray(rows, np.int64).reshape(-1)
        embedding = np.asarray(embedding, np.float32)
        if embedding.ndim != 2 or len(embedding) != len(rows):
            raise ValueError(f"embedding must be (K={len(rows)}, D) for {len(rows)} rows, got {embedding.shape}")
        full = np.zeros((len(self), embedding.shape[1]), np.float32)
        full[rows] = embedding
        return replace(self, embedding=full)

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index) -> Detections:
        """Select rows with a boolean mask, an index array or a slice."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        emb = None if self.embedding is None else self.embedding[index]
        return Detections(self.xyxy[index], self.confidence[index], self.class_id[index],
                          self.track_id[index], emb)

    def with_(self, **changes) -> Detections:
        """A copy with some columns replaced, e.g. ``dets.with_(track_id=ids)``."""
        return replace(self, **changes)

    @property
    def area(self) -> np.ndarray:
        """(N,) box areas in square pixels."""
        wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]
