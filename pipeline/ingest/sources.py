"""Per-source frame reading for :class:`pipeline.ingest.CameraReader`.

Video files (seek to ``start_frame``, grab stride-skipped frames without decoding), image
folders (natural order, unreadable images skipped and counted) and live URLs / webcams
(FFmpeg connect and read timeouts). Images are BGR uint8 arrays (H, W, 3).
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from .config import IMAGE_EXTENSIONS, CameraConfig

log = logging.getLogger("pipeline.ingest")  # the ingestion logger, shared with CameraReader

DEFAULT_FOLDER_FPS = 10.0


class IngestError(RuntimeError):
    """A camera source that cannot be read at all (raised by ``start()``, names the source)."""


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


class SourceReadMixin:
    """Opening and decoding of each kind of source (mixed into CameraReader, not used alone).

    Relies on the reader's ``camera``, ``meta``, counters ``_n``, ``_last_error``, ``_fps`` and the
    FFmpeg ``open_timeout`` / ``read_timeout`` seconds that ``CameraReader.__init__`` sets.
    """

    camera: CameraConfig
    meta: dict
    open_timeout: float
    read_timeout: float
    _n: dict[str, int]
    _last_error: str | None
    _fps: float

    # -- video files ----------------------------------------------------------------------

    def _open_file(self) -> tuple[cv2.VideoCapture, np.ndarray]:
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
        self._fps = float(fps)
        cap = seek_frame(cap, cam.start_frame, lambda: cv2.VideoCapture(path))
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            if cam.start_frame > 0 and 0 < total <= cam.start_frame:
                raise IngestError(f"camera '{cam.id}': start_frame {cam.start_frame} is past the end of "
                                  f"{path} ({total} frames); lower start_frame")
            raise IngestError(f"camera '{cam.id}': cannot decode any frame of video file {path}; "
                              "the file is corrupt or its codec is not supported by OpenCV's FFmpeg")
        self._n["frames_read"] += 1
        self._check_roi(first.shape, path)
        h, w = first.shape[:2]
        self.meta.update(fps=self._fps, frame_count=total, width=w, height=h)
        return cap, first

    def _file_frames(self, cap: cv2.VideoCapture, first: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """(source index, image) of the kept frames; stride-skipped frames are grabbed, not decoded."""
        cam, end = self.camera, self.camera.end_frame
        total = self.meta.get("frame_count", 0)
        index, image = cam.start_frame, first
        try:
            while True:
                yield index, image
                for _ in range(cam.stride):
                    index += 1
                    if end is not None and index >= end:
                        return
                    ok = cap.grab()
                    if not ok:
                        if total and index < total:
                            self._last_error = f"decoding stopped at frame {index} of {total}"
                            log.warning("camera %s: %s", cam.id, self._last_error)
                        return
                    self._n["frames_read"] += 1
                ok, image = cap.retrieve()
                if not ok or image is None:
                    self._last_error = f"cannot decode frame {index}"
                    log.warning("camera %s: %s; ending the file here", cam.id, self._last_error)
                    return
        finally:
            cap.release()

    # -- image folders --------------------------------------------------------------------

    def _open_folder(self) -> tuple[list[Path], range, int, np.ndarray]:
        """List the folder and decode its first readable image in range (IngestError if none)."""
        cam, folder = self.camera, str(self.camera.source)
        files = list_images(folder) if Path(folder).is_dir() else []
        self._fps = cam.fps or DEFAULT_FOLDER_FPS
        stop = len(files) if cam.end_frame is None else min(cam.end_frame, len(files))
        indices = range(cam.start_frame, stop, cam.stride)
        if not indices:
            raise IngestError(f"camera '{cam.id}': image folder {folder} has {len(files)} images, none in "
                              f"start_frame {cam.start_frame} .. end_frame {cam.end_frame}; fix the range")
        for k, index in enumerate(indices):
            image = self._imread(files[index])
            if image is not None:
                self._check_roi(image.shape, files[index])
                h, w = image.shape[:2]
                self.meta.update(fps=self._fps, frame_count=len(files), width=w, height=h)
                return files, indices[k + 1:], index, image
        raise IngestError(f"camera '{cam.id}': none of the {len(indices)} images of folder {folder} "
                          "can be read; check that they are valid JPEG/PNG files")

    def _folder_frames(self, files: list[Path], rest: range, first_index: int,
                       first: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        yield first_index, first
        for index in rest:
            image = self._imread(files[index])
            if image is not None:
                yield index, image

    def _imread(self, path: Path) -> np.ndarray | None:
        """Decode one image; an unreadable one is counted, logged and returned as None."""
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            self._n["frames_skipped"] += 1
            self._last_error = f"unreadable image {path}"
            log.warning("camera %s: skipping unreadable image %s", self.camera.id, path)
            return None
        self._n["frames_read"] += 1
        return image

    # -- live sources ---------------------------------------------------------------------

    def _open_live(self) -> cv2.VideoCapture | None:
        src = self.camera.source
        if isinstance(src, int):
            cap = cv2.VideoCapture(src)
        else:
            cap = cv2.VideoCapture(src, cv2.CAP_FFMPEG, [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout * 1000)])
        if cap.isOpened():
            return cap
        cap.release()
        return None

    # -- frame size -----------------------------------------------------------------------

    def _check_roi(self, shape: tuple[int, ...], what: str) -> None:
        roi = self.camera.roi
        h, w = shape[:2]
        if roi is not None and (roi[2] > w or roi[3] > h):
            raise IngestError(f"camera '{self.camera.id}': roi {list(roi)} does not fit the {w}x{h} frames "
                              f"of {what}; use x2 <= {w} and y2 <= {h}")

