"""One step of the run loop, shared by the single-process run (``pipeline.runner``) and the worker groups
(``pipeline.workers``): detect -> track -> sample + embed a batch of frames (at most one per camera), giving
what each frame adds to the store as a :class:`FrameRecord`. It never writes: the caller records them.

    stepper = FrameStepper(stages, {"north": 10.0, "south": 10.0})   # camera -> frames/s fed
    records = stepper.step(frames, timer.add)                        # one FrameRecord per frame
    ended = stepper.finish(["north"])                                # camera -> local ids it ended
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.types import Detections, Frame

from .build import Stages

Clock = Callable[[str, float], float]
"""``clock(stage, t0)`` charges ``now - t0`` seconds to ``stage`` and returns now (e.g. ``StageTimer.add``)."""
_NO_IMAGE = np.zeros((0, 0, 3), np.uint8)


@dataclass(frozen=True)
class FrameRecord:
    """What one frame of one camera adds to the store (no image).

    tracks: boxes of tracked persons in frame pixels (``track_id >= 0`` are recorded).
    interpolated: (frame index, timestamp, boxes) the tracker filled in for frames it had missed.
    sample_rows: (K,) rows of ``tracks`` sampled; sample_embedding: (K, D) float32 unit-norm;
    crops: K BGR uint8 crops (the store keeps them as thumbnails).
    finished: local ids of tracks that ended at this frame.
    """

    camera_id: str
    index: int
    timestamp: float
    origin: tuple[int, int]
    tracks: Detections
    interpolated: tuple[tuple[int, float, Detections], ...]
    sample_rows: np.ndarray
    sample_embedding: np.ndarray
    crops: tuple[np.ndarray, ...]
    finished: tuple[int, ...]

    def frame(self, index: int | None = None, timestamp: float | None = None) -> Frame:
        """The Frame (without its image) the store records these boxes under."""
        return Frame(self.camera_id, self.index if index is None else index,
                     self.timestamp if timestamp is None else timestamp, _NO_IMAGE, self.origin)


class FrameStepper:
    """The per-camera state of a run's loop: one tracker per camera (each owns its id counter) and the
    (index, timestamp) of each camera's recent frames, which dates the boxes a tracker fills in for
    frames it missed. ``frame_rates``: camera id -> frames/s actually fed (after stride)."""

    def __init__(self, stages: Stages, frame_rates: Mapping[str, float]) -> None:
        self.stages = stages
        self.trackers = {cam: stages.tracker(frame_rate=fps) for cam, fps in frame_rates.items()}
        self.recent: dict[str, deque] = {cam: deque(maxlen=t.max_gap + 2) for cam, t in self.trackers.items()}

    def step(self, batch: Sequence[Frame], clock: Clock) -> tuple[FrameRecord, ...]:
        """One FrameRecord per frame of ``batch`` (same order); charges 'detect', 'track' and 'embed' to ``clock``."""
        stages, trackers = self.stages, self.trackers
        t0 = time.perf_counter()
        dets = stages.detect(batch)
        t0 = clock("detect", t0)
        tracked = [trackers[f.camera_id].update(d, f.image) for f, d in zip(batch, dets)]
        filled = {f.camera_id: trackers[f.camera_id].pop_interpolated() for f in batch}
        finished = {f.camera_id: trackers[f.camera_id].pop_finished() for f in batch}
        t0 = clock("track", t0)
        taken = [stages.sampler.take(f, t) for f, t in zip(batch, tracked)]
        emb = stages.embedder([c for _, crops in taken for c in crops])
        clock("embed", t0)
        records, k = [], 0
        for f, t, (rows, crops) in zip(batch, tracked, taken):
            recent = self.recent[f.camera_id]
            recent.append((f.index, f.timestamp))
            interpolated = tuple((*recent[-1 - ago], boxes) for ago, boxes in filled[f.camera_id] if ago < len(recent))
            ended = tuple(int(i) for i in finished[f.camera_id])
            records.append(FrameRecord(f.camera_id, f.index, f.timestamp, f.origin, t, interpolated,
                                       np.asarray(rows, np.int64), emb[k:k + len(rows)],
                                       tuple(np.ascontiguousarray(c) for c in crops), ended))
            k += len(rows)
            if ended:
                stages.sampler.forget(f.camera_id, ended)
        return tuple(records)

    def finish(self, cameras: Sequence[str]) -> dict[str, tuple[int, ...]]:
        """End every track of ``cameras`` (end of stream, Ctrl-C): camera -> the local ids it ended."""
        out = {}
        for cam in cameras:
            ids = self.trackers[cam].finish_all()
            self.stages.sampler.forget(cam, ids)
            out[cam] = tuple(int(i) for i in ids)
        return out
