"""Persistent record of cameras, runs, tracks, boxes, samples and global identities (SQLite file in WAL
mode, or a PostgreSQL database: :mod:`.backend`).

One store holds everything a run produced; later runs append to it. Writes are batched in
transactions that :meth:`TrackStore.maybe_commit` closes every ``commit_interval`` seconds, so a
crash or ``kill -9`` loses at most that much work and never leaves a half-written batch (each commit
is one database transaction: all-or-nothing). A batch is one transaction with the track counts
(n_boxes, n_samples, extents) it changes: a write or commit that fails (disk full) rolls the whole
batch back, counts included, and the writer carries on from the last commit.

One writer per SQLite store: a TrackStore holds the store's :class:`~pipeline.store.lock.WriterLock` from
opening to :meth:`TrackStore.close`, so a second writer is refused at once with StoreBusyError
naming the run and pid that write it. A PostgreSQL store takes many writers at once, one per camera:
each holds its cameras (:class:`~pipeline.store.postgres.WriterClaims`), so a second writer of a
camera is refused the same way. Readers (query, export) may open a store while runs are writing.

Embeddings are float32 L2-normalised vectors stored as BLOBs; search reads them from the index beside
the store (:mod:`pipeline.search.index`, a memory-mapped copy plus an ANN index, rebuilt from here at
any time) and filters tracks in SQL (see ../shared/MEASURED.md: exact search over SQL-filtered rows
beats ANN indexes under selective camera/time filters).
Times are seconds since the Unix epoch (UTC); frames are 0-based source frame indices; boxes
are pixels of the full source frame (a camera's roi offset ``Frame.origin`` is added on write).

This module opens (creating or migrating, see :mod:`.schema`) and writes the store; reading is
:class:`~pipeline.store.reader.StoreReader`, which :attr:`TrackStore.reader` gives over the
writer's own connection.
"""
from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from pipeline.config import StoreConfig
from pipeline.types import Detections, Frame
from reid_models.common import encode_jpeg, l2_normalize

from . import schema
from .backend import open_backend
from .base import CAMERA_STATES, StoreError, StoreWriteError
from .lock import WriterLock
from .reader import StoreReader


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


@dataclass
class _Pending:
    """Rows written since the last commit (what a failed commit loses); since: monotonic time of that commit."""

    tracks: int = 0
    boxes: int = 0
    samples: int = 0
    links: int = 0
    since: float = field(default_factory=time.monotonic)

    @property
    def rows(self) -> int:
        return self.tracks + self.boxes + self.samples + self.links

    def describe(self, run_id: int | None) -> str:
        age = time.monotonic() - self.since
        what = ", ".join(f"{n} {name}" for name, n in (("new tracks", self.tracks), ("boxes", self.boxes),
                                                      ("samples", self.samples), ("identity links", self.links)) if n)
        run = f" of run {run_id}" if run_id is not None else ""
        return f"the last {age:.1f} s{run} ({what or 'track extents'})"


def _full_frame(frame: Frame, xyxy: np.ndarray) -> tuple[float, float, float, float]:
    """A box in ``frame.image`` pixels -> (x1, y1, x2, y2) in the full source frame (adds the roi origin)."""
    ox, oy = frame.origin
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return x1 + ox, y1 + oy, x2 + ox, y2 + oy


def _blob(vec: np.ndarray) -> bytes:
    return np.ascontiguousarray(vec, dtype=np.float32).tobytes()


class TrackStore:
    """Writer of a store: ``TrackStore(config, embedder_id, embedding_dim, embedder_spec)``.

    config: the ``store`` section (path: a file or a ``postgresql://`` URL, thumbnail_height,
    commit_interval). Creates the store (and its folder) if absent, migrates an older schema, and
    refuses a store built with another embedder or dimension with :class:`StoreError`;
    ``embedder_id=None`` opens an existing store with the embedder it holds (re-embedding with
    another one: :mod:`.restage`). :attr:`reader` reads it, uncommitted rows included.
    writer_lock: the store's lock (SQLite :class:`WriterLock`, PostgreSQL ``WriterClaims``) when the
    caller took it already (the runner does, before loading models); otherwise it is taken here
    (StoreBusyError while another writer holds it). Either way the store releases it in
    :meth:`close` (and when opening fails). :attr:`path`: the store as shown in messages.
    """

    def __init__(self, config: StoreConfig, embedder_id: str | None, embedding_dim: int | None,
                 embedder_spec: dict | None = None, writer_lock: WriterLock | None = None) -> None:
        if not isinstance(config, StoreConfig):
            raise TypeError(f"TrackStore takes a StoreConfig, got {type(config).__name__}")
        self.config = config
        self.backend = open_backend(config.path)
        self.path = self.backend.display
        self.commit_interval = config.commit_interval
        self.run_id: int | None = None
        self._lock = threading.RLock()
        self._open: dict[tuple[str, int], _OpenTrack] = {}
        self._known_cameras: set[str] = set()
        self._last_commit = time.monotonic()
        self._closed = False
        # the state of the last commit, restored when a batch is rolled back; rows of the open batch
        self._committed: dict[tuple[str, int], _OpenTrack] = {}
        self._committed_cameras: set[str] = set()
        self._pending = _Pending()
        self.lost: _Pending | None = None  # what the last rolled-back batch held (None: nothing lost)
        if writer_lock is not None and (not writer_lock.held or not self.backend.same_lock(writer_lock)):
            raise ValueError(f"writer_lock {writer_lock.db_path} is not a held lock of {self.path}")
        self._writer_lock = writer_lock if writer_lock is not None else self.backend.writer_lock()
        try:
            self._con = self.backend.connect(readonly=False)
        except BaseException:
            self._writer_lock.release()
            raise
        try:
            self._setup(embedder_id, None if embedding_dim is None else int(embedding_dim), embedder_spec)
        except self.backend.errors as e:
            self._con.close()
            self._writer_lock.release()
            raise self.backend.database_error(e) from None
        except BaseException:
            self._con.close()
            self._writer_lock.release()
            raise
        self.reader = StoreReader.over(self._con, self._lock, self.path)

    # ---------------------------------------------------------------- opening
    def _setup(self, embedder_id: str, embedding_dim: int, embedder_spec: dict | None) -> None:
        con = self._con
        if embedder_id is None and not self.backend.tables(con):  # "the store's own embedder" needs a store
            raise StoreError(f"no store at {self.path}: run `python -m pipeline run` first or check --db")
        self.backend.prepare_writer(con, {"embedder_id": embedder_id, "embedding_dim": str(embedding_dim),
                                          "embedder_spec": json.dumps(embedder_spec or {})})
        meta = dict(con.execute("SELECT key, value FROM meta"))
        if embedder_id is None:  # open with the embedder the store holds (reembed, maintenance)
            embedder_id, embedding_dim = meta["embedder_id"], int(meta["embedding_dim"])
        if embedder_id != meta["embedder_id"]:
            raise StoreError(f"store {self.path} was built with embedder {meta['embedder_id']}; this run uses "
                             f"{embedder_id}: use another --db or the same embedder")
        if embedding_dim != int(meta["embedding_dim"]):
            raise StoreError(f"store {self.path} holds {meta['embedding_dim']}-d embeddings; this embedder gives "
                             f"{embedding_dim}-d: use another --db or the same embedder")
        self.embedding_dim = embedding_dim
        self.embedder_pk = schema.embedder_row(con, embedder_id, embedding_dim, meta.get("embedder_spec", "{}"))

    @property
    def writer_lock(self) -> WriterLock:
        """The store's held writer lock (maintenance that needs the store to itself runs under it)."""
        return self._writer_lock

    def __enter__(self) -> TrackStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- writing
    def _write(self):
        if self._closed:
            raise StoreError(f"store {self.path} is closed")
        if not self._con.in_transaction:
            # IMMEDIATE: the batch holds SQLite's write lock from its first statement, so a short
            # transaction of another connection (audit rows, users, corrections) either lands before
            # the batch or waits for its commit; a deferred batch that read first could fail to write.
            self._con.execute("BEGIN IMMEDIATE")
        return self._con

    def begin(self) -> None:
        """Open the batch now (taking the write lock): what is read next stays true until :meth:`commit`.
        Association calls it before reading the identities it extends, so an operator's correction
        committed by another connection is never overwritten by decisions made on older rows."""
        with self._lock:
            self._write()

    @contextmanager
    def _batch(self) -> Iterator:
        """The open batch's connection; if the block fails (database error, Ctrl-C, bug) the whole batch is
        rolled back and the open tracks return to their last committed counts, so counts and rows agree.
        Database errors leave as StoreWriteError naming the store and what was lost."""
        with self._lock:
            try:
                yield self._write()
            except BaseException as e:
                lost = self._rollback()
                if isinstance(e, self.backend.errors):
                    raise StoreWriteError(f"cannot write store {self.path} ({e}): {lost.describe(self.run_id)} "
                                          "were rolled back; everything committed before is kept") from e
                raise

    def _rollback(self) -> _Pending:
        """Undo the open batch (database and in-memory track state); returns what it held."""
        if self._con.in_transaction:
            try:
                self._con.execute("ROLLBACK")
            except self.backend.errors:  # SQLite may have rolled back already
                pass
        self._open = {k: dataclasses.replace(v) for k, v in self._committed.items()}
        self._known_cameras = set(self._committed_cameras)
        lost, self._pending = self._pending, _Pending(since=self._pending.since)
        if lost.rows:
            self.lost = lost
        return lost

    def start_run(self, config: dict | None = None) -> int:
        """Begin a run (config snapshot stored as JSON); returns its id.

        Tracks left open by earlier runs that never finished (killed) are marked ended: on SQLite
        every earlier run (one run writes a store at a time), on PostgreSQL the runs whose writer is gone.
        """
        with self._batch() as con:
            self.backend.end_dead_runs(con)
            run_id = int(con.execute("INSERT INTO runs(started, config) VALUES (?, ?) RETURNING id",
                                     (time.time(), json.dumps(config or {}, default=str))).fetchone()[0])
            self._writer_lock.hold_run(run_id)
        self.commit()
        self.run_id = run_id
        self._writer_lock.note_run(run_id)
        return run_id

    def add_camera(self, camera_id: str, source: str, meta: dict | None = None) -> None:
        """Create or update a camera row (claiming the camera: StoreBusyError if another live run writes it)."""
        self._writer_lock.claim([camera_id])
        with self._batch() as con:
            con.execute(
                "INSERT INTO cameras(id, source, meta) VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET source=excluded.source, meta=excluded.meta",
                (camera_id, str(source), json.dumps(meta or {}, default=str)))
            self._known_cameras.add(camera_id)

    def _track(self, con, frame: Frame, local_id: int) -> _OpenTrack:
        key = (frame.camera_id, local_id)
        st = self._open.get(key)
        if st is not None:
            return st
        if frame.camera_id not in self._known_cameras:
            self._writer_lock.claim([frame.camera_id])
            con.execute("INSERT OR IGNORE INTO cameras(id, source) VALUES (?, '')", (frame.camera_id,))
            self._known_cameras.add(frame.camera_id)
        row = con.execute("SELECT id, start_time, end_time, start_frame, end_frame, n_boxes, n_samples, embedding "
                          "FROM tracks WHERE run_id=? AND camera_id=? AND local_id=?",
                          (self.run_id, frame.camera_id, local_id)).fetchone()
        if row is None:  # a new track
            pk = con.execute(
                "INSERT INTO tracks(run_id, camera_id, local_id, start_time, end_time, start_frame, end_frame) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (self.run_id, frame.camera_id, local_id, frame.timestamp, frame.timestamp, frame.index,
                 frame.index)).fetchone()[0]
            st = _OpenTrack(int(pk), frame.timestamp, frame.timestamp, frame.index, frame.index, 0, 0)
            self._pending.tracks += 1
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

    def record_frame(self, frame: Frame, tracks: Detections, interpolated: bool = False) -> None:
        """Record this frame's boxes of tracked persons (``track_id >= 0``); creates/extends track rows.

        ``tracks.xyxy`` is in ``frame.image`` pixels; it is stored in full-frame pixels (+ ``frame.origin``).
        ``frame`` may be an earlier frame than the last one recorded (the tracker fills a gap once the
        track is re-found): pass ``interpolated=True`` for such filled-in boxes, so they are marked."""
        self._require_run()
        with self._batch() as con:
            rows = []
            for i in np.flatnonzero(tracks.track_id >= 0):
                st = self._track(con, frame, int(tracks.track_id[i]))
                if st.n_boxes == 0 or frame.index != st.end_frame:
                    st.n_boxes += 1
                st.start_time, st.end_time = min(st.start_time, frame.timestamp), max(st.end_time, frame.timestamp)
                st.start_frame, st.end_frame = min(st.start_frame, frame.index), max(st.end_frame, frame.index)
                st.dirty = True
                x1, y1, x2, y2 = _full_frame(frame, tracks.xyxy[i])
                rows.append((st.pk, frame.index, frame.timestamp, x1, y1, x2, y2, float(tracks.confidence[i]),
                             int(interpolated)))
            con.executemany("INSERT OR REPLACE INTO boxes(track_id, frame, time, x1, y1, x2, y2, confidence, "
                            "interpolated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._pending.boxes += len(rows)

    def add_samples(self, frame: Frame, tracks: Detections, rows: Sequence[int] | np.ndarray,
                    crops: Sequence[np.ndarray | None]) -> None:
        """Store appearance samples: ``tracks.embedding[rows]`` (L2-normalised, D = embedding_dim), each
        with its BGR crop kept as a JPEG thumbnail ``thumbnail_height`` pixels high (None: no thumbnail).
        Updates each track's mean embedding (mean of samples, renormalised)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) == 0:
            return
        if tracks.embedding is None:
            raise StoreError("add_samples needs detections with an embedding column")
        if tracks.embedding.shape[1] != self.embedding_dim:
            raise StoreError(f"embedding has {tracks.embedding.shape[1]} dims, store {self.path} holds "
                             f"{self.embedding_dim}: use the store's embedder")
        if len(crops) != len(rows):
            raise ValueError(f"{len(rows)} sample rows but {len(crops)} crops")
        self._require_run()
        with self._batch() as con:
            emb = l2_normalize(tracks.embedding[rows])
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
                thumb = None if crops[k] is None else encode_jpeg(crops[k], height=self.config.thumbnail_height)
                out.append((st.pk, frame.index, frame.timestamp, x1, y1, x2, y2, float(tracks.confidence[i]),
                            _blob(emb[k]), thumb, self.embedder_pk))
            con.executemany("INSERT INTO samples(track_id, frame, time, x1, y1, x2, y2, confidence, embedding, "
                            "thumbnail, embedder_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", out)
            self._pending.samples += len(out)

    def camera_status(self, camera_id: str, state: str, frames: int, fps: float | None,
                      last_frame_time: float | None, last_error: str | None = None) -> None:
        """Upsert the camera's heartbeat row (``camera_status``) in the open batch: it commits with the run's
        next commit. state: 'live', 'reconnecting', 'ended' or 'failed'; frames: read this run; fps: frames/s
        since the last heartbeat; last_frame_time: epoch s of the newest frame (None before any)."""
        if state not in CAMERA_STATES:
            raise ValueError(f"camera state must be one of {', '.join(CAMERA_STATES)}, got {state!r}")
        self._require_run()
        with self._batch() as con:
            con.execute(
                "INSERT INTO camera_status(camera_id, run_id, state, frames, fps, last_frame_time, last_error, "
                "updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (camera_id) DO UPDATE SET "
                "run_id=excluded.run_id, state=excluded.state, frames=excluded.frames, fps=excluded.fps, "
                "last_frame_time=excluded.last_frame_time, last_error=excluded.last_error, updated=excluded.updated",
                (camera_id, self.run_id, state, int(frames), None if fps is None else float(fps),
                 None if last_frame_time is None else float(last_frame_time), last_error, time.time()))

    def end_tracks(self, camera_id: str, local_ids: Iterable[int]) -> None:
        """Mark tracks finished (lost beyond the tracker's buffer, or end of stream)."""
        with self._batch() as con:
            for local in local_ids:
                st = self._open.pop((camera_id, int(local)), None)
                if st is not None:
                    self._flush_track(con, st)
                    con.execute("UPDATE tracks SET ended=1 WHERE id=?", (st.pk,))

    def _flush_track(self, con, st: _OpenTrack) -> None:
        if not st.dirty:
            return
        emb = None
        if st.emb_sum is not None:
            emb = _blob(l2_normalize(st.emb_sum))
        con.execute("UPDATE tracks SET start_time=?, end_time=?, start_frame=?, end_frame=?, n_boxes=?, "
                    "n_samples=?, embedding=? WHERE id=?",
                    (st.start_time, st.end_time, st.start_frame, st.end_frame, st.n_boxes, st.n_samples, emb, st.pk))
        st.dirty = False

    def commit(self) -> None:
        """Flush open tracks' extents and commit the current batch (all-or-nothing)."""
        with self._lock:
            if self._closed:
                return
            if self._open or self._con.in_transaction:
                with self._batch() as con:
                    for st in self._open.values():
                        self._flush_track(con, st)
                    con.execute("COMMIT")
            self._committed = {k: dataclasses.replace(v) for k, v in self._open.items()}
            self._committed_cameras = set(self._known_cameras)
            self._last_commit = time.monotonic()
            self._pending = _Pending()

    def maybe_commit(self) -> bool:
        """Commit if ``commit_interval`` seconds passed since the last commit; True if it did."""
        if time.monotonic() - self._last_commit >= self.commit_interval:
            self.commit()
            return True
        return False

    def close(self, discard_if_empty: bool = False) -> None:
        """End this run's open tracks, mark the run finished, commit, close and release the lock. Idempotent.

        discard_if_empty: delete the run row instead when the run stored no track (a run that failed
        before its first frame leaves nothing behind). The connection is closed and the lock released
        even when the final commit fails; that failure then raises StoreWriteError saying what was lost.
        """
        with self._lock:
            if self._closed:
                return
            failure: BaseException | None = None
            try:
                if self.run_id is not None:
                    by_cam: dict[str, list[int]] = {}
                    for cam, local in self._open:
                        by_cam.setdefault(cam, []).append(local)
                    for cam, ids in by_cam.items():
                        self.end_tracks(cam, ids)
                    with self._batch() as con:
                        empty = con.execute("SELECT NOT EXISTS (SELECT 1 FROM tracks WHERE run_id=?)",
                                            (self.run_id,)).fetchone()[0]
                        if discard_if_empty and empty:
                            con.execute("DELETE FROM runs WHERE id=?", (self.run_id,))
                        else:
                            con.execute("UPDATE runs SET finished=? WHERE id=?", (time.time(), self.run_id))
                self.commit()
            except StoreWriteError as e:
                failure = e
            finally:
                self._closed = True
                try:
                    self._con.close()
                finally:
                    self._writer_lock.release()
            if failure is not None:
                lost = self.lost.describe(self.run_id) if self.lost is not None else "the last batch"
                raise StoreWriteError(f"final commit of store {self.path} failed ({failure.__cause__}): {lost} "
                                      + ("are lost and the run stays marked unfinished; " if self.run_id else
                                         "are lost; ")
                                      + "everything committed before is kept") from failure.__cause__

    # ------------------------------------------------------------ identities
    @contextmanager
    def identities_locked(self) -> Iterator[None]:
        """Link identities inside this block alone: the open batch is committed first (so a linker that
        waits holds no rows), then a new batch takes the store's identity lock (PostgreSQL: an advisory
        lock shared by every writer; SQLite: the writer lock already excludes everyone), and the block's
        writes are committed together at its end."""
        self.commit()
        with self._lock:
            with self._batch() as con:
                self.backend.lock_identities(con)
            yield
            self.commit()

    def new_identity(self) -> int:
        """A fresh global identity id, unique within this store across runs."""
        with self._batch() as con:
            return int(con.execute("INSERT INTO identities(created) VALUES (?) RETURNING id",
                                   (time.time(),)).fetchone()[0])

    def assign_identity(self, track_id: int, global_id: int, score: float | None, method: str) -> None:
        """Give a track its global identity and record the link (audit trail in ``links``)."""
        with self._batch() as con:
            con.execute("UPDATE tracks SET global_id=? WHERE id=?", (int(global_id), int(track_id)))
            con.execute("UPDATE identities SET n_tracks=n_tracks+1 WHERE id=?", (int(global_id),))
            con.execute("INSERT INTO links(track_id, global_id, score, method, created) VALUES (?, ?, ?, ?, ?)",
                        (int(track_id), int(global_id), None if score is None else float(score), method, time.time()))
            self._pending.links += 1
