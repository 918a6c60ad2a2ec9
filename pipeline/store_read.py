"""Read side of the track store: result types and the queries behind query and export.

:class:`StoreReadMixin` holds :class:`pipeline.store.TrackStore`'s read methods; it is not used
on its own. Rows come back as :class:`TrackRecord` or as parallel numpy arrays
(:class:`Samples`, :class:`Boxes`). Times are epoch seconds (UTC); frames are 0-based.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_TRACK_COLS = ("id, run_id, camera_id, local_id, start_time, end_time, start_frame, end_frame, "
               "n_boxes, n_samples, ended, global_id")


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
    """N tracked boxes: track_id, frame (N,) int64; time (N,) float64; xyxy (N, 4); confidence (N,)."""

    track_id: np.ndarray
    frame: np.ndarray
    time: np.ndarray
    xyxy: np.ndarray
    confidence: np.ndarray

    def __len__(self) -> int:
        return len(self.track_id)


def _in_clause(column: str, values: Sequence) -> tuple[str, list]:
    return f"{column} IN ({','.join('?' * len(values))})", list(values)


class StoreReadMixin:
    """Read queries of :class:`pipeline.store.TrackStore` (mixed into it, not used alone).

    Relies on the store's SQLite connection ``_con``, its lock ``_lock``, ``embedding_dim`` and
    the sample cache ``_cache_ids``, ``_cache_tracks``, ``_cache_emb`` that ``TrackStore.__init__`` sets.
    """

    _con: sqlite3.Connection
    _lock: threading.RLock
    embedding_dim: int
    _cache_ids: np.ndarray
    _cache_tracks: np.ndarray
    _cache_emb: np.ndarray | None

    def tracks(self, camera: str | Sequence[str] | None = None, since: float | None = None,
               until: float | None = None, ended: bool | None = None, linked: bool | None = None,
               min_samples: int = 0, run_id: int | None = None,
               global_ids: Sequence[int] | None = None,
               track_ids: Sequence[int] | None = None) -> list[TrackRecord]:
        """Tracks matching every filter given, ordered by id. ``since``/``until`` keep tracks whose
        [start_time, end_time] overlaps the window; ``linked`` = has a global identity."""
        where, args = self._filters(camera, since, until)
        if ended is not None:
            where.append("ended=?")
            args.append(int(ended))
        if linked is not None:
            where.append("global_id IS NOT NULL" if linked else "global_id IS NULL")
        if min_samples:
            where.append("n_samples>=?")
            args.append(int(min_samples))
        if run_id is not None:
            where.append("run_id=?")
            args.append(int(run_id))
        for column, values in (("global_id", global_ids), ("id", track_ids)):
            if values is not None:
                clause, vals = _in_clause(column, [int(v) for v in values])
                where.append(clause)
                args += vals
        sql = f"SELECT {_TRACK_COLS} FROM tracks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._lock:
            rows = self._con.execute(sql + " ORDER BY id", args).fetchall()
        return [TrackRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], bool(r[10]), r[11])
                for r in rows]

    def track_keys(self, camera: str | Sequence[str] | None = None, since: float | None = None,
                   until: float | None = None, min_samples: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(track ids (N,) ascending, global ids (N,) with -1 where none) of the filtered tracks:
        the light-weight form of :meth:`tracks` used by search."""
        where, args = self._filters(camera, since, until)
        if min_samples:
            where.append("n_samples>=?")
            args.append(int(min_samples))
        sql = "SELECT id, COALESCE(global_id, -1) FROM tracks" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            rows = self._con.execute(sql + " ORDER BY id", args).fetchall()
        a = np.array(rows, np.int64).reshape(len(rows), 2)
        return a[:, 0].copy(), a[:, 1].copy()

    @staticmethod
    def _filters(camera, since, until) -> tuple[list[str], list]:
        where: list[str] = []
        args: list = []
        if camera is not None:
            cams = [camera] if isinstance(camera, str) else list(camera)
            clause, vals = _in_clause("camera_id", cams)
            where.append(clause)
            args += vals
        if since is not None:
            where.append("end_time>=?")
            args.append(float(since))
        if until is not None:
            where.append("start_time<=?")
            args.append(float(until))
        return where, args

    def track_embeddings(self, track_ids: Sequence[int]) -> np.ndarray:
        """(N, D) float32 mean embeddings of the given tracks in order; zero rows where a track has none."""
        out = np.zeros((len(track_ids), self.embedding_dim), np.float32)
        if len(track_ids) == 0:
            return out
        pos = {int(t): i for i, t in enumerate(track_ids)}
        with self._lock:
            for lo in range(0, len(track_ids), 900):
                chunk = [int(t) for t in track_ids[lo:lo + 900]]
                clause, vals = _in_clause("id", chunk)
                for tid, blob in self._con.execute(f"SELECT id, embedding FROM tracks WHERE {clause}", vals):
                    if blob is not None:
                        out[pos[tid]] = np.frombuffer(blob, np.float32)
        return out

    def samples_of(self, track_ids: Sequence[int], thumbnails: bool = False) -> Samples:
        """Every sample of the given tracks, ordered by sample id."""
        return self._samples("track_id", track_ids, thumbnails)

    def samples_by_id(self, sample_ids: Sequence[int], thumbnails: bool = False) -> Samples:
        """The given samples, ordered by sample id."""
        return self._samples("id", sample_ids, thumbnails)

    def _samples(self, column: str, values: Sequence[int], thumbnails: bool) -> Samples:
        cols = "id, track_id, frame, time, x1, y1, x2, y2, confidence, embedding"
        cols += ", thumbnail" if thumbnails else ""
        rows: list = []
        with self._lock:
            ids = [int(t) for t in values]
            for lo in range(0, len(ids), 900):
                clause, vals = _in_clause(column, ids[lo:lo + 900])
                rows += self._con.execute(f"SELECT {cols} FROM samples WHERE {clause}", vals).fetchall()
        rows.sort(key=lambda r: r[0])
        n, d = len(rows), self.embedding_dim
        emb = np.frombuffer(b"".join(r[9] for r in rows), np.float32).reshape(n, d).copy()
        return Samples(
            id=np.array([r[0] for r in rows], np.int64), track_id=np.array([r[1] for r in rows], np.int64),
            frame=np.array([r[2] for r in rows], np.int64), time=np.array([r[3] for r in rows], np.float64),
            xyxy=np.array([r[4:8] for r in rows], np.float32).reshape(n, 4),
            confidence=np.array([r[8] for r in rows], np.float32), embedding=emb,
            thumbnails=tuple(r[10] for r in rows) if thumbnails else None)

    def boxes(self, track_ids: Sequence[int]) -> Boxes:
        """Every box of the given tracks, ordered by (track, frame)."""
        rows: list = []
        with self._lock:
            ids = [int(t) for t in track_ids]
            for lo in range(0, len(ids), 900):
                clause, vals = _in_clause("track_id", ids[lo:lo + 900])
                rows += self._con.execute(f"SELECT * FROM boxes WHERE {clause} ORDER BY track_id, frame",
                                          vals).fetchall()
        rows.sort(key=lambda r: (r[0], r[1]))
        a = np.array(rows, np.float64).reshape(len(rows), 8)
        return Boxes(a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2],
                     a[:, 3:7].astype(np.float32), a[:, 7].astype(np.float32))

    def sample_matrix(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sample_ids (N,), track_ids (N,), embeddings (N, D) float32) of every committed-or-written
        sample, cached in RAM and topped up with new rows on each call."""
        with self._lock:
            last = int(self._cache_ids[-1]) if len(self._cache_ids) else 0
            rows = self._con.execute("SELECT id, track_id, embedding FROM samples WHERE id>? ORDER BY id",
                                     (last,)).fetchall()
            if rows or self._cache_emb is None:
                emb = np.frombuffer(b"".join(r[2] for r in rows), np.float32).reshape(len(rows), self.embedding_dim)
                old = self._cache_emb if self._cache_emb is not None else np.zeros((0, self.embedding_dim), np.float32)
                self._cache_emb = np.concatenate([old, emb])
                self._cache_ids = np.concatenate([self._cache_ids, np.array([r[0] for r in rows], np.int64)])
                self._cache_tracks = np.concatenate([self._cache_tracks, np.array([r[1] for r in rows], np.int64)])
            return self._cache_ids, self._cache_tracks, self._cache_emb

    def cameras(self) -> list[tuple[str, str, dict]]:
        """(camera_id, source, meta) of every camera, sorted by id."""
        with self._lock:
            rows = self._con.execute("SELECT id, source, meta FROM cameras ORDER BY id").fetchall()
        return [(r[0], r[1], json.loads(r[2])) for r in rows]

    def runs(self) -> list[tuple[int, float, float | None, dict]]:
        """(run_id, started, finished or None if it never closed, config) of every run."""
        with self._lock:
            rows = self._con.execute("SELECT id, started, finished, config FROM runs ORDER BY id").fetchall()
        return [(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def identities(self) -> dict[int, list[str]]:
        """global_id -> sorted camera ids of its tracks."""
        with self._lock:
            rows = self._con.execute("SELECT DISTINCT global_id, camera_id FROM tracks "
                                     "WHERE global_id IS NOT NULL ORDER BY global_id, camera_id").fetchall()
        out: dict[int, list[str]] = {}
        for gid, cam in rows:
            out.setdefault(gid, []).append(cam)
        return out

    def links(self) -> list[tuple[int, int, float | None, str]]:
        """(track_id, global_id, score, method) of every link made, in order."""
        with self._lock:
            return self._con.execute("SELECT track_id, global_id, score, method FROM links ORDER BY id").fetchall()

    def execute(self, sql: str, args: Sequence = ()) -> list[tuple]:
        """Run a read-only SQL statement (diagnostics, tests)."""
        with self._lock:
            return self._con.execute(sql, args).fetchall()
