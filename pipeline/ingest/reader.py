"""Camera ingestion: one daemon reader thread per camera feeding a bounded queue of Frames.

Sources (see :class:`pipeline.config.CameraConfig`): video files, image folders, rtsp/http
URLs and webcam indices. Files and folders are *finite*: the reader blocks when its queue is
full (no frame is lost), stamps frame ``i`` with ``start_time + i / fps`` and ends with an end
marker. URLs and webcams are *live*: frames are stamped with wall-clock time, the oldest
queued frame is dropped when the queue is full (bounded latency, counted in the stats), and
a stream that fails to open or drops is reopened with exponential back-off while the other
cameras keep running.

    with MultiCameraReader(cfg.cameras, queue_size=8) as cams:
        for batch in cams:              # list[Frame], at most one per camera
            ...
        cams.stats                      # {camera_id: ReaderStats}

This module runs the reader threads and queues; opening and decoding each kind of source is the
source objects' part (:mod:`pipeline.ingest.sources`).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np

from pipeline.config import CameraConfig
from pipeline.types import Frame

from .sources import LiveSource, ReaderStats, make_source

log = logging.getLogger("pipeline.ingest")  # one logger for readers and sources

_END = object()  # end-of-stream marker put in a reader's queue


def camera_state(reader_state: str, ended: bool) -> str:
    """The stored state of a camera (``camera_status.state``) from its reader's ``ReaderStats.state`` and
    whether the run has taken its last frame (``ended``: source done or ``--max-frames`` reached): a reader
    that finished still has queued frames to hand out, so the camera stays live until they are taken."""
    if ended:
        return "failed" if reader_state == "failed" else "ended"
    return "reconnecting" if reader_state == "reconnecting" else "live"


class CameraReader:
    """Reads one camera on a daemon thread into a bounded queue; ``get()`` returns Frames.

    queue_size: max frames waiting (>= 1).
    run_start: epoch seconds used as ``start_time`` of files/folders that do not set one.
    backoff_initial / backoff_max: seconds to wait before reconnecting a live source
    (doubling after each failure, reset after a frame arrives).
    open_timeout / read_timeout: seconds FFmpeg waits for a URL to connect / deliver a frame.
    wakeup: an Event set after every queued item (MultiCameraReader waits on it).
    """

    def __init__(self, camera: CameraConfig, queue_size: int = 8, run_start: float | None = None,
                 backoff_initial: float = 0.5, backoff_max: float = 10.0,
                 open_timeout: float = 10.0, read_timeout: float = 5.0,
                 wakeup: threading.Event | None = None) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.camera = camera
        self.run_start = time.time() if run_start is None else run_start
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self._n = ReaderStats(camera.id)
        self.source = make_source(camera, self._n, open_timeout, read_timeout)
        self._q: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._wakeup = wakeup
        self._thread: threading.Thread | None = None
        self._ended = False
        self._roi_warned = False
        self._origin = (0, 0) if camera.roi is None else (int(camera.roi[0]), int(camera.roi[1]))
        self._t0 = self.run_start if camera.start_time is None else camera.start_time

    # -- public API -----------------------------------------------------------------------

    @property
    def meta(self) -> dict:
        """kind and source; files and folders also fps, frame_count, width and height once started."""
        return self.source.meta

    @property
    def stats(self) -> ReaderStats:
        finished = self._thread is not None and not self._thread.is_alive()
        return replace(self._n, finished=finished)

    @property
    def ended(self) -> bool:
        """True once the last frame has been taken: the source ended (or the reader stopped)."""
        return self._ended

    def start(self) -> CameraReader:
        """Open the source and start the thread. Files/folders that cannot be read raise IngestError."""
        if self._thread is not None:
            raise RuntimeError(f"camera '{self.camera.id}': reader already started")
        if isinstance(self.source, LiveSource):
            target, args = self._run_live, ()
        else:
            self.source.open()
            target, args = self._run_finite, (self.source.frames(),)
        self._thread = threading.Thread(target=target, args=args, daemon=True,
                                        name=f"camera-{self.camera.id}")
        self._thread.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Ask the thread to stop and wait up to ``timeout`` seconds for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.debug("camera %s: reader still blocked in the source; left as daemon", self.camera.id)

    def get(self, timeout: float | None = None) -> Frame | None:
        """The next Frame, or None if none arrived within ``timeout`` s or the source ended (see ``ended``)."""
        if self._thread is None:
            raise RuntimeError(f"camera '{self.camera.id}': call start() before get()")
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ended:
            wait = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            try:
                item = self._q.get(timeout=wait) if wait > 0 else self._q.get_nowait()
            except queue.Empty:
                gone = self._stop.is_set() or not self._thread.is_alive()
                if gone and self._q.empty():
                    self._ended = True
                elif deadline is not None and time.monotonic() >= deadline:
                    return None
                continue
            if item is _END:
                self._ended = True
                return None
            return item
        return None

    def __iter__(self) -> Iterator[Frame]:
        while not self._ended:
            frame = self.get()
            if frame is not None:
                yield frame

    def __enter__(self) -> CameraReader:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- reader threads: finite sources --------------------------------------------------

    def _run_finite(self, frames: Iterator[tuple[int, np.ndarray]]) -> None:
        try:
            for index, image in frames:
                if self._stop.is_set():
                    break
                image = self._crop(image)
                if image is None:
                    continue
                frame = Frame(self.camera.id, index, self._t0 + index / self.source.fps, image, self._origin)
                if not self._put_blocking(frame):
                    break
                self._n.frames_delivered += 1
            self._n.state = "ended"
        except Exception as e:  # noqa: BLE001 - one bad camera must not kill the others
            self._n.last_error = f"{type(e).__name__}: {e}"
            self._n.state = "failed"
            log.exception("camera %s: reader failed", self.camera.id)
        finally:
            frames.close()  # type: ignore[attr-defined]
            self._put_blocking(_END)  # skipped when stopped: get() then ends on an empty queue

    # -- reader threads: live sources ----------------------------------------------------

    def _run_live(self) -> None:
        cam, source, n = self.camera, self.source, self._n
        backoff, index, connected_before = self.backoff_initial, 0, False
        try:
            while not self._stop.is_set():
                if not source.open():
                    n.open_failures += 1
                    n.last_error = f"cannot connect to {cam.source}"
                else:
                    if connected_before:
                        n.reconnects += 1
                        log.info("camera %s: reconnected to %s", cam.id, cam.source)
                    connected_before = True
                    got = 0
                    frames = source.frames()
                    try:
                        for image in frames:
                            if self._stop.is_set():
                                break
                            stamp = time.time()
                            got += 1
                            backoff = self.backoff_initial
                            n.state = "live"
                            if index % cam.stride == 0:
                                cropped = self._crop(image)
                                if cropped is not None:
                                    self._put_dropping(Frame(cam.id, index, stamp, cropped, self._origin))
                                    n.frames_delivered += 1
                            index += 1
                    finally:
                        frames.close()
                    if self._stop.is_set():
                        break
                    n.last_error = f"stream {cam.source} dropped after {got} frames"
                if not cam.reconnect:
                    log.warning("camera %s: %s; reconnect is off, camera ends", cam.id, n.last_error)
                    n.state = "failed"
                    break
                log.warning("camera %s: %s; retrying in %.1f s", cam.id, n.last_error, backoff)
                n.state = "reconnecting"
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.backoff_max)
        except Exception as e:  # noqa: BLE001
            n.last_error = f"{type(e).__name__}: {e}"
            n.state = "failed"
            log.exception("camera %s: reader failed", cam.id)
        finally:
            if n.state != "failed":
                n.state = "ended"
            if not self._stop.is_set():
                self._put_dropping(_END)

    # -- helpers --------------------------------------------------------------------------

    def _put_blocking(self, item) -> bool:
        """Queue ``item``, waiting while the queue is full; False if stopped first."""
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
            except queue.Full:
                continue
            if self._wakeup is not None:
                self._wakeup.set()
            return True
        return False

    def _put_dropping(self, item) -> bool:
        """Queue ``item`` now, discarding the oldest queued frame if the queue is full."""
        while True:
            try:
                self._q.put_nowait(item)
                break
            except queue.Full:
                try:
                    self._q.get_nowait()
                    self._n.frames_dropped += 1
                except queue.Empty:
                    pass
        if self._wakeup is not None:
            self._wakeup.set()
        return True

    def _crop(self, image: np.ndarray) -> np.ndarray | None:
        """Crop to the ROI (clipped to the image, with a warning once); None if nothing is left."""
        roi = self.camera.roi
        if roi is None:
            return image
        h, w = image.shape[:2]
        x1, y1, x2, y2 = roi
        cx2, cy2 = min(x2, w), min(y2, h)
        if (cx2, cy2) != (x2, y2) and not self._roi_warned:
            self._roi_warned = True
            log.warning("camera %s: roi %s exceeds the %dx%d frame; clipping it", self.camera.id, list(roi), w, h)
        if cx2 <= x1 or cy2 <= y1:
            self._n.frames_skipped += 1
            return None
        return np.ascontiguousarray(image[y1:cy2, x1:cx2])


class MultiCameraReader:
    """Runs one CameraReader per camera and hands out batches of at most one Frame per camera.

    Iterating yields non-empty batches until every source has ended (live sources run until
    ``stop()``). ``reader_kwargs`` go to each CameraReader (backoff_initial, read_timeout, ...).
    """

    def __init__(self, cameras: Sequence[CameraConfig], queue_size: int = 8,
                 run_start: float | None = None, **reader_kwargs) -> None:
        if not cameras:
            raise ValueError("MultiCameraReader needs at least one camera")
        self.run_start = time.time() if run_start is None else run_start
        self._wakeup = threading.Event()
        self.readers: dict[str, CameraReader] = {
            cam.id: CameraReader(cam, queue_size, self.run_start, wakeup=self._wakeup, **reader_kwargs)
            for cam in cameras}
        self._started: list[CameraReader] = []

    @property
    def stats(self) -> dict[str, ReaderStats]:
        return {cid: r.stats for cid, r in self.readers.items()}

    @property
    def finished(self) -> bool:
        """True when every reader has ended and all their frames were handed out."""
        return all(r.ended for r in self.readers.values())

    def start(self) -> MultiCameraReader:
        """Start all readers; if one cannot be opened (IngestError), stop the others and re-raise."""
        try:
            for r in self.readers.values():
                r.start()
                self._started.append(r)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Stop every reader; waits at most ``timeout`` seconds in total."""
        for r in self._started:
            r._stop.set()
        deadline = time.monotonic() + timeout
        for r in self._started:
            r.stop(max(0.0, deadline - time.monotonic()))

    def next_batch(self, timeout: float = 1.0) -> list[Frame]:
        """Frames available now, at most one per camera; waits up to ``timeout`` s for the first.

        Returns [] on timeout or when ``finished``.
        """
        deadline = time.monotonic() + timeout
        while True:
            self._wakeup.clear()
            batch = []
            for r in self.readers.values():
                if not r.ended:
                    frame = r.get(timeout=0)
                    if frame is not None:
                        batch.append(frame)
            remaining = deadline - time.monotonic()
            if batch or self.finished or remaining <= 0:
                return batch
            self._wakeup.wait(min(remaining, 0.1))

    def __iter__(self) -> Iterator[list[Frame]]:
        while not self.finished:
            batch = self.next_batch(timeout=0.5)
            if batch:
                yield batch

    def __enter__(self) -> MultiCameraReader:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
