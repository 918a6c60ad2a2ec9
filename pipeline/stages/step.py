"""One step of the run loop, shared by the single-process run (``pipeline.runner``) and the worker groups
(``pipeline.workers``): detect -> track -> sample + embed a batch of frames (at most one per camera), giving
what each frame adds to the store as a :class:`FrameRecord`. It never writes: the caller records them.

    stepper = FrameStepper(stages, {"north": 10.0, "south": 10.0})   # camera -> frames/s fed
    records = stepper.step(frames, timer.add)                        # one FrameRecord per frame
    last = stepper.close(["north"], timer.add)                        # end of stream: its skipped last frame
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
    detected: False for a frame the detector skipped (``detector.interval``): no boxes yet, they come as
    ``interpolated`` with the next detected frame of the camera.
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
    detected: bool = True

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
        self.intervals = {cam: stages.detect_interval(cam, fps) for cam, fps in frame_rates.items()}
        self.recent: dict[str, deque] = {cam: deque(maxlen=max(t.max_gap, self.intervals[cam]) + 2)
                                         for cam, t in self.trackers.items()}
        self._since: dict[str, int | None] = {cam: None for cam in frame_rates}  # frames since the last detected one
        self._fed: dict[str, int] = {cam: 0 for cam in frame_rates}  # frames fed so far
        self._held: dict[str, Frame | None] = {cam: None for cam in frame_rates}  # the last frame, if skipped

    def _detected(self, f: Frame) -> bool:
        """Whether ``f`` is a detector frame: frames 0, interval, 2 interval... of its camera (the same frames of
        every camera, so they share detector batches), and every frame while a new track awaits confirmation
        (it has no velocity to bridge a skipped frame with), while the detector still measures the people of
        the first frames, and, for ``interval: auto``, for a camera whose people it does not resolve."""
        cam = f.camera_id
        if self._since[cam] is None or self._fed[cam] % self.intervals[cam] == 0:
            return True
        return self.trackers[cam].tentative > 0 or not self.stages.may_skip(cam)

    def step(self, batch: Sequence[Frame], clock: Clock) -> tuple[FrameRecord, ...]:
        """One FrameRecord per frame of ``batch`` (same order); charges 'detect', 'track' and 'embed' to ``clock``.

        On frames the detector skips (``detector.interval``) nothing is detected, tracked or embedded: their
        record has no boxes, and their boxes come with the next detector frame's record as ``interpolated``
        (or, after a camera's last detector frame, with :meth:`close`)."""
        run = [f for f in batch if self._detected(f)]
        for f in batch:
            self._fed[f.camera_id] += 1
            self.recent[f.camera_id].append((f.index, f.timestamp))
        # a detector frame follows the camera's skipped frames: the tracker predicts across them too
        detected = self._detect_and_track(run, clock, [1 + (self._since[f.camera_id] or 0) for f in run])
        records = []
        for f in batch:
            if id(f) in detected:
                records.append(detected[id(f)])
                continue
            self._since[f.camera_id] += 1
            self._held[f.camera_id] = f
            records.append(FrameRecord(f.camera_id, f.index, f.timestamp, f.origin, Detections.empty(), (),
                                       np.zeros(0, np.int64), np.zeros((0, self.stages.embedder.dim), np.float32),
                                       (), (), detected=False))
        return tuple(records)

    def close(self, cameras: Sequence[str], clock: Clock) -> tuple[FrameRecord, ...]:
        """At the end of ``cameras``' streams (or Ctrl-C), before :meth:`finish`: each camera whose last frame
        the detector skipped has it detected and tracked now, so the frames after its last detector frame
        get boxes too. Returns those frames' records (detected; the frames between come as ``interpolated``)."""
        run = [f for cam in cameras if (f := self._held.get(cam)) is not None]
        detected = self._detect_and_track(run, clock, [self._since[f.camera_id] for f in run])
        return tuple(detected[id(f)] for f in run)

    def _detect_and_track(self, run: Sequence[Frame], clock: Clock, frames: Sequence[int]) -> dict[int, FrameRecord]:
        """Detect, track, sample and embed ``run`` (at most one frame per camera, each already in ``recent``);
        ``frames``: how many frames each camera's tracker advances to reach its frame. id(frame) -> record."""
        stages, trackers = self.stages, self.trackers
        t0 = time.perf_counter()
        dets = stages.detect(list(run))
        t0 = clock("detect", t0)
        tracked, filled, finished = [], [], []
        for f, d, k in zip(run, dets, frames):
            tracked.append(trackers[f.camera_id].update(d, f.image, frames=k))
            filled.append(trackers[f.camera_id].pop_interpolated())
            finished.append(trackers[f.camera_id].pop_finished())
        t0 = clock("track", t0)
        taken = [stages.sampler.take(f, t) for f, t in zip(run, tracked)]
        emb = stages.embedder([c for _, crops in taken for c in crops])
        clock("embed", t0)
        out, k = {}, 0
        for f, t, fill, fin, (rows, crops) in zip(run, tracked, filled, finished, taken):
            recent = self.recent[f.camera_id]
            self._since[f.camera_id], self._held[f.camera_id] = 0, None
            interpolated = tuple((*recent[-1 - ago], boxes) for ago, boxes in fill if ago < len(recent))
            ended = tuple(int(i) for i in fin)
            out[id(f)] = FrameRecord(f.camera_id, f.index, f.timestamp, f.origin, t, interpolated,
                                     np.asarray(rows, np.int64), emb[k:k + len(rows)],
                                     tuple(np.ascontiguousarray(c) for c in crops), ended)
            k += len(rows)
            if ended:
                stages.sampler.forget(f.camera_id, ended)
        return out

    def finish(self, cameras: Sequence[str]) -> dict[str, tuple[int, ...]]:
        """End every track of ``cameras`` (end of stream, Ctrl-C): camera -> the local ids it ended."""
        out = {}
        for cam in cameras:
            ids = self.trackers[cam].finish_all()
            self.stages.sampler.forget(cam, ids)
            out[cam] = tuple(int(i) for i in ids)
        return out
