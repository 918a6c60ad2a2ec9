"""Video segments and snapshots cut from the cameras' source files.

A sighting's segment is the track's frames [start_frame, end_frame] of its camera's source video
with the track's box drawn on each frame (:func:`pipeline.annotate.draw_tracks`), written as WebM
(VP8, what OpenCV's FFmpeg can encode here and every browser plays; OpenCV's pip wheels carry no
H.264 encoder) and kept in a cache folder. Where no VP8 encoder exists, the same frames are served
as a JPEG sequence the page plays in an <img> (:func:`segment_frames`).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.annotate import color_for, draw_tracks
from pipeline.store import StoreReader, TrackRecord
from pipeline.types import Detections
from reid_models.common import UserError, encode_jpeg, iso_time, quiet_native_logs

from .data import camera_source


class MediaUnavailable(UserError):
    """No segment or snapshot can be cut (a live camera, a source file that moved); one line."""


@dataclass(frozen=True)
class SegmentPlan:
    """Frames to cut for a track: source path, frame indices (ascending), box per frame (or None), fps."""

    source: Path
    frames: np.ndarray
    boxes: list
    fps: float
    label: str


def plan_segment(reader: StoreReader, track: TrackRecord, max_frames: int) -> SegmentPlan:
    source, meta = camera_source(reader, track.camera_id)
    if source is None:
        raise MediaUnavailable(f"camera {track.camera_id} has no source video file to cut from "
                               "(a live stream, or the file moved)")
    boxes = reader.boxes([track.id])
    frames = np.arange(track.start_frame, track.end_frame + 1)
    if len(frames) > max_frames:
        frames = np.unique(np.linspace(track.start_frame, track.end_frame, max_frames).round().astype(int))
    order = np.argsort(boxes.frame)
    bf, bx = boxes.frame[order], boxes.xyxy[order]
    per_frame = []
    for f in frames:  # the box of this frame, else the last one before it
        k = int(np.searchsorted(bf, f, side="right")) - 1
        per_frame.append(bx[k] if k >= 0 else None)
    fps = float(meta.get("fps") or 10.0) * len(frames) / max(1, track.end_frame - track.start_frame + 1)
    return SegmentPlan(source, frames, per_frame, max(1.0, fps), f"{track.camera_id} track {track.local_id}")


def _frames(plan: SegmentPlan, global_id: int | None, local_id: int, start_time: float, fps_src: float):
    """Yield (frame index, annotated BGR image) of the plan."""
    with quiet_native_logs():
        cap = cv2.VideoCapture(str(plan.source))
    try:
        if not cap.isOpened():
            raise MediaUnavailable(f"cannot open source video {plan.source.name}")
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(plan.frames[0]))
        pos = int(plan.frames[0])
        for f, box in zip(plan.frames, plan.boxes):
            image = None
            while pos <= f:
                ok, image = cap.read()
                pos += 1
                if not ok:
                    return
            dets = Detections(np.asarray([box] if box is not None else np.zeros((0, 4)), np.float32).reshape(-1, 4),
                              np.ones(1 if box is not None else 0, np.float32),
                              np.zeros(1 if box is not None else 0, np.int64),
                              np.full(1 if box is not None else 0, local_id, np.int64))
            header = f"{plan.label}  #{int(f)}  {iso_time(start_time + (int(f) - plan.frames[0]) / fps_src)}"
            out = draw_tracks(image, dets, {local_id: global_id} if global_id is not None else None, header)
            if box is not None:  # a 2-px outline on top: the one person of this segment stands out
                x1, y1, x2, y2 = (int(round(v)) for v in box)
                color = color_for(global_id * 7 + 3) if global_id is not None else color_for(local_id)
                cv2.rectangle(out, (x1 - 1, y1 - 1), (x2 + 1, y2 + 1), color, 2)
            yield int(f), out
    finally:
        cap.release()


class SegmentCache:
    """WebM segments per track in ``folder`` (rebuilt when the track grows); one build at a time."""

    def __init__(self, folder: Path, max_frames: int) -> None:
        self.folder, self.max_frames = Path(folder), max_frames
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def webm(self, reader: StoreReader, track: TrackRecord) -> Path:
        path = self.folder / f"track{track.id}_{track.end_frame}_{track.n_boxes}.webm"
        with self._lock:
            if path.is_file():
                return path
            plan = plan_segment(reader, track, self.max_frames)
            _, meta = camera_source(reader, track.camera_id)
            tmp = path.with_suffix(".tmp.webm")
            writer = None
            try:
                for _, image in _frames(plan, track.global_id, track.local_id, track.start_time,
                                        float(meta.get("fps") or 10.0)):
                    if writer is None:
                        h, w = image.shape[:2]
                        with quiet_native_logs():
                            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"VP80"), plan.fps, (w, h))
                        if not writer.isOpened():
                            raise MediaUnavailable("this OpenCV build cannot encode VP8 WebM")
                    writer.write(image)
            finally:
                if writer is not None:
                    writer.release()
            if writer is None or not tmp.is_file() or tmp.stat().st_size == 0:
                tmp.unlink(missing_ok=True)
                raise MediaUnavailable(f"no frame of track {track.id} could be read from {plan.source.name}")
            tmp.replace(path)
            return path


def segment_frame(reader: StoreReader, track: TrackRecord, k: int, max_frames: int) -> bytes:
    """JPEG of the k-th frame (0-based) of the track's segment (the player without a video codec)."""
    plan = plan_segment(reader, track, max_frames)
    if not 0 <= k < len(plan.frames):
        raise MediaUnavailable(f"the segment of track {track.id} has {len(plan.frames)} frames")
    one = SegmentPlan(plan.source, plan.frames[k:k + 1], plan.boxes[k:k + 1], plan.fps, plan.label)
    _, meta = camera_source(reader, track.camera_id)
    for _, image in _frames(one, track.global_id, track.local_id,
                            track.start_time + (int(plan.frames[k]) - track.start_frame) / float(meta.get("fps") or 10),
                            float(meta.get("fps") or 10.0)):
        return encode_jpeg(image, quality=80)
    raise MediaUnavailable(f"frame {int(plan.frames[k])} of {plan.source.name} cannot be read")


def snapshot(reader: StoreReader, camera_id: str, frame: int | None) -> bytes:
    """JPEG of the camera's newest stored frame (``frame``, a source index) from its source file;
    MediaUnavailable for a live camera or a missing file."""
    source, meta = camera_source(reader, camera_id)
    if source is None:
        raise MediaUnavailable(f"camera {camera_id} has no source file to take a snapshot from")
    with quiet_native_logs():
        cap = cv2.VideoCapture(str(source))
    try:
        if frame is not None:
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(frame))
        ok, image = cap.read()
    finally:
        cap.release()
    if not ok:
        raise MediaUnavailable(f"cannot read a frame of {source.name}")
    return encode_jpeg(image, quality=80, height=min(360, image.shape[0]))
