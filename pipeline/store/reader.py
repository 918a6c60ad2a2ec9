"""Read side of the store: :class:`StoreReader`, the queries behind search, export, association and
the runner's summary.

``StoreReader(path)`` opens a store (a SQLite file, or a ``postgresql://`` URL) read-only (it never
writes, so it may read while runs are writing, or a file on a read-only filesystem, see
:func:`.backend._connect_readonly`);
:attr:`pipeline.store.writer.TrackStore.reader` is a StoreReader over the writer's own connection,
which also sees the writer's uncommitted rows. Rows come back as
:class:`~pipeline.store.base.TrackRecord` or as parallel numpy arrays (``Samples``, ``Boxes``).
"""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from reid_models.common import UserError

from .backend import is_url, open_backend
from .base import Boxes, CameraStatusRecord, RunCounts, Samples, StoreError, TrackRecord

_TRACK_COLS = ("id, run_id, camera_id, local_id, start_time, end_time, start_frame, end_frame, "
               "n_boxes, n_samples, ended, global_id")


def _in_clause(column: str, values: Sequence) -> tuple[str, list]:
    return f"{column} IN ({','.join('?' * len(values))})", list(values)


class StoreReader:
    """Read-only access to a store: ``with StoreReader("runs/demo.db") as store: store.tracks(...)``.

    path (the store as shown in messages), embedder_id, embedding_dim, embedder_spec: what the store
    was built with (the embedder spec rebuilds the embedder, see ``Embedder.from_spec``). A missing
    file or database, one that is not a track store or one of another schema version is a one-line
    :class:`StoreError`.
    """

    def __init__(self, path: str | Path) -> None:
        backend = open_backend(path)
        con = backend.connect(readonly=True)
        try:
            backend.check_reader(con)
        except backend.errors as e:
            con.close()
            raise backend.database_error(e) from None
        except StoreError:
            con.close()
            raise
        self._attach(con, threading.RLock(), backend.display, owns=True)
        self.shared = backend.shared  # a PostgreSQL store (many writers at once)

    @classmethod
    def over(cls, con, lock: threading.RLock, path: str | Path) -> StoreReader:
        """A reader sharing an open connection and its lock (the writer's); closing it leaves them open."""
        reader = cls.__new__(cls)
        reader._attach(con, lock, path, owns=False)
        return reader

    shared = False

    def live_runs(self) -> set[int]:
        """PostgreSQL: ids of the unfinished runs whose writer is alive (holds its run lock); a store file
        tells a live writer by its lock file instead (see pipeline.web.data.writer_active): empty."""
        if not self.shared:
            return set()
        from .postgres import live_runs

        with self._lock:
            return live_runs(self._con)

    def _attach(self, con, lock: threading.RLock, path: str | Path, owns: bool) -> None:
        self._con, self._lock, self.path, self._owns = con, lock, path, owns
        with lock:
            meta = dict(con.execute("SELECT key, value FROM meta"))
        self.embedder_id: str = meta["embedder_id"]
        self.embedding_dim: int = int(meta["embedding_dim"])
        self.embedder_spec: dict = json.loads(meta["embedder_spec"])
        self._cache_ids = np.zeros(0, np.int64)
        self._cache_tracks = np.zeros(0, np.int64)
        self._cache_emb: np.ndarray | None = None

    def close(self) -> None:
        """Close the connection (a reader over the writer's connection leaves it open). Idempotent."""
        if self._owns:
            self._con.close()

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- argument checks
    def check_cameras(self, cameras: str | Sequence[str] | None) -> None:
        """UserError naming the camera ids the store does not have (and those it has); None passes."""
        if cameras is None:
            return
        wanted = [cameras] if isinstance(cameras, str) else list(cameras)
        known = [c for c, _, _ in self.cameras()]
        unknown = [c for c in dict.fromkeys(wanted) if c not in known]
        if unknown:
            has = f"the store has {', '.join(known)}" if known else "the store has no cameras yet"
            raise UserError(f"unknown camera{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; {has}")

    def check_run(self, run_id: int | None) -> None:
        """UserError if the store has no run ``run_id`` (naming the runs it has); None passes."""
        if run_id is None:
            return
        runs = [r for r, _, _, _ in self.runs()]
        if int(run_id) not in runs:
            raise UserError(f"no run {run_id} (runs: {', '.join(map(str, runs)) or 'none'}) in store {self.path}")

    # ---------------------------------------------------------------- tracks
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
                   until: float | None = None, min_samples: int = 0,
                   global_ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(track ids (N,) ascending, global ids (N,) with -1 where none) of the filtered tracks (of
        these identities, if ``global_ids`` is given): the light-weight form of :meth:`tracks` used by search."""
        where, args = self._filters(camera, since, until)
        if min_samples:
            where.append("n_samples>=?")
            args.append(int(min_samples))
        if global_ids is not None:
            gids = sorted({int(g) for g in global_ids})
            if not gids:
                return np.zeros(0, np.int64), np.zeros(0, np.int64)
            if len(gids) > 900:
                parts = [self.track_keys(camera, since, until, min_samples, gids[lo:lo + 900])
                         for lo in range(0, len(gids), 900)]
                ids, g = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
                order = np.argsort(ids)
                return ids[order], g[order]
            clause, vals = _in_clause("global_id", gids)
            where.append(clause)
            args += vals
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
                rows += self._con.execute("SELECT track_id, frame, time, x1, y1, x2, y2, confidence, interpolated "
                                          f"FROM boxes WHERE {clause} ORDER BY track_id, frame", vals).fetchall()
        rows.sort(key=lambda r: (r[0], r[1]))
        a = np.array(rows, np.float64).reshape(len(rows), 9)
        return Boxes(a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2],
                     a[:, 3:7].astype(np.float32), a[:, 7].astype(np.float32), a[:, 8] > 0)

    def sample_matrix(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sample_ids (N,), track_ids (N,), embeddings (N, D) float32) of every committed-or-written
        sample, cached in RAM and topped up with new rows on each call; rebuilt when rows were deleted
        (erasure, retention), so a long-lived reader never answers with erased vectors, or when rows
        below the last cached id were committed late (several PostgreSQL writers commit out of id order).
        All of it in RAM: for small stores and tests; search reads :meth:`iter_samples` chunks and the
        index instead."""
        with self._lock:
            if self._cache_emb is not None:
                count = self._con.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
                last = int(self._cache_ids[-1]) if len(self._cache_ids) else 0
                newer = self._con.execute("SELECT COUNT(*) FROM samples WHERE id>?", (last,)).fetchone()[0]
                if count - newer != len(self._cache_ids):  # some cached sample is gone
                    self._cache_ids = np.zeros(0, np.int64)
                    self._cache_tracks = np.zeros(0, np.int64)
                    self._cache_emb = None
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

    def iter_samples(self, after_id: int = 0, chunk: int = 20000,
                     upto_id: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(sample_ids (n,), track_ids (n,), embeddings (n, D) float32) of the samples with id > ``after_id``
        (and <= ``upto_id``), in id order, ``chunk`` rows at a time: bounded RAM at any store size (keyset
        pagination, so a writer's new rows after the first chunk are picked up too)."""
        last = int(after_id)
        while True:
            sql, args = "SELECT id, track_id, embedding FROM samples WHERE id>?", [last]
            if upto_id is not None:
                sql += " AND id<=?"
                args.append(int(upto_id))
            with self._lock:
                rows = self._con.execute(sql + " ORDER BY id LIMIT ?", [*args, int(chunk)]).fetchall()
            if not rows:
                return
            ids = np.array([r[0] for r in rows], np.int64)
            emb = np.frombuffer(b"".join(r[2] for r in rows), np.float32).reshape(len(rows), self.embedding_dim)
            yield ids, np.array([r[1] for r in rows], np.int64), emb
            last = int(ids[-1])
            if len(rows) < chunk:
                return

    def sample_extent(self, upto_id: int | None = None) -> tuple[int, int]:
        """(number of samples, largest sample id or 0), of those with id <= ``upto_id`` if given."""
        sql, args = "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM samples", []
        if upto_id is not None:
            sql, args = sql + " WHERE id<=?", [int(upto_id)]
        with self._lock:
            n, top = self._con.execute(sql, args).fetchone()
        return int(n), int(top)

    def samples_in_ranges(self, ranges: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sample_ids (n,), track_ids (n,), embeddings (n, D) float32) of the samples whose id lies in one of
        the inclusive ``(lo, hi)`` ranges, in id order (the index's pending gaps; a few rows each)."""
        ids, tracks, blobs = [], [], []
        ranges = [(int(lo), int(hi)) for lo, hi in ranges]
        for start in range(0, len(ranges), 200):
            part = ranges[start:start + 200]
            sql = ("SELECT id, track_id, embedding FROM samples WHERE "
                   + " OR ".join("id BETWEEN ? AND ?" for _ in part) + " ORDER BY id")
            with self._lock:
                rows = self._con.execute(sql, [v for r in part for v in r]).fetchall()
            ids += [r[0] for r in rows]
            tracks += [r[1] for r in rows]
            blobs += [r[2] for r in rows]
        order = np.argsort(np.array(ids, np.int64), kind="stable")
        emb = np.frombuffer(b"".join(blobs), np.float32).reshape(len(ids), self.embedding_dim)
        return np.array(ids, np.int64)[order], np.array(tracks, np.int64)[order], emb[order]

    def count_samples_outside(self, upto_id: int, ranges: Sequence[tuple[int, int]]) -> int:
        """Number of samples with id <= ``upto_id`` outside the disjoint inclusive ``(lo, hi, ...)`` ranges."""
        n = self.sample_extent(upto_id)[0]
        ranges = [(int(r[0]), min(int(r[1]), int(upto_id))) for r in ranges if r[0] <= upto_id]
        for start in range(0, len(ranges), 200):
            part = ranges[start:start + 200]
            sql = "SELECT COUNT(*) FROM samples WHERE " + " OR ".join("id BETWEEN ? AND ?" for _ in part)
            with self._lock:
                n -= int(self._con.execute(sql, [v for r in part for v in r]).fetchone()[0])
        return n

    def count_present(self, sample_ids: Sequence[int]) -> int:
        """How many of the given sample ids are in the store."""
        n, ids = 0, [int(v) for v in sample_ids]
        for lo in range(0, len(ids), 900):
            clause, args = _in_clause("id", ids[lo:lo + 900])
            with self._lock:
                n += int(self._con.execute(f"SELECT COUNT(*) FROM samples WHERE {clause}", args).fetchone()[0])
        return n

    def commit_horizon(self) -> tuple[int, int] | None:
        """PostgreSQL: (xmin, xmax) of a snapshot taken now (``pg_current_snapshot()``): every transaction
        with an xid below xmin has ended, every one started later gets an xid >= xmax. Several writers
        there commit sample ids out of order, so a gap below the largest id seen may still fill; once
        xmin passes the xmax recorded when the gap was seen, it never will. None on SQLite (one writer,
        ids commit in order)."""
        if not is_url(str(self.path)):
            return None
        with self._lock:
            row = self._con.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text, "
                                    "pg_snapshot_xmax(pg_current_snapshot())::text").fetchone()
        return int(row[0]), int(row[1])

    def fingerprint(self) -> str:
        """What tells this store from another file at the same path: its first run's start time and the
        store's embedder (a search index built for another store or embedder is stale)."""
        with self._lock:
            row = self._con.execute("SELECT id, started FROM runs ORDER BY id LIMIT 1").fetchone()
        first = "none" if row is None else f"{row[0]}@{float(row[1]):.6f}"
        return f"{first}/{self.embedder_id}/{self.embedding_dim}"

    def track_global_ids(self, track_ids: Sequence[int]) -> np.ndarray:
        """(N,) int64 global ids of the given tracks in order, -1 where a track has none (or is unknown)."""
        out = np.full(len(track_ids), -1, np.int64)
        pos = {int(t): i for i, t in enumerate(track_ids)}
        with self._lock:
            keys = list(pos)
            for lo in range(0, len(keys), 900):
                clause, vals = _in_clause("id", keys[lo:lo + 900])
                for tid, gid in self._con.execute(f"SELECT id, global_id FROM tracks WHERE {clause}", vals):
                    if gid is not None:
                        out[pos[tid]] = gid
        return out

    def cameras(self) -> list[tuple[str, str, dict]]:
        """(camera_id, source, meta) of every camera, sorted by id."""
        with self._lock:
            rows = self._con.execute("SELECT id, source, meta FROM cameras ORDER BY id").fetchall()
        return [(r[0], r[1], json.loads(r[2])) for r in rows]

    def camera_statuses(self) -> dict[str, CameraStatusRecord]:
        """Each camera's last heartbeat written by a run (``camera_status``); {} for a store written
        before schema v5 or by a run that wrote none."""
        with self._lock:
            rows = self._con.execute("SELECT camera_id, run_id, state, frames, fps, last_frame_time, last_error, "
                                     "updated FROM camera_status ORDER BY camera_id").fetchall()
        return {r[0]: CameraStatusRecord(*r) for r in rows}

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

    def rejected_links(self) -> set[tuple[int, int]]:
        """(track_id, global_id) pairs an operator rejected (``link_rejections``): never linked automatically."""
        with self._lock:
            return {(int(t), int(g)) for t, g in
                    self._con.execute("SELECT track_id, global_id FROM link_rejections").fetchall()}

    def link_history(self, track_ids: Sequence[int]) -> dict[int, list[tuple]]:
        """track id -> its links in order, each (global_id, score, method, actor or None = automatic, created)."""
        out: dict[int, list] = {int(t): [] for t in track_ids}
        with self._lock:
            ids = list(out)
            for lo in range(0, len(ids), 900):
                clause, vals = _in_clause("track_id", ids[lo:lo + 900])
                for tid, gid, score, method, actor, created in self._con.execute(
                        f"SELECT track_id, global_id, score, method, actor, created FROM links WHERE {clause} "
                        "ORDER BY id", vals):
                    out[int(tid)].append((int(gid), score, method, actor, float(created)))
        return out

    def global_ids(self, run_id: int) -> dict[tuple[str, int], int]:
        """(camera_id, local track id) -> global id of the run's tracks that have one."""
        with self._lock:
            rows = self._con.execute("SELECT camera_id, local_id, global_id FROM tracks "
                                     "WHERE run_id=? AND global_id IS NOT NULL", (int(run_id),)).fetchall()
        return {(cam, int(local)): int(gid) for cam, local, gid in rows}

    def run_summary(self, run_id: int) -> RunCounts:
        """Counts of what run ``run_id`` stored (see :class:`RunCounts`)."""
        with self._lock:
            tracks, samples = self._con.execute("SELECT COUNT(*), COALESCE(SUM(n_samples), 0) FROM tracks "
                                                "WHERE run_id=?", (int(run_id),)).fetchone()
            cams = self._con.execute(
                "SELECT global_id, COUNT(DISTINCT camera_id) FROM tracks WHERE global_id IN "
                "(SELECT global_id FROM tracks WHERE run_id=? AND global_id IS NOT NULL) GROUP BY global_id",
                (int(run_id),)).fetchall()
        return RunCounts(int(tracks), int(samples), len(cams), sum(1 for _, n in cams if n >= 2))
