"""The SQL of data protection (issue 11): users, the audit log, manual identity corrections, erasure
and retention. :mod:`pipeline.access` holds the rules (roles, password hashing, the hash chain,
evidence); this module only reads and writes rows.

Concurrency ("a store has one writer", see :mod:`.lock`): a :class:`GovernanceStore` is a second,
short-lived connection that writes in short ``BEGIN IMMEDIATE`` transactions with a 10 s busy
timeout. A running ``run`` holds SQLite's write lock only inside its batches (committed every
``store.commit_interval``), so users, audit rows and corrections can be written while it runs:
they wait for the batch to commit, and the run's next batch waits for them. The run's association
reads and writes inside one batch (``TrackStore.begin``) and links only tracks without an identity,
so it never overwrites a correction. Erasure and retention (big deletes + VACUUM) are different:
they run under the store's :class:`~.lock.WriterLock` (the CLI takes it and is refused while a run
holds it; the run purges inside its own lock), never beside a writer. A PostgreSQL store has many
writers at once: there they run beside them, in one transaction under the identities lock, deleting
only rows no live run still writes (:mod:`pipeline.access.erasure`), then VACUUM outside it.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reid_models.common import UserError, l2_normalize

from . import schema
from .backend import is_url, open_backend
from .base import StoreError, require_store

ERASED_TABLES = ("boxes", "samples", "pending_embeddings", "links", "link_rejections", "tracks", "identities",
                 "audit_log", "meta")
"""The tables erasure and retention delete from (VACUUMed after, on PostgreSQL)."""

GENESIS_HASH = "0" * 64
"""prev_hash of the first audit row of a store (no anchor yet)."""


@dataclass(frozen=True)
class UserRow:
    name: str
    role: str
    cameras: tuple[str, ...] | None
    password: str
    created: float


@dataclass(frozen=True)
class AuditRow:
    id: int
    time: float
    actor: str
    action: str
    details: str
    prev_hash: str
    row_hash: str


def _in(column: str, values: Sequence) -> tuple[str, list]:
    return f"{column} IN ({','.join('?' * len(values))})", list(values)


def _chunks(values: Sequence[int], n: int = 900) -> Iterator[list[int]]:
    values = [int(v) for v in values]
    for lo in range(0, len(values), n):
        yield values[lo:lo + n]


def index_sidecars(db_path: Path) -> list[Path]:
    """Search-index files and folders kept beside the store: ``<db>.index`` (the index folder of
    :mod:`pipeline.search.index`), ``<db>.index.*`` / ``<db>.index-*`` (its rebuilds in progress),
    never its lock file ``<db>.index.lock``."""
    folder = db_path.parent
    if not folder.is_dir():
        return []
    stem = db_path.name + ".index"
    return sorted(p for p in folder.iterdir() if (p.name == stem or p.name.startswith((stem + ".", stem + "-")))
                  and p.name != stem + ".lock")


@contextmanager
def _index_lock(db_path: Path, timeout: float = 60.0) -> Iterator[None]:
    """Hold ``<db>.index.lock`` (the flock an index update holds while it builds), waiting for an update in
    progress: an update that read the store before an erasure cannot then put its result in place."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    import os

    path = db_path.with_name(db_path.name + ".index.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise StoreError(f"the search index of {db_path} stayed locked for {timeout:.0f} s: erased rows "
                                     f"may still be in it; delete {db_path.name}.index by hand") from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


def drop_index_sidecars(db_path: str | Path) -> list[Path]:
    """THE hook erasure and retention call after their deletes are committed: removes the store's search
    index (see :func:`index_sidecars`) under the index's own lock, so the next query rebuilds it from the
    rows that remain and no erased vector survives in an index. On a PostgreSQL store it removes this
    machine's copy (:func:`pipeline.store.sidecar_base`); another machine's copy no longer matches the
    store's sample count and is ignored by its queries until rebuilt
    (:meth:`pipeline.search.index.SearchIndex.deleted_since`). Returns what it removed. (A process that
    has the old index memory-mapped keeps it until it reopens the store: the web UI reopens after erasure.)"""
    import shutil

    from .backend import sidecar_base

    db_path = sidecar_base(db_path)
    removed = []
    if not index_sidecars(db_path):
        return removed
    with _index_lock(db_path):
        for path in index_sidecars(db_path):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


class GovernanceStore:
    """A short-lived writable connection for the access tables: ``with GovernanceStore(db) as g: ...``.

    db: an existing store (StoreError naming it otherwise); an older schema is migrated. A PostgreSQL
    URL works the same: each transaction then takes the store's identity advisory lock (what SQLite's
    ``BEGIN IMMEDIATE`` gives), so audit rows chain one after another and corrections, erasure and
    retention never interleave with a linking pass; :meth:`compact` VACUUMs the tables erasure touched
    (see :mod:`pipeline.access.erasure` for what runs beside live writers)."""

    def __init__(self, db: str | Path) -> None:
        self._backend = open_backend(db) if is_url(db) else None
        self.shared = self._backend is not None  # a PostgreSQL store: many writers at once
        if self._backend is not None:
            self.path = self._backend.display
            self._con = self._backend.connect_side()
        else:
            self.path = require_store(db)
            self._con = schema.connect_side(self.path)

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> GovernanceStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction (nested calls join the open one); rolled back on any error."""
        con = self._con
        if con.in_transaction:
            yield con
            return
        try:
            con.execute("BEGIN IMMEDIATE")
            if self._backend is not None:
                self._backend.lock_identities(con)
        except sqlite3.OperationalError as e:
            raise StoreError(f"store {self.path} stayed locked for 10 s ({e}): try again") from None
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ users
    def insert_user(self, name: str, role: str, cameras: Sequence[str] | None, password: str) -> bool:
        """Add a user; False if the name is taken."""
        with self.transaction() as con:
            cur = con.execute("INSERT INTO users(name, role, cameras, password, created) VALUES (?, ?, ?, ?, ?) "
                              "ON CONFLICT(name) DO NOTHING",
                              (name, role, None if cameras is None else json.dumps(list(cameras)), password,
                               time.time()))
            return cur.rowcount == 1

    def delete_user(self, name: str) -> bool:
        with self.transaction() as con:
            return con.execute("DELETE FROM users WHERE name=?", (name,)).rowcount == 1

    def users(self, name: str | None = None) -> list[UserRow]:
        sql = "SELECT name, role, cameras, password, created FROM users"
        rows = self._con.execute(sql + (" WHERE name=?" if name is not None else "") + " ORDER BY name",
                                 (name,) if name is not None else ()).fetchall()
        return [UserRow(n, r, None if c is None else tuple(json.loads(c)), p, t) for n, r, c, p, t in rows]

    def camera_ids(self) -> list[str]:
        return [r[0] for r in self._con.execute("SELECT id FROM cameras ORDER BY id")]

    # ------------------------------------------------------------------ audit
    def audit_anchor(self) -> tuple[int, str] | None:
        """(id, row_hash) of the last audit row purged by retention, or None."""
        row = self._con.execute("SELECT value FROM meta WHERE key='audit_anchor'").fetchone()
        if row is None:
            return None
        a = json.loads(row[0])
        return int(a["id"]), str(a["hash"])

    def append_audit(self, when: float, actor: str, action: str, details: str,
                     chain: Callable[[str], str]) -> int:
        """Append one audit row; ``chain(prev_hash) -> row_hash`` (computed inside the transaction, so
        two connections never chain onto the same row). Returns its id."""
        with self.transaction() as con:
            last = con.execute("SELECT row_hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
            if last is not None:
                prev = last[0]
            else:
                anchor = self.audit_anchor()
                prev = anchor[1] if anchor else GENESIS_HASH
            row = con.execute("INSERT INTO audit_log(time, actor, action, details, prev_hash, row_hash) "
                              "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                              (float(when), actor, action, details, prev, chain(prev))).fetchone()
            return int(row[0])

    def audit_rows(self, since: float | None = None, actor: str | None = None,
                   action: str | None = None) -> list[AuditRow]:
        where, args = [], []
        for clause, value in (("time>=?", since), ("actor=?", actor), ("action=?", action)):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = "SELECT id, time, actor, action, details, prev_hash, row_hash FROM audit_log"
        rows = self._con.execute(sql + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id",
                                 args).fetchall()
        return [AuditRow(*r) for r in rows]

    def purge_audit_before(self, cutoff: float, dry_run: bool = False) -> int:
        """Delete audit rows older than ``cutoff`` (a prefix of the chain: rows up to the last old one),
        keeping ``meta.audit_anchor`` = the last deleted row, so the rest still verifies."""
        with self.transaction() as con:
            row = con.execute("SELECT id, row_hash FROM audit_log WHERE time<? ORDER BY id DESC LIMIT 1",
                              (float(cutoff),)).fetchone()
            if row is None:
                return 0
            n = con.execute("SELECT COUNT(*) FROM audit_log WHERE id<=?", (row[0],)).fetchone()[0]
            if not dry_run:
                con.execute("DELETE FROM audit_log WHERE id<=?", (row[0],))
                con.execute("INSERT INTO meta(key, value) VALUES ('audit_anchor', ?) "
                            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                            (json.dumps({"id": int(row[0]), "hash": row[1]}),))
            return int(n)

    # ------------------------------------------------------------------ corrections
    def _track(self, con: sqlite3.Connection, track_id: int) -> tuple[int, str, int | None, int]:
        row = con.execute("SELECT id, camera_id, global_id, ended FROM tracks WHERE id=?", (int(track_id),)).fetchone()
        if row is None:
            raise UserError(f"no track {track_id} in store {self.path}")
        return row

    def _identity_exists(self, con: sqlite3.Connection, gid: int) -> bool:
        return con.execute("SELECT 1 FROM identities WHERE id=?", (int(gid),)).fetchone() is not None

    def _manual_link(self, con: sqlite3.Connection, track_id: int, gid: int, actor: str, now: float) -> None:
        con.execute("INSERT INTO links(track_id, global_id, score, method, created, actor) "
                    "VALUES (?, ?, NULL, 'manual', ?, ?)", (int(track_id), int(gid), now, actor))

    def _recount(self, con: sqlite3.Connection, gids: Sequence[int]) -> None:
        for gid in gids:
            con.execute("UPDATE identities SET n_tracks=(SELECT COUNT(*) FROM tracks WHERE global_id=?) WHERE id=?",
                        (int(gid), int(gid)))

    def merge_identities(self, keep: int, other: int, actor: str) -> list[int]:
        """Move every track of ``other`` into ``keep`` (manual links); rejections of ``other`` carry over.
        Returns the moved track ids."""
        if int(keep) == int(other):
            raise UserError(f"cannot merge identity {keep} with itself")
        now = time.time()
        with self.transaction() as con:
            for gid in (keep, other):
                if not self._identity_exists(con, gid):
                    raise UserError(f"no identity {gid} in store {self.path}")
            moved = [r[0] for r in con.execute("SELECT id FROM tracks WHERE global_id=? ORDER BY id", (int(other),))]
            if not moved:
                raise UserError(f"identity {other} has no tracks to merge into {keep}")
            con.execute("UPDATE tracks SET global_id=? WHERE global_id=?", (int(keep), int(other)))
            for tid in moved:
                self._manual_link(con, tid, keep, actor, now)
            con.execute("INSERT INTO link_rejections(track_id, global_id, actor, created) "
                        "SELECT track_id, ?, actor, created FROM link_rejections WHERE global_id=? "
                        "ON CONFLICT (track_id, global_id) DO NOTHING", (int(keep), int(other)))
            self._recount(con, (keep, other))
            return moved

    def split_track(self, track_id: int, actor: str) -> tuple[int, int]:
        """Give a linked track an identity of its own (manual link; the old pair is rejected).
        Returns (old identity, new identity)."""
        now = time.time()
        with self.transaction() as con:
            _, _, old, _ = self._track(con, track_id)
            if old is None:
                raise UserError(f"track {track_id} has no identity to split it from")
            new = int(con.execute("INSERT INTO identities(created) VALUES (?) RETURNING id", (now,)).fetchone()[0])
            con.execute("UPDATE tracks SET global_id=? WHERE id=?", (new, int(track_id)))
            self._manual_link(con, track_id, new, actor, now)
            self._reject(con, track_id, old, actor, now)
            self._recount(con, (old, new))
            return int(old), new

    def confirm_link(self, track_id: int, actor: str) -> int:
        """Record the track's current link as manual (kept by later association and reembed); its identity."""
        with self.transaction() as con:
            _, _, gid, _ = self._track(con, track_id)
            if gid is None:
                raise UserError(f"track {track_id} has no identity to confirm")
            self._manual_link(con, track_id, gid, actor, time.time())
            return int(gid)

    def _reject(self, con: sqlite3.Connection, track_id: int, gid: int, actor: str, now: float) -> None:
        con.execute("INSERT INTO link_rejections(track_id, global_id, actor, created) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (track_id, global_id) DO NOTHING", (int(track_id), int(gid), actor, now))

    def reject_link(self, track_id: int, actor: str) -> int:
        """Unlink the track from its identity and remember the pair as rejected; returns that identity.
        The next association (of a run or reembed) links the track anew, never to that identity."""
        with self.transaction() as con:
            _, _, gid, _ = self._track(con, track_id)
            if gid is None:
                raise UserError(f"track {track_id} has no identity to reject")
            self._reject(con, track_id, gid, actor, time.time())
            con.execute("UPDATE tracks SET global_id=NULL WHERE id=?", (int(track_id),))
            self._recount(con, (gid,))
            return int(gid)

    def track_cameras(self, track_ids: Sequence[int]) -> list[str]:
        """Camera ids of the given tracks (missing tracks are skipped)."""
        out = []
        for chunk in _chunks(track_ids):
            clause, vals = _in("id", chunk)
            out += [r[0] for r in self._con.execute(f"SELECT camera_id FROM tracks WHERE {clause}", vals)]
        return out

    # ------------------------------------------------------------------ erasure
    def identity_tracks(self, gid: int) -> list[tuple[int, str]]:
        return [(int(t), c) for t, c in
                self._con.execute("SELECT id, camera_id FROM tracks WHERE global_id=? ORDER BY id", (int(gid),))]

    def _count(self, con: sqlite3.Connection, sql: str, ids: list[int]) -> int:
        total = 0
        for chunk in _chunks(ids):
            clause, vals = _in("track_id", chunk)
            total += int(con.execute(sql.format(clause=clause), vals).fetchone()[0])
        return total

    def _delete_tracks(self, con: sqlite3.Connection, ids: list[int]) -> dict[str, int]:
        """Delete tracks with every row that hangs on them; counts per kind."""
        counts = {
            "tracks": len(ids),
            "boxes": self._count(con, "SELECT COUNT(*) FROM boxes WHERE {clause}", ids),
            "samples": self._count(con, "SELECT COUNT(*) FROM samples WHERE {clause}", ids),
            "thumbnails": self._count(con, "SELECT COUNT(*) FROM samples WHERE {clause} AND thumbnail IS NOT NULL",
                                      ids),
        }
        for chunk in _chunks(ids):
            clause, vals = _in("track_id", chunk)
            con.execute(f"DELETE FROM pending_embeddings WHERE sample_id IN (SELECT id FROM samples WHERE {clause})",
                        vals)
            for table in ("boxes", "samples", "links", "link_rejections"):
                con.execute(f"DELETE FROM {table} WHERE {clause}", vals)
            clause, vals = _in("id", chunk)
            con.execute(f"DELETE FROM tracks WHERE {clause}", vals)
        return counts

    def forget_identity(self, gid: int) -> dict[str, int]:
        """Delete identity ``gid``: its tracks, boxes, samples (embeddings, thumbnails), links, rejections and
        the identity row. Counts per kind. Call :meth:`compact` after."""
        with self.transaction() as con:
            if not self._identity_exists(con, gid):
                raise UserError(f"no identity {gid} in store {self.path}")
            ids = [r[0] for r in con.execute("SELECT id FROM tracks WHERE global_id=?", (int(gid),))]
            counts = self._delete_tracks(con, ids)
            counts["embeddings"] = counts["samples"] + counts["tracks"]  # sample vectors + track means
            con.execute("DELETE FROM links WHERE global_id=?", (int(gid),))
            con.execute("DELETE FROM link_rejections WHERE global_id=?", (int(gid),))
            con.execute("DELETE FROM identities WHERE id=?", (int(gid),))
            return counts

    def purge_before(self, boxes: float | None, samples: float | None, thumbnails: float | None,
                     dry_run: bool = False) -> dict[str, int]:
        """Retention of ended tracks' rows: delete boxes older than ``boxes``, samples (with their embeddings)
        older than ``samples``, drop thumbnails older than ``thumbnails`` (epoch-second cutoffs; None = keep).
        Track counts and mean embeddings follow; tracks left with no box and no sample are deleted with
        their links, and identities left empty too. Counts per kind."""
        counts = {"boxes": 0, "samples": 0, "thumbnails": 0, "tracks": 0, "identities": 0}
        ended = "track_id IN (SELECT id FROM tracks WHERE ended=1)"
        with self.transaction() as con:
            touched: set[int] = set()
            if boxes is not None:
                where = f"time<? AND {ended}"
                counts["boxes"] = int(con.execute(f"SELECT COUNT(*) FROM boxes WHERE {where}", (boxes,)).fetchone()[0])
                touched |= {r[0] for r in con.execute(f"SELECT DISTINCT track_id FROM boxes WHERE {where}", (boxes,))}
                if not dry_run:
                    con.execute(f"DELETE FROM boxes WHERE {where}", (boxes,))
            if samples is not None:
                where = f"time<? AND {ended}"
                counts["samples"] = int(con.execute(f"SELECT COUNT(*) FROM samples WHERE {where}",
                                                    (samples,)).fetchone()[0])
                touched |= {r[0] for r in con.execute(f"SELECT DISTINCT track_id FROM samples WHERE {where}",
                                                      (samples,))}
                if not dry_run:
                    con.execute(f"DELETE FROM pending_embeddings WHERE sample_id IN (SELECT id FROM samples "
                                f"WHERE {where})", (samples,))
                    con.execute(f"DELETE FROM samples WHERE {where}", (samples,))
            if thumbnails is not None:
                where = f"time<? AND thumbnail IS NOT NULL AND {ended}"
                counts["thumbnails"] = int(con.execute(f"SELECT COUNT(*) FROM samples WHERE {where}",
                                                       (thumbnails,)).fetchone()[0])
                if not dry_run:
                    con.execute(f"UPDATE samples SET thumbnail=NULL WHERE {where}", (thumbnails,))
            if dry_run or not touched:
                return counts
            ids = sorted(touched)
            for chunk in _chunks(ids):
                clause, vals = _in("id", chunk)
                con.execute(f"UPDATE tracks SET n_boxes=(SELECT COUNT(*) FROM boxes b WHERE b.track_id=tracks.id), "
                            f"n_samples=(SELECT COUNT(*) FROM samples s WHERE s.track_id=tracks.id) WHERE {clause}",
                            vals)
            self._refresh_means(con, ids)
            empty = [r[0] for chunk in _chunks(ids) for r in con.execute(
                f"SELECT id FROM tracks WHERE {_in('id', chunk)[0]} AND n_boxes=0 AND n_samples=0", chunk)]
            gids = {r[0] for chunk in _chunks(empty) for r in con.execute(
                f"SELECT DISTINCT global_id FROM tracks WHERE {_in('id', chunk)[0]} AND global_id IS NOT NULL", chunk)}
            counts["tracks"] = self._delete_tracks(con, empty)["tracks"] if empty else 0
            self._recount(con, sorted(gids))
            for gid in sorted(gids):
                if not con.execute("SELECT 1 FROM tracks WHERE global_id=?", (gid,)).fetchone():
                    con.execute("DELETE FROM links WHERE global_id=?", (gid,))
                    con.execute("DELETE FROM link_rejections WHERE global_id=?", (gid,))
                    con.execute("DELETE FROM identities WHERE id=?", (gid,))
                    counts["identities"] += 1
            return counts

    def _refresh_means(self, con: sqlite3.Connection, track_ids: list[int]) -> None:
        """Recompute the mean embedding of the tracks from the samples they have left (NULL if none)."""
        for chunk in _chunks(track_ids):
            sums: dict[int, np.ndarray] = {}
            clause, vals = _in("track_id", chunk)
            for tid, blob in con.execute(f"SELECT track_id, embedding FROM samples WHERE {clause}", vals):
                v = np.frombuffer(blob, np.float32)
                sums[tid] = sums[tid] + v if tid in sums else v.copy()
            con.executemany("UPDATE tracks SET embedding=? WHERE id=?",
                            [(None if tid not in sums else
                              np.ascontiguousarray(l2_normalize(sums[tid]), np.float32).tobytes(), tid)
                             for tid in chunk])

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as con:
            con.execute("INSERT INTO meta(key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    def meta(self, key: str) -> str | None:
        row = self._con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def last_run_config(self) -> dict | None:
        row = self._con.execute("SELECT config FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else json.loads(row[0])

    def compact(self, full: bool = True, lock_timeout: float = 30.0) -> bool:
        """SQLite: VACUUM + WAL truncate (see :func:`.schema.compact`); True if the WAL was emptied.
        PostgreSQL (outside any transaction: VACUUM cannot run inside one): ``VACUUM FULL`` (``full``:
        each table rewritten into new files, so deleted rows leave the table files; writers of that
        table wait for its rewrite) or plain ``VACUUM`` (dead rows pruned and their space reusable,
        nothing waits) of the tables erasure and retention delete from, TOAST (thumbnails) included.
        A table another session keeps in use for ``lock_timeout`` s (a long query, a session left idle
        in a transaction) gets a plain VACUUM instead, and the result is False (run purge again)."""
        if self._backend is None:
            return schema.compact(self._con)
        if self._con.in_transaction:
            raise StoreError("compact() inside a transaction: commit first (VACUUM cannot run in one)")
        rewritten = True
        self._con.execute(f"SET lock_timeout = {int(lock_timeout * 1000)}")
        try:
            for table in ERASED_TABLES:
                if not full:
                    self._con.execute(f"VACUUM {table}")
                    continue
                try:
                    self._con.execute(f"VACUUM FULL {table}")
                except self._backend.errors as e:
                    if getattr(e, "sqlstate", None) != "55P03":  # lock_not_available
                        raise
                    rewritten = False
                    self._con.execute(f"VACUUM {table}")
        finally:
            self._con.execute("RESET lock_timeout")
        return rewritten

    # ------------------------------------------------------------------ PostgreSQL guards
    def live_cameras(self, cameras: Sequence[str]) -> dict[str, str]:
        """PostgreSQL, inside the open transaction: the cameras among ``cameras`` a live run writes now,
        camera -> who (its run and server pid). Every other one's advisory lock is taken for the rest of
        the transaction, so no run starts writing it before the transaction ends. SQLite: {}."""
        if self._backend is None:
            return {}
        from .postgres import camera_holder, try_camera_xact

        busy = {}
        for cam in sorted(set(cameras)):
            if not try_camera_xact(self._con, cam):
                busy[cam] = camera_holder(self._con, cam)
        return busy

    def open_tracks(self, gid: int) -> list[tuple[int, str]]:
        """(track id, camera) of the identity's tracks still being recorded (not ended)."""
        return [(int(t), c) for t, c in self._con.execute(
            "SELECT id, camera_id FROM tracks WHERE global_id=? AND ended=0 ORDER BY id", (int(gid),))]

    @contextmanager
    def retention_turn(self, wait: bool) -> Iterator[bool]:
        """PostgreSQL: hold the store's ``retention`` advisory lock (one purge at a time over all workers)
        for the block; yields False (without waiting) when ``wait`` is False and another purge holds it.
        SQLite: yields True (the store's writer lock already makes purges take turns)."""
        if self._backend is None:
            yield True
            return
        from .postgres import hold_lock, release_lock

        got = hold_lock(self._con, "retention", wait)
        try:
            yield got
        finally:
            if got:
                release_lock(self._con, "retention")
