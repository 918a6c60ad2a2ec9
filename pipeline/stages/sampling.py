"""Which tracked boxes to embed: a few good, spread-out samples per track, cut out of the frame.

The network that embeds them is :mod:`pipeline.stages.embed`; the store keeps each sample's crop as
a thumbnail.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.config import EmbedderConfig
from pipeline.types import Detections, Frame

SAMPLE_BORDER = 2.0
"""Pixels a sampled box keeps away from the frame edges (a box touching an edge is cut off)."""
SAMPLE_ASPECT_RANGE = (1.0, 5.0)
"""Height / width ratios of sampled boxes: standing or walking people, not merged or lying boxes."""


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


class TrackSampler:
    """Chooses which tracked boxes to embed, from the ``embedder`` section of the config.

    A box qualifies when its confidence >= ``min_confidence``, its height >= ``min_height`` pixels,
    it keeps ``SAMPLE_BORDER`` pixels away from the frame edges and its height/width ratio lies in
    ``SAMPLE_ASPECT_RANGE``. Each (camera, local track) gets at most ``max_samples_per_track``
    samples, at least ``sample_interval`` seconds apart.
    """

    border = SAMPLE_BORDER
    aspect_range = SAMPLE_ASPECT_RANGE

    def __init__(self, config: EmbedderConfig = EmbedderConfig()) -> None:
        if not isinstance(config, EmbedderConfig):
            raise TypeError(f"TrackSampler takes an EmbedderConfig, got {type(config).__name__}")
        self.config = config
        self._state: dict[tuple[str, int], _TrackState] = {}

    def __repr__(self) -> str:
        c = self.config
        return (f"TrackSampler(max_samples_per_track={c.max_samples_per_track}, sample_interval={c.sample_interval}, "
                f"min_confidence={c.min_confidence}, min_height={c.min_height})")

    def quality(self, frame_shape: tuple[int, int], dets: Detections) -> np.ndarray:
        """(N,) bool: boxes good enough to describe the person."""
        h_img, w_img = frame_shape
        x1, y1, x2, y2 = dets.xyxy.T
        w, h = x2 - x1, y2 - y1
        aspect = h / np.maximum(w, 1e-6)
        b = self.border
        return ((dets.confidence >= self.config.min_confidence) & (h >= self.config.min_height)
                & (x1 >= b) & (y1 >= b) & (x2 <= w_img - b) & (y2 <= h_img - b)
                & (aspect >= self.aspect_range[0]) & (aspect <= self.aspect_range[1]))

    def select(self, frame: Frame, tracks: Detections) -> np.ndarray:
        """Row indices (K,) int64 of ``tracks`` to embed now; counts them as sampled."""
        if len(tracks) == 0:
            return np.zeros(0, np.int64)
        good = self.quality(frame.shape, tracks) & (tracks.track_id >= 0)
        rows = []
        for i in np.flatnonzero(good):
            st = self._state.setdefault((frame.camera_id, int(tracks.track_id[i])), _TrackState())
            if (st.samples < self.config.max_samples_per_track
                    and frame.timestamp - st.last_time >= self.config.sample_interval):
                st.samples += 1
                st.last_time = frame.timestamp
                rows.append(i)
        return np.asarray(rows, np.int64)

    def take(self, frame: Frame, tracks: Detections) -> tuple[np.ndarray, list[np.ndarray]]:
        """:meth:`select` plus the crops of the chosen boxes: (rows (K,), K BGR crops of ``frame.image``)."""
        rows = self.select(frame, tracks)
        return rows, crop_boxes(frame.image, tracks.xyxy[rows])

    def samples(self, camera_id: str, local_id: int) -> int:
        """How many samples a track has been given so far."""
        st = self._state.get((camera_id, int(local_id)))
        return 0 if st is None else st.samples

    def forget(self, camera_id: str, local_ids: Sequence[int]) -> None:
        """Drop the state of finished tracks (their ids are never reused by a tracker)."""
        for t in local_ids:
            self._state.pop((camera_id, int(t)), None)
