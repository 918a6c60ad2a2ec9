"""The backend-neutral part of the store: result types, :class:`StoreError` and the one check that a
store exists. A backend (SQLite today) returns these types; nothing here knows SQL.

Times are epoch seconds (UTC); frames are 0-based source frame indices; boxes are pixels of the
full source frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config.schema import STORE_URL_SCHEMES


class StoreError(RuntimeError):
    """A store that cannot be opened or written as asked; the message is one line."""


class StoreBusyError(StoreError):
    """Another writer holds the store (see :mod:`.lock`); the message names its run and pid."""


class StoreWriteError(RuntimeError):
    """Writing or committing a store failed midway (disk full, I/O error): not the user's input.

    The message names the store and what was lost; everything committed before is kept."""


def require_store(path: str | Path) -> Path:
    """``path`` as a Path if a store file is there; StoreError naming it and the fix otherwise (also for
    a PostgreSQL URL: the commands that call this, adapt and reembed, work on store files only)."""
    if isinstance(path, str) and path.strip().lower().startswith(STORE_URL_SCHEMES):
        raise StoreError("this command works on a SQLite store file only, not a PostgreSQL URL: run it on a "
                         "file store (pipeline export can copy what you need), or pass a --db file")
    path = Path(path)
    if path.is_dir():
        raise StoreError(f"store path {path} is a folder: pass a file path such as {path / 'store.db'}")
    if not path.is_file():
        raise StoreError(f"no store at {path}: run `python -m pipeline run` first or check --db")
    return path


CAMERA_STATES = ("live", "reconnecting", "ended", "failed")
"""What ``camera_status.state`` holds: reading frames, waiting to reconnect a dropped stream, source ended,
reader gave up (an error, or a dropped live stream with ``reconnect: false``)."""


@dataclass(frozen=True)
class CameraStatusRecord:
    """A camera's stored heartbeat (``camera_status`` row): state (one of CAMERA_STATES), frames read by
    run ``run_id``, fps (frames/s over the last heartbeat interval), last_frame_time and updated (epoch s)."""

    camera_id: str
    run_id: int | None
    state: str
    frames: int
    fps: float | None
    last_frame_time: float | None
    last_error: str | None
    updated: float


@dataclass(frozen=True)
class TrackRecord:
    """One track row: a camera-local track of one run. Times in epoch seconds, frames 0-based."""

    id: int
    run_id: int
    camera_id: str
    local_id: int
    start_time: float
    end_time: float
    start_frame: int
    end_frame: int
    n_boxes: int
    n_samples: int
    ended: bool
    global_id: int | None


@dataclass(frozen=True)
class Samples:
    """N appearance samples: parallel arrays.

    id, track_id, frame: (N,) int64; time, confidence: (N,) float64/float32; xyxy: (N, 4) float32;
    embedding: (N, D) float32 L2-normalised; thumbnails: N JPEG bytes (or None) when asked for.
    """

    id: np.ndarray
    track_id: np.ndarray
    frame: np.ndarray
    time: np.ndarray
    xyxy: np.ndarray
    confidence: np.ndarray
    embedding: np.ndarray
    thumbnails: tuple[bytes | None, ...] | None = None

    def __len__(self) -> int:
        return len(self.id)


@dataclass(frozen=True)
class Boxes:
    """N tracked boxes: track_id, frame (N,) int64; time (N,) float64; xyxy (N, 4); confidence (N,);
    interpolated (N,) bool: filled in by the tracker for a frame the track missed (None: not read)."""

    track_id: np.ndarray
    frame: np.ndarray
    time: np.ndarray
    xyxy: np.ndarray
    confidence: np.ndarray
    interpolated: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.track_id)


@dataclass(frozen=True)
class RunCounts:
    """What one run left in the store: its tracks and their samples; identities holding any of its
    tracks, and how many of those were seen on two or more cameras (over every run of the store)."""

    tracks: int = 0
    samples: int = 0
    identities: int = 0
    cross_camera: int = 0
