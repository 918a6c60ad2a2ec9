"""Persistent record of cameras, runs, tracks, boxes, samples and global identities (SQLite, WAL).

One file holds everything a run produced; later runs append to it. Writes are batched in
transactions that :meth:`TrackStore.maybe_commit` closes every ``commit_interval`` seconds, so a
crash or ``kill -9`` loses at most that much work and never leaves a half-written batch (SQLite's
WAL journal makes each commit all-or-nothing). One run writes a store at a time; readers (query,
export) may open it while a run is writing.

Embeddings are float32 L2-normalised vectors stored as BLOBs; search keeps them in a numpy
matrix in RAM and filters rows in SQL (see ../shared/MEASURED.md: exact search over
SQL-filtered rows beats ANN indexes under selective camera/time filters).
Times are seconds since the Unix epoch (UTC); frames are 0-based source frame indices; boxes
are pixels of the full source frame (a camera's roi offset ``Frame.origin`` is added on write).

This module opens the store, creates its schema and writes it; the read queries and their
result types (TrackRecord, Samples, Boxes) live in :mod:`pipeline.store_read`.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .store_read import Boxes, Samples, StoreReadMixin, TrackRecord
from .types import Detections, Frame

__all__ = ["PAGE_SIZE", "SCHEMA_VERSION", "Boxes", "Samples", "StoreError", "TrackRecord", "TrackStore"]

SCHEMA_VERSION = 1
PAGE_SIZE = 16384

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL NOT NULL, finished REAL,
                   config TEXT NOT NULL);
CREATE TABLE cameras (id TEXT PRIMARY KEY, source TEXT NOT NULL, meta TEXT NOT NULL DEFAULT '{}');
CREATE TABLE identities (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL,
                         n_tracks INTEGER NOT NULL DEFAULT 0);
CREATE TABLE tracks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    camera_id TEXT NOT NULL REFERENCES cameras(id),
    local_id INTEGER NOT NULL,
    start_time REAL NOT NULL, end_time REAL NOT NULL,
    start_frame INTEGER NOT NULL, end_frame INTEGER NOT NULL,
    n_boxes INTEGER NOT NULL DEFAULT 0, n_samples INTEGER NOT NULL DEFAULT 0,
    ended INTEGER NOT NULL DEFAULT 0,
    global_id INTEGER REFERENCES identities(id),
    embedding BLOB,
    UNIQUE (run_id, camera_id, local_id));
CREATE INDEX tracks_camera_time ON tracks(camera_id, start_time);
CREATE INDEX tracks_end_time ON tracks(end_time);
CREATE INDEX tracks_global ON tracks(global_id);
CREATE INDEX tracks_pending ON tracks(ended, global_id);
CREATE TABLE boxes (
    track_id INTEGER NOT NULL REFERENCES tracks(id), frame INTEGER NOT NULL, time REAL NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL, confidence REAL NOT NULL,
    PRIMARY KEY (track_id, frame)) WITHOUT ROWID;
CREATE TABLE samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    track_id INTEGER NOT NULL REFERENCES tracks(id), frame INTEGER NOT NULL, time REAL NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL, confidence REAL NOT NULL,
    embedding BLOB NOT NULL, thumbnail BLOB);
CREATE INDEX samples_track ON samples(track_id);
CREATE TABLE links (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    track_id INTEGER NOT NULL REFERENCES tracks(id),
    global_id INTEGER NOT NULL REFERENCES identities(id),
    score REAL, method TEXT NOT NULL, created REAL NOT NULL);
CREATE INDEX links_track ON links(track_id);
"""


class StoreError(RuntimeError):
    """A store that cannot be opened or written as asked; the message is one line."""


@dataclass
class _OpenTrack:
    pk: int
    start_time: float
    end_time: float
    start_frame: int
    end_frame: int
    n_boxes: int
    n_samples: int
    emb_sum: np.ndarray | None = field(default=None, repr=False)
    dirty: bool = True


def _full_frame(frame: Frame, xyxy: np.ndarray) -> tuple[float, float, float, float]:
    """A box in ``frame.image`` pixels -> (x1, y1, x2, y2) in the full source frame (adds the roi origin)."""
    ox, oy = frame.origin
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return x1 + ox, y1 + oy, x2 + ox, y2 + oy


def _blob(vec: np.ndarray) -> bytes:
    return np.ascontiguousarray(vec, dtype=np.float32).tobytes()


class TrackStore(StoreReadMixin):
    """SQLite record of one or more pipeline runs.

    ``TrackStore(path, embedder_id, embedding_dim, embedder_spec)`` creates or opens a store for
    writing; a store built with another embedder is refused with :class:`StoreError`.
    ``TrackStore(path)`` opens an existing store for reading (query, export) with whatever
    embedder it was built with (see :attr:`embedder_spec`). The read queries (tracks, samples_of,
    boxes, sample_matrix, ...) come from :class:`pipeline.store_read.StoreReadMixin`.
    """

    def __init__(self, path: str | Path, embedder_id: str | None = None, embedding_dim: int | None = None,
                 embedder_spec: dict | None = None, *, commit_interval: float = 1.0) -> None:
        self.path = Path(path)
        self.commit_interval = float(commit_interval)
        self.run_id: int | None = None
        self._lock = threading.RLock()
        self._open: dict[tuple[str, int], _OpenTrack] = {}
        self._known_cameras: set[str] = set()
        self._last_commit = time.monotonic()
        self._cache_ids = np.zeros(0, np.int64)
        self._cache_tracks = np.zeros(0, np.int64)
        self._cache_emb: np.ndarray | None = None
        self._closed = False
        if self.path.is_dir():
            raise StoreError(f"store path {self.path} is a folder: pass a file path such as "
                             f"{self.path / 'store.db'}")
        if not self.path.exists() and embedder_id is None:
            raise StoreError(f"no store at {self.path}: run `python -m pipeline run` first or check --db")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=10.0)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open store {self.path} ({e}): check the path and its permissions") from None
        try:
            self._setup(embedder_id, embedding_dim, embedder_spec)
        except sqlite3.DatabaseError as e:
            self._con.close()
            if "not a database" in str(e) or "malformed" in str(e):
                raise StoreError(f"{self.path} is not a track store ({e}): pass another --db path") from None
            raise StoreError(f"cannot open store {self.path} ({e}): check the path and its permissions") from None
        except StoreError:
            self._con.close()
            raise

    # ---------------------------------------------------------------- opening
    def _setup(self, embedder_id, embedding_dim, embedder_spec) -> None:
        con = self._con
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            if embedder_id is None or embedding_dim is None:
                raise StoreError(f"{self.path} is an empty database, not a track store: "
                                 "run `python -m pipeline run` first")
            con.execute(f"PRAGMA page_size={PAGE_SIZE}")  # before the first table, and before WAL
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("BEGIN")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    con.execute(stmt)
            meta = {"schema_version": str(SCHEMA_VERSION), "embedder_id": embedder_id,
                    "embedding_dim": str(int(embedding_dim)), "embedder_spec": json.dumps(embedder_spec or {})}
            con.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", meta.items())
            con.execute("COMMIT")
        elif "meta" not in tables:
            raise StoreError(f"{self.path} is a SQLite database but not a track store: pass another --db path")
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA foreign_keys=ON")
        meta = dict(con.execute("SELECT key, value FROM meta"))
        version = int(meta.get("schema_version", "0"))
        if version != SCHEMA_VERSION:
            raise StoreError(f"store {self.path} has schema v{version}, this code reads v{SCHEMA_VERSION}: "
                             "use a matching camreid version or another --db")
        self.embedder_id: str = meta["embedder_id"]
        self.embedding_dim: int = int(meta["embedding_dim"])
        self.embedder_spec: dict = json.loads(meta["embedder_spec"])
        if embedder_id is not None and embedder_id != self.embedder_id:
            raise StoreError(f"store {self.path} was built with embedder {self.embedder_id}; this run uses "
                             f"{embedder_id}: use another --db or the same embedder")
        if embedding_dim is not None and int(embedding_dim) != self.embedding_dim:
            raise StoreError(f"store {self.path} holds {self.embedding_dim}-d embeddings; this embedder gives "
                             f"{embedding_dim}-d: use another --db or the same embedder")

    def __enter__(self) -> TrackStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- writing
    def _write(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"store {self.path} is closed")
        if not self._con.in_transaction:
            self._con.execute("BEGIN")
        return self._con

    def start_run(self, config: dict | None = None) -> int:
        """Begin a run (config snapshot stored as JSON); returns its id.

        Tracks left open by earlier runs that never finished (killed) are marked ended, since only
        one run writes a store at a time.
        """
        with self._lock:
            con = self._write()
            con.execute("UPDATE tracks SET ended=1 WHERE ended=0 AND run_id IN "
                        "(SELECT id FROM runs WHERE finished IS NULL)")
            cur = con.execute("INSERT INTO runs(started, config) VALUES (?, ?)",
                              (time.time(), json.dumps(config or {}, default=str)))
            self.run_id = int(cur.lastrowid)
            self.commit()
            return self.run_id

    def add_camera(self, camera_id: str, source: str, meta: dict | None = None) -> None:
        """Create or update a camera row."""
        with self._lock:
            self._write().execute(
                "INSERT INTO cameras(id, source, meta) VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET source=excluded.source, meta=excluded.meta",
                (camera_id, str(source), json.dumps(meta or {}, default=str)))
            self._known_cameras.add(camera_id)

    def _track(self, con: sqlite3.Connection, frame: Frame, local_id: int) -> _OpenTrack:
        key = (frame.camera_id, local_id)
        st = self._open.get(key)
        if st is not None:
            return st
        if frame.camera_id not in self._known_cameras:
            con.execute("INSERT OR IGNORE INTO cameras(id, source) VALUES (?, '')", (frame.camera_id,))
            self._known_cameras.add(frame.camera_id)
        row = con.execute("SELECT id, start_time, end_time, start_frame, end_frame, n_boxes, n_samples, embedding "
                          "FROM tracks WHERE run_id=? AND camera_id=? AND local_id=?",
                          (self.run_id, frame.camera_id, local_id)).fetchone()
        if row is None:  # a new track
            cur = con.execute(
                "INSERT INTO tracks(run_id, camera_id, local_id, start_time, end_time, start_frame, end_frame) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self.run_id, frame.camera_id, local_id, frame.timestamp, frame.timestamp, frame.index, frame.index))
            st = _OpenTrack(int(cur.lastrowid), frame.timestamp, frame.timestamp, frame.index, frame.index, 0, 0)
        else:  # the tracker reused an id it had ended: reopen the row
            pk, t0, t1, f0, f1, nb, ns, emb = row
            mean = None if emb is None else np.frombuffer(emb, np.float32) * ns
            st = _OpenTrack(pk, t0, t1, f0, f1, nb, ns, mean)
            con.execute("UPDATE tracks SET ended=0 WHERE id=?", (pk,))
        self._open[key] = st
        return st

    def _require_run(self) -> None:
        if self.run_id is None:
            raise StoreError("store.start_run(config) must be called before recording frames")

    def record_frame(self, frame: Frame, tracks: Detections) -> None:
        """Record this frame's boxes of tracked persons (``track_id >= 0``); creates/extends track rows.

        ``tracks.xyxy`` is in ``frame.image`` pixels; it is stored in full-frame pixels (+ ``frame.origin``)."""
        with self._lock:
            self._require_run()
            con = self._write()
            rows = []
            for i in np.flatnonzero(tracks.track_id >= 0):
                st = self._track(con, frame, int(tracks.track_id[i]))
                if st.n_boxes == 0 or frame.index != st.end_frame:
                    st.n_boxes += 1
                st.start_time, st.end_time = min(st.start_time, frame.timestamp), max(st.end_time, frame.timestamp)
                st.start_frame, st.end_frame = min(st.start_frame, frame.index), max(st.end_frame, frame.index)
                st.dirty = True
                x1, y1, x2, y2 = _full_frame(frame, tracks.xyxy[i])
                rows.append((st.pk, frame.index, frame.timestamp, x1, y1, x2, y2, float(tracks.confidence[i])))
            con.executemany("INSERT OR REPLACE INTO boxes VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def add_samples(self, frame: Frame, tracks: Detections, rows: Sequence[int] | np.ndarray,
                    thumbnails: Sequence[bytes | None]) -> None:
        """Store appearance samples: ``tracks.embedding[rows]`` (L2-normalised, D = embedding_dim)
        with one JPEG thumbnail each. Updates each track's mean embedding (mean of samples, renormalised)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) == 0:
            return
        if tracks.embedding is None:
            raise StoreError("add_samples needs detections with an embedding column")
        if tracks.embedding.shape[1] != self.embedding_dim:
            raise StoreError(f"embedding has {tracks.embedding.shape[1]} dims, store {self.path} holds "
                             f"{self.embedding_dim}: use the store's embedder")
        if len(thumbnails) != len(rows):
            raise ValueError(f"{len(rows)} sample rows but {len(thumbnails)} thumbnails")
        with self._lock:
            self._require_run()
            con = self._write()
            emb = tracks.embedding[rows].astype(np.float32)
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
            out = []
            for k, i in enumerate(rows):
                local = int(tracks.track_id[i])
                if local < 0:
                    raise ValueError(f"sample row {i} has no track id")
                st = self._track(con, frame, local)
                st.emb_sum = emb[k].copy() if st.emb_sum is None else st.emb_sum + emb[k]
                st.n_samples += 1
                st.dirty = True
                x1, y1, x2, y2 = _full_frame(frame, tracks.xyxy[i])
                thumb = None if thumbnails[k] is None else sqlite3.Binary(bytes(thumbnails[k]))
                out.append((st.pk, frame.index, frame.timestamp, x1, y1, x2, y2, float(tracks.confidence[i]),
                            _blob(emb[k]), thumb))
            con.executemany("INSERT INTO samples(track_id, frame, time, x1, y1, x2, y2, confidence, embedding, "
                            "thumbnail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", out)

    def end_tracks(self, camera_id: str, local_ids: Iterable[int]) -> None:
        """Mark tracks finished (lost beyond the tracker's buffer, or end of stream)."""
        with self._lock:
            con = self._write()
            for local in local_ids:
                st = self._open.pop((camera_id, int(local)), None)
                if st is not None:
                    self._flush_track(con, st)
                    con.execute("UPDATE tracks SET ended=1 WHERE id=?", (st.pk,))

    def _flush_track(self, con: sqlite3.Connection, st: _OpenTrack) -> None:
        if not st.dirty:
            return
        emb = None
        if st.emb_sum is not None:
            emb = _blob(st.emb_sum / max(float(np.linalg.norm(st.emb_sum)), 1e-12))
        con.execute("UPDATE tracks SET start_time=?, end_time=?, start_frame=?, end_frame=?, n_boxes=?, "
                    "n_samples=?, embedding=? WHERE id=?",
                    (st.start_time, st.end_time, st.start_frame, st.end_frame, st.n_boxes, st.n_samples, emb, st.pk))
        st.dirty = False

    def commit(self) -> None:
        """Flush open tracks' extents and commit the current batch (all-or-nothing)."""
        with self._lock:
            if self._closed:
                return
            if self._open:
                con = self._write()
                for st in self._open.values():
                    self._flush_track(con, st)
            if self._con.in_transaction:
                self._con.execute("COMMIT")
            self._last_commit = time.monotonic()

    def maybe_commit(self) -> bool:
        """Commit if ``commit_interval`` seconds passed since the last commit; True if it did."""
        if time.monotonic() - self._last_commit >= self.commit_interval:
            self.commit()
            return True
        return False

    def close(self) -> None:
        """End this run's open tracks, mark the run finished, commit and close. Idempotent."""
        with self._lock:
            if self._closed:
                return
            if self.run_id is not None:
                by_cam: dict[str, list[int]] = {}
                for cam, local in self._open:
                    by_cam.setdefault(cam, []).append(local)
                for cam, ids in by_cam.items():
                    self.end_tracks(cam, ids)
                self._write().execute("UPDATE runs SET finished=? WHERE id=?", (time.time(), self.run_id))
            self.commit()
            self._closed = True
            self._con.close()

    # ------------------------------------------------------------ identities
    def new_identity(self) -> int:
        """A fresh global identity id, unique within this store across runs."""
        with self._lock:
            return int(self._write().execute("INSERT INTO identities(created) VALUES (?)", (time.time(),)).lastrowid)

    def assign_identity(self, track_id: int, global_id: int, score: float | None, method: str) -> None:
        """Give a track its global identity and record the link (audit trail in ``links``)."""
        with self._lock:
            con = self._write()
            con.execute("UPDATE tracks SET global_id=? WHERE id=?", (int(global_id), int(track_id)))
            con.execute("UPDATE identities SET n_tracks=n_tracks+1 WHERE id=?", (int(global_id),))
            con.execute("INSERT INTO links(track_id, global_id, score, method, created) VALUES (?, ?, ?, ?, ?)",
                        (int(track_id), int(global_id), None if score is None else float(score), method, time.time()))
