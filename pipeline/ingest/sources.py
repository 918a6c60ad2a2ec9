"""Camera sources as objects: ``source.open()`` then ``source.frames()``.

- :class:`VideoFileSource`: seeks to ``start_frame``, grabs stride-skipped frames without decoding.
- :class:`ImageFolderSource`: images in natural order, unreadable ones skipped and counted.
- :class:`LiveSource`: rtsp/http URLs and webcams with FFmpeg connect / read timeouts; ``open()``
  is one connection attempt and ``frames()`` ends when the stream drops (the reader reconnects).

Each source counts into the :class:`ReaderStats` it is given (its reader's) and fills ``meta``
(fps, frame_count, width, height) when opened. Images are BGR uint8 arrays (H, W, 3).
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.config import CameraConfig
from reid_models.common import IMAGE_EXTENSIONS, ImageReadError, quiet_native_logs, read_image_bgr

log = logging.getLogger("pipeline.ingest")  # the ingestion logger, shared with CameraReader

DEFAULT_FOLDER_FPS = 10.0


class IngestError(RuntimeError):
    """A camera source that cannot be read at all (raised by ``open()``, names the camera and source)."""


@dataclass
class ReaderStats:
    """Counters of one camera: the reader and its source add to one; ``CameraReader.stats`` is a snapshot copy.

    frames_read: frames decoded or grabbed from the source, stride-skipped ones included.
    frames_delivered: frames put in the queue.
    frames_dropped: live sources: queued frames discarded because the consumer was too slow.
    frames_skipped: image folders: unreadable images skipped (and frames a roi leaves nothing of).
    reconnects: live sources: times the connection was re-established after a failure.
    open_failures: live sources: failed connection attempts.
    finished: the reader thread has ended (snapshots only).
    state: "live" (reading or connecting), "reconnecting" (a live source waiting in back-off to reopen),
    "ended" (the source ended or the reader stopped), "failed" (the reader gave up: an error, or a dropped
    live stream with ``reconnect: false``).
    """

    camera_id: str
    frames_read: int = 0
    frames_delivered: int = 0
    frames_dropped: int = 0
    frames_skipped: int = 0
    reconnects: int = 0
    open_failures: int = 0
    last_error: str | None = None
    finished: bool = False
    state: str = "live"


def seek_frame(cap: cv2.VideoCapture, index: int,
               reopen: Callable[[], cv2.VideoCapture]) -> cv2.VideoCapture:
    """Position ``cap`` so that the next read returns frame ``index``.

    Tries ``CAP_PROP_POS_FRAMES`` and verifies the position; if the container cannot seek,
    reopens the source with ``reopen()`` and grabs (decodes without converting) ``index`` frames.
    Returns the capture to use (the same or the reopened one).
    """
    if index <= 0:
        return cap
    if cap.set(cv2.CAP_PROP_POS_FRAMES, index) and int(round(cap.get(cv2.CAP_PROP_POS_FRAMES))) == index:
        return cap
    log.info("seek to frame %d not supported by the container; grabbing frames instead", index)
    cap.release()
    cap = reopen()
    for _ in range(index):
        if not cap.grab():
            break
    return cap


def list_images(folder: str | Path) -> list[Path]:
    """Image files of ``folder`` in natural order (frame2 before frame10)."""
    def key(p: Path):
        return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]
    return sorted((p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS), key=key)


class _Source:
    """What every source has: its camera, the counters it adds to and ``meta`` (kind, source, and
    after ``open()`` of a file or folder: fps, frame_count, width, height)."""

    def __init__(self, camera: CameraConfig, counters: ReaderStats) -> None:
        self.camera = camera
        self.counters = counters
        self.meta: dict = {"kind": camera.kind, "source": str(camera.source)}
        self.fps = DEFAULT_FOLDER_FPS

    def _check_roi(self, shape: tuple[int, ...], what: str | Path) -> None:
        roi = self.camera.roi
        h, w = shape[:2]
        if roi is not None and (roi[2] > w or roi[3] > h):
            raise IngestError(f"camera '{self.camera.id}': roi {list(roi)} does not fit the {w}x{h} frames "
                              f"of {what}; use x2 <= {w} and y2 <= {h}")


class VideoFileSource(_Source):
    """A video file: ``open()`` decodes the first kept frame (IngestError if it cannot), ``frames()``
    yields (source index, image) of the kept frames and releases the file at the end."""

    def open(self) -> None:
        with quiet_native_logs():  # FFmpeg's own lines would come before our one-line IngestError
            self._open()

    def _open(self) -> None:
        cam, path = self.camera, str(self.camera.source)
        cap = cv2.VideoCapture(path)
        if not cap.isOpened():
            raise IngestError(f"camera '{cam.id}': cannot open video file {path}: OpenCV/FFmpeg does "
                              "not recognise it; check that it is a playable video (e.g. .mp4, .avi)")
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = cam.fps or cap.get(cv2.CAP_PROP_FPS)
        if not fps or not math.isfinite(fps) or fps <= 0:
            log.warning("camera %s: %s has no frame rate; assuming %.0f fps (set fps in cams.yaml)",
                        cam.id, path, DEFAULT_FOLDER_FPS)
            fps = DEFAULT_FOLDER_FPS
        self.fps = float(fps)
        cap = seek_frame(cap, cam.start_frame, lambda: cv2.VideoCapture(path))
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            if cam.start_frame > 0 and 0 < total <= cam.start_frame:
                raise IngestError(f"camera '{cam.id}': start_frame {cam.start_frame} is past the end of "
                                  f"{path} ({total} frames); lower start_frame")
            raise IngestError(f"camera '{cam.id}': cannot decode any frame of video file {path}; "
                              "the file is corrupt or its codec is not supported by OpenCV's FFmpeg")
        self.counters.frames_read += 1
        self._check_roi(first.shape, path)
        h, w = first.shape[:2]
        self.meta.update(fps=self.fps, frame_count=total, width=w, height=h)
        self._cap, self._first = cap, first

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """(source index, image) of the kept frames; stride-skipped frames are grabbed, not decoded."""
        cam, end, cap, n = self.camera, self.camera.end_frame, self._cap, self.counters
        total = self.meta.get("frame_count", 0)
        index, image = cam.start_frame, self._first
        try:
            while True:
                yield index, image
                for _ in range(cam.stride):
                    index += 1
                    if end is not None and index >= end:
                        return
                    if not cap.grab():
                        if total and index < total:
                            n.last_error = f"decoding stopped at frame {index} of {total}"
                            log.warning("camera %s: %s", cam.id, n.last_error)
                        return
                    n.frames_read += 1
                ok, image = cap.retrieve()
                if not ok or image is None:
                    n.last_error = f"cannot decode frame {index}"
                    log.warning("camera %s: %s; ending the file here", cam.id, n.last_error)
                    return
        finally:
            cap.release()


class ImageFolderSource(_Source):
    """A folder of images (natural order): ``open()`` lists it and decodes the first readable image in
    range (IngestError if none), ``frames()`` yields (index in the folder, image)."""

    def open(self) -> None:
        with quiet_native_logs():  # libpng/libjpeg lines of unreadable images
            self._open()

    def _open(self) -> None:
        cam, folder = self.camera, str(self.camera.source)
        files = list_images(folder) if Path(folder).is_dir() else []
        self.fps = cam.fps or DEFAULT_FOLDER_FPS
        stop = len(files) if cam.end_frame is None else min(cam.end_frame, len(files))
        indices = range(cam.start_frame, stop, cam.stride)
        if not indices:
            raise IngestError(f"camera '{cam.id}': image folder {folder} has {len(files)} images, none in "
                              f"start_frame {cam.start_frame} .. end_frame {cam.end_frame}; fix the range")
        for k, index in enumerate(indices):
            image = self._read(files[index])
            if image is not None:
                self._check_roi(image.shape, files[index])
                h, w = image.shape[:2]
                self.meta.update(fps=self.fps, frame_count=len(files), width=w, height=h)
                self._files, self._rest, self._first = files, indices[k + 1:], (index, image)
                return
        raise IngestError(f"camera '{cam.id}': none of the {len(indices)} images of folder {folder} "
                          "can be read; check that they are valid JPEG/PNG files")

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        yield self._first
        for index in self._rest:
            image = self._read(self._files[index])
            if image is not None:
                yield index, image

    def _read(self, path: Path) -> np.ndarray | None:
        """Decode one image; an unreadable one is counted, logged and returned as None."""
        try:
            image = read_image_bgr(path)
        except ImageReadError:
            self.counters.frames_skipped += 1
            self.counters.last_error = f"unreadable image {path}"
            log.warning("camera %s: skipping unreadable image %s", self.camera.id, path)
            return None
        self.counters.frames_read += 1
        return image


class LiveSource(_Source):
    """A URL or webcam. ``open()`` is one connection attempt (True if connected); ``frames()`` yields
    images until the stream drops or stalls for ``read_timeout`` seconds, then releases the connection."""

    def __init__(self, camera: CameraConfig, counters: ReaderStats, open_timeout: float = 10.0,
                 read_timeout: float = 5.0) -> None:
        super().__init__(camera, counters)
        self.open_timeout, self.read_timeout = open_timeout, read_timeout
        self._cap: cv2.VideoCapture | None = None

    def open(self) -> bool:
        src = self.camera.source
        if isinstance(src, int):
            cap = cv2.VideoCapture(src)
        else:
            cap = cv2.VideoCapture(src, cv2.CAP_FFMPEG, [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout * 1000)])
        if cap.isOpened():
            self._cap = cap
            return True
        cap.release()
        return False

    def frames(self) -> Iterator[np.ndarray]:
        cap, self._cap = self._cap, None
        if cap is None:
            raise RuntimeError(f"camera '{self.camera.id}': open() the live source before frames()")
        try:
            while True:
                ok, image = cap.read()
                if not ok or image is None:
                    return
                self.counters.frames_read += 1
                yield image
        finally:
            cap.release()


def make_source(camera: CameraConfig, counters: ReaderStats, open_timeout: float = 10.0,
                read_timeout: float = 5.0) -> VideoFileSource | ImageFolderSource | LiveSource:
    """The source object for ``camera.kind`` (file, folder, url or webcam)."""
    kind = camera.kind
    if kind == "file":
        return VideoFileSource(camera, counters)
    if kind == "folder":
        return ImageFolderSource(camera, counters)
    return LiveSource(camera, counters, open_timeout, read_timeout)
