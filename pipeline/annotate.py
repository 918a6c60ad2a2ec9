"""Drawing tracked boxes with their local and global ids, and writing one annotated MP4 per camera.

Global identities are given to tracks when they end (see associate.py), so a frame drawn the
moment it is seen could only show ids of people seen before. ``AnnotatedVideoWriter`` therefore
keeps the last ``delay`` frames of each camera (JPEG-compressed, about 50 KB each at 768x576) and
draws a frame only when it leaves that buffer or at ``close()``, after the final association:
every box then carries the global id known at that time.
"""
from __future__ import annotations

import collections
import datetime as dt
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.types import Detections, Frame
from reid_models.common import UserError, decode_image, encode_jpeg, quiet_native_logs

FONT = cv2.FONT_HERSHEY_SIMPLEX


def color_for(key: int) -> tuple[int, int, int]:
    """A stable, saturated BGR colour for an integer id (golden-ratio hue steps)."""
    hue = int((key * 0.618033988749895 % 1.0) * 180)
    hsv = np.uint8([[[hue, 220, 255]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _label(image: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int], scale: float) -> None:
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    y = max(y, th + base + 1)
    cv2.rectangle(image, (x, y - th - base - 1), (x + tw + 2, y), color, -1)
    cv2.putText(image, text, (x + 1, y - base), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


def draw_tracks(image: np.ndarray, tracks: Detections, global_ids: Mapping[int, int] | None = None,
                header: str | None = None) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) BGR with each tracked box (track_id >= 0) drawn and labelled.

    Labels read ``<local id>`` or ``<local id> G<global id>`` when ``global_ids`` maps the local id;
    boxes are coloured by global id when known, else by local id. ``header`` is written top-left.
    """
    out = image.copy()
    scale = max(0.4, min(out.shape[:2]) / 1200)
    thick = max(1, round(min(out.shape[:2]) / 400))
    global_ids = global_ids or {}
    for (x1, y1, x2, y2), local in zip(tracks.xyxy.astype(int), tracks.track_id):
        if local < 0:
            continue
        gid = global_ids.get(int(local))
        color = color_for(gid * 7 + 3) if gid is not None else color_for(int(local))
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick)
        _label(out, f"{local}" if gid is None else f"{local} G{gid}", x1, y1, color, scale)
    if header:
        _label(out, header, 0, 0, (255, 255, 255), scale)
    return out


def check_video_dir(out_dir: Path) -> None:
    """UserError naming ``out_dir`` unless it is, or can be created as, a folder we can write files in."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--save-video {out_dir} is a file, not a folder: pass a folder for the videos")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        raise UserError(f"cannot write videos to {out_dir} ({e.strerror or type(e).__name__}): "
                        "pass a writable folder to --save-video") from None


def count_video_frames(path: Path) -> int:
    """Frames a video file reads back as (its container's count); -1 if it cannot be opened at all."""
    if not path.is_file() or path.stat().st_size == 0:
        return -1
    with quiet_native_logs():  # FFmpeg's "moov atom not found" for a cut-off file
        cap = cv2.VideoCapture(str(path))
        try:
            if not cap.isOpened():
                return -1
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            if n <= 0:  # no count in the container: read it through
                while cap.grab():
                    n += 1
            return n
        finally:
            cap.release()


def frame_header(frame: Frame) -> str:
    """'<camera>  #<index>  <UTC time>' for the top-left corner of a frame."""
    t = dt.datetime.fromtimestamp(frame.timestamp, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-5]
    return f"{frame.camera_id}  #{frame.index}  {t}Z"


@dataclass
class _Pending:
    frame: Frame            # image replaced by an empty array; the pixels are in `jpeg`
    jpeg: bytes
    tracks: Detections


@dataclass
class AnnotatedVideoWriter:
    """Writes ``<out_dir>/<camera_id>.mp4`` (codec mp4v) with tracked boxes and ids, one per camera.

    fps: frames per second of the written files, per camera id (default 10).
    delay: frames held back per camera so that global ids assigned later are drawn (0 = draw at once).
    ``global_ids`` maps (camera_id, local track id) -> global id; the caller refreshes it
    with :meth:`update_global_ids` after each association.
    Creating the writer checks that ``out_dir`` is (or can be made) a writable folder (UserError).
    :meth:`close` reopens each file and counts its frames: a video cut short (a full disk, OpenCV's
    writer reports no error) is left out of its result and named in ``failed`` with the reason.
    """

    out_dir: str | Path
    fps: Mapping[str, float] = field(default_factory=dict)
    delay: int = 600
    jpeg_quality: int = 92
    global_ids: dict[tuple[str, int], int] = field(default_factory=dict)
    _buffers: dict[str, collections.deque] = field(default_factory=dict, repr=False)
    _writers: dict[str, cv2.VideoWriter] = field(default_factory=dict, repr=False)
    _sizes: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)
    frames_written: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        check_video_dir(self.out_dir)

    def path(self, camera_id: str) -> Path:
        return Path(self.out_dir) / f"{camera_id}.mp4"

    def update_global_ids(self, mapping: Mapping[tuple[str, int], int]) -> None:
        """Merge in (camera_id, local id) -> global id pairs learnt from the store."""
        self.global_ids.update(mapping)

    def write(self, frame: Frame, tracks: Detections) -> None:
        """Queue one frame with its tracked boxes; draws and writes the oldest beyond ``delay``."""
        if self.delay <= 0:
            self._emit(frame, frame.image, tracks)
            return
        jpeg = encode_jpeg(frame.image, quality=self.jpeg_quality)
        stub = Frame(frame.camera_id, frame.index, frame.timestamp, np.zeros((0, 0, 3), np.uint8))
        buf = self._buffers.setdefault(frame.camera_id, collections.deque())
        buf.append(_Pending(stub, jpeg, tracks))
        while len(buf) > self.delay:
            self._emit_pending(buf.popleft())

    def add_boxes(self, camera_id: str, index: int, tracks: Detections) -> bool:
        """Add boxes the tracker filled in later (interpolated) to the held-back frame ``index`` of
        ``camera_id``; False when that frame was already written (or ``delay`` is 0)."""
        for p in reversed(self._buffers.get(camera_id, ())):
            if p.frame.index == index:
                p.tracks = Detections.concatenate([p.tracks, tracks])
                return True
            if p.frame.index < index:
                break
        return False

    def flush(self) -> None:
        """Draw and write every held-back frame (call after the last association)."""
        for buf in self._buffers.values():
            while buf:
                self._emit_pending(buf.popleft())

    def close(self) -> dict[str, Path]:
        """Flush, finish the files and return {camera_id: path} of the videos written.

        The files are finished (playable up to the last frame written) even if flushing fails. A file
        that does not read back with every frame written is left out and named in ``failed``."""
        try:
            self.flush()
        finally:
            for w in self._writers.values():
                w.release()
        out = {}
        for cam in self._writers:
            path, wrote = self.path(cam), self.frames_written.get(cam, 0)
            readable = count_video_frames(path)
            if readable >= wrote:
                out[cam] = path
            elif readable < 0:
                self.failed[cam] = f"{path} is not a readable video ({wrote} frames were written: disk full?)"
            else:
                self.failed[cam] = f"{path} holds {readable} of the {wrote} frames written (disk full?)"
        self._writers.clear()
        return out

    def _emit_pending(self, p: _Pending) -> None:
        self._emit(p.frame, decode_image(p.jpeg, f"held-back frame {p.frame.index} of {p.frame.camera_id}"),
                   p.tracks)

    def _emit(self, frame: Frame, image: np.ndarray, tracks: Detections) -> None:
        cam = frame.camera_id
        gids = {int(t): g for t in tracks.track_id if (g := self.global_ids.get((cam, int(t)))) is not None}
        drawn = draw_tracks(image, tracks, gids, frame_header(frame))
        writer = self._writers.get(cam)
        if writer is None:
            h, w = drawn.shape[:2]
            fps = float(self.fps.get(cam, 10.0)) if isinstance(self.fps, Mapping) else float(self.fps)
            writer = cv2.VideoWriter(str(self.path(cam)), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            if not writer.isOpened():
                raise RuntimeError(f"cannot open a video writer for {self.path(cam)} (mp4v codec missing "
                                   f"from this OpenCV build?)")
            self._writers[cam], self._sizes[cam] = writer, (w, h)
        if (drawn.shape[1], drawn.shape[0]) != self._sizes[cam]:  # a live source changed resolution
            drawn = cv2.resize(drawn, self._sizes[cam])
        writer.write(drawn)
        self.frames_written[cam] = self.frames_written.get(cam, 0) + 1
