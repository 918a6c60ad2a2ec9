"""What the pages show, read from the store through one read-only :class:`StoreReader`, always
limited to the cameras the user may see (:meth:`User.sees`): identities, tracks, thumbnails, cameras.

Nothing here writes; corrections, erasure and exports go through :mod:`pipeline.access`.
A camera-scoped user asking for another camera's track, sample or identity gets ``None`` (the
route answers 404, the same as for an id that does not exist, so ids cannot be probed).
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import StoreConfig
from pipeline.store import CameraStatusRecord, StoreReader, TrackRecord
from pipeline.store.lock import lock_path


def visible_cameras(reader: StoreReader, user) -> list[str]:
    """Camera ids of the store the user may see, sorted."""
    return [c for c, _, _ in reader.cameras() if user.sees(c)]


def visible_track(reader: StoreReader, user, track_id: int) -> TrackRecord | None:
    rows = reader.tracks(track_ids=[int(track_id)])
    return rows[0] if rows and user.sees(rows[0].camera_id) else None


def sample_thumbnail(reader: StoreReader, user, sample_id: int) -> bytes | None:
    """JPEG bytes of a sample's thumbnail, or None if absent or on a camera the user may not see."""
    samples = reader.samples_by_id([int(sample_id)], thumbnails=True)
    if len(samples) == 0 or visible_track(reader, user, int(samples.track_id[0])) is None:
        return None
    return samples.thumbnails[0]


@dataclass(frozen=True)
class TrackView:
    """A track on the identity page: its row, its best sample (highest detector confidence) and
    every sample id (ordered by time) for the thumbnail strip."""

    track: TrackRecord
    best_sample: int | None
    sample_ids: tuple[int, ...]
    method: str | None  # how it was linked to its identity (last link), e.g. "auto", "manual"


@dataclass(frozen=True)
class IdentityView:
    """An identity's visible tracks per camera; times in epoch seconds."""

    global_id: int | None
    cameras: dict[str, list[TrackView]]
    start_time: float
    end_time: float

    @property
    def tracks(self) -> list[TrackView]:
        return [t for views in self.cameras.values() for t in views]


def _track_views(reader: StoreReader, tracks: Sequence[TrackRecord]) -> list[TrackView]:
    samples = reader.samples_of([t.id for t in tracks])
    methods: dict[int, str] = {}
    ids = {t.id for t in tracks}
    for tid, _gid, _score, method in reader.links():
        if tid in ids:
            methods[tid] = method
    out = []
    for t in tracks:
        rows = np.flatnonzero(samples.track_id == t.id)
        rows = rows[np.argsort(samples.time[rows], kind="stable")]
        best = int(samples.id[rows[np.argmax(samples.confidence[rows])]]) if len(rows) else None
        out.append(TrackView(t, best, tuple(int(samples.id[r]) for r in rows), methods.get(t.id)))
    return out


def identity_view(reader: StoreReader, user, global_id: int | None = None,
                  track_id: int | None = None) -> IdentityView | None:
    """The identity ``global_id`` (or the lone track ``track_id`` without one); None when the user
    sees none of its tracks."""
    if global_id is not None:
        tracks = [t for t in reader.tracks(global_ids=[int(global_id)]) if user.sees(t.camera_id)]
    else:
        t = visible_track(reader, user, int(track_id))
        if t is not None and t.global_id is not None:
            return identity_view(reader, user, global_id=t.global_id)
        tracks = [t] if t is not None else []
    if not tracks:
        return None
    cameras: dict[str, list[TrackView]] = {}
    for view in _track_views(reader, sorted(tracks, key=lambda t: (t.camera_id, t.start_time))):
        cameras.setdefault(view.track.camera_id, []).append(view)
    return IdentityView(global_id, cameras, min(t.start_time for t in tracks), max(t.end_time for t in tracks))


@dataclass(frozen=True)
class IdentityRow:
    """A line of the identities list: global id, cameras, tracks, first and last time, a thumbnail sample."""

    global_id: int
    cameras: tuple[str, ...]
    n_tracks: int
    start_time: float
    end_time: float
    track_id: int


def list_identities(reader: StoreReader, user, page: int, page_size: int) -> tuple[list[IdentityRow], bool]:
    """The user's visible identities, most recently seen first, one page; and whether more follow."""
    cams = visible_cameras(reader, user)
    if not cams:
        return [], False
    by_gid: dict[int, list[TrackRecord]] = {}
    for t in reader.tracks(camera=cams, linked=True):
        by_gid.setdefault(t.global_id, []).append(t)
    rows = [IdentityRow(g, tuple(sorted({t.camera_id for t in ts})), len(ts), min(t.start_time for t in ts),
                        max(t.end_time for t in ts), max(ts, key=lambda t: t.n_samples).id)
            for g, ts in by_gid.items()]
    rows.sort(key=lambda r: (-r.end_time, r.global_id))
    lo = (page - 1) * page_size
    return rows[lo:lo + page_size], len(rows) > lo + page_size


# ----------------------------------------------------------------------------- cameras
@dataclass(frozen=True)
class CameraStatus:
    """A camera on the cameras page.

    From the camera's heartbeat row (``camera_status``, written by the run that reads it, schema v5):
    status = its stored state ("live", "reconnecting", "ended", "failed"), or "stopped" for a live or
    reconnecting row whose run no longer writes the store or that was not updated for
    ``STALE_INTERVALS`` commit intervals (the run died); fps: frames/s the run measured over its last
    heartbeat interval; last_time: time (epoch s) of the camera's last frame read; frames: frames read
    by that run; last_error: the reader's last error.
    A camera without a row (a store written before v5) falls back to inference from the stored boxes:
    "live" (a run is writing and the camera's newest box is recent), "reconnecting" (nothing new for
    ``stall_seconds``: its stream dropped, or nobody is in view), "ended" (no run is writing); fps
    measured between page loads; last_time = the newest box's time.
    last_frame: frame index of the newest stored box (the snapshot), None before any.
    """

    camera_id: str
    kind: str
    status: str
    fps: float | None
    nominal_fps: float | None
    last_time: float | None
    last_frame: int | None
    n_tracks: int
    frames: int | None = None
    last_error: str | None = None


STALE_INTERVALS = 3.0
"""A live heartbeat older than this many of its run's commit intervals means the run stopped."""


def writer_active(reader: StoreReader) -> bool:
    """True when a run is writing the store. A store file: its last run is not finished and the pid
    holding the writer lock (``<store>.lock``) is alive. A PostgreSQL store: an unfinished run's writer
    holds its run lock (see :mod:`pipeline.store.postgres`)."""
    if reader.shared:
        return reader.live_runs() != set()
    runs = reader.runs()
    if not runs or runs[-1][2] is not None:
        return False
    try:
        pid = int(json.loads(lock_path(reader.path).read_text()).get("pid") or 0)
    except (OSError, ValueError, AttributeError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CameraMonitor:
    """Remembers, per camera, when its newest box last changed (wall clock) to tell live from
    reconnecting and measure frames/s while a run writes."""

    def __init__(self, stall_seconds: float = 30.0, clock=time.monotonic) -> None:
        self.stall_seconds, self.clock = stall_seconds, clock
        self._seen: dict[str, tuple[int, float, float | None]] = {}  # camera -> (frame, when changed, fps)
        self._lock = threading.Lock()

    def statuses(self, reader: StoreReader, user) -> list[CameraStatus]:
        active = writer_active(reader)
        stored = reader.camera_statuses()
        out = []
        now = self.clock()
        for cam, _source, meta in reader.cameras():
            if not user.sees(cam):
                continue
            tracks = reader.tracks(camera=cam)
            last = max(tracks, key=lambda t: t.end_time) if tracks else None
            nominal = float(meta["fps"]) if meta.get("fps") else None
            frame = last.end_frame if last else None
            row = stored.get(cam)
            if row is not None:
                out.append(CameraStatus(cam, str(meta.get("kind", "")), stored_state(reader, row, active),
                                        row.fps, nominal, row.last_frame_time, frame, len(tracks), row.frames,
                                        row.last_error))
                continue
            with self._lock:
                prev = self._seen.get(cam)
                fps = prev[2] if prev else None
                if frame is not None and (prev is None or frame != prev[0]):
                    if prev is not None and now > prev[1]:
                        fps = (frame - prev[0]) / (now - prev[1])
                    self._seen[cam] = (frame, now, fps)
                changed = self._seen.get(cam, (None, now, None))[1]
            if not active:
                status, fps = "ended", None
            else:
                status = "live" if now - changed < self.stall_seconds else "reconnecting"
            out.append(CameraStatus(cam, str(meta.get("kind", "")), status, fps if status == "live" else None,
                                    nominal, last.end_time if last else None, frame, len(tracks)))
        return out


def stored_state(reader: StoreReader, row: CameraStatusRecord, active: bool, now: float | None = None) -> str:
    """The status shown for a heartbeat row: its state, or "stopped" for a live/reconnecting row whose run
    no longer writes the store (``active``: :func:`writer_active`) or whose heartbeat is stale."""
    if row.state not in ("live", "reconnecting"):
        return row.state
    runs = {r[0]: r for r in reader.runs()}
    run = runs.get(row.run_id)
    if reader.shared:
        writing = row.run_id in reader.live_runs()
    else:
        writing = active and run is not None and row.run_id == max(runs)
    store_cfg = (run[3] if run else {}).get("store") or {}
    interval = float(store_cfg.get("commit_interval") or StoreConfig().commit_interval)
    now = time.time() if now is None else now
    if not writing or now - row.updated > STALE_INTERVALS * interval:
        return "stopped"
    return row.state


def camera_source(reader: StoreReader, camera_id: str) -> tuple[Path | None, dict]:
    """(source file path if the camera reads a file that exists, else None; the camera's meta)."""
    for cam, source, meta in reader.cameras():
        if cam == camera_id:
            path = Path(source)
            return (path if meta.get("kind", "file") == "file" and path.is_file() else None), meta
    return None, {}
