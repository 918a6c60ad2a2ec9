"""The store's schema, its version (SQLite: ``PRAGMA user_version``) and the migrations between versions.

Written for SQLite; :mod:`.postgres` translates the same scripts for PostgreSQL (its version: the
``meta`` row ``schema_version``).

``MIGRATIONS[k]`` turns a version-k store into version k+1; a new store runs them all from 0, so
the newest schema is always what the migrations build. The writer migrates an older store in
one transaction; the read-only reader refuses one; a store newer than this code is refused by
both, in one line. Stores written before ``user_version`` was used carry their version in
``meta.schema_version`` and are read as that version.
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from .base import StoreError

PAGE_SIZE = 16384

_V1 = """
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

_V2_EMBEDDERS = """
CREATE TABLE embedders (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, dim INTEGER NOT NULL,
                        spec TEXT NOT NULL, created REAL NOT NULL);
INSERT INTO embedders(name, dim, spec, created)
    SELECT (SELECT value FROM meta WHERE key='embedder_id'),
           CAST((SELECT value FROM meta WHERE key='embedding_dim') AS INTEGER),
           COALESCE((SELECT value FROM meta WHERE key='embedder_spec'), '{}'), strftime('%s', 'now')
    WHERE EXISTS (SELECT 1 FROM meta WHERE key='embedder_id');
ALTER TABLE samples ADD COLUMN embedder_id INTEGER REFERENCES embedders(id);
ALTER TABLE samples ADD COLUMN embedded_from TEXT NOT NULL DEFAULT 'run';
UPDATE samples SET embedder_id=(SELECT id FROM embedders ORDER BY id LIMIT 1);
CREATE TABLE pending_embeddings (
    sample_id INTEGER PRIMARY KEY REFERENCES samples(id),
    embedder_id INTEGER NOT NULL REFERENCES embedders(id),
    embedding BLOB NOT NULL, embedded_from TEXT NOT NULL);
"""
"""v2: which embedder made each sample vector (``embedders``, ``samples.embedder_id``; ``embedded_from``:
``run`` = the live crop, ``video`` = re-read from the source, ``thumbnail`` = the stored thumbnail) and
``pending_embeddings``, where ``reembed`` stages the new vectors until it swaps them all in at once."""


_V3_INTERPOLATED = """
ALTER TABLE boxes ADD COLUMN interpolated INTEGER NOT NULL DEFAULT 0;
"""
"""v3: ``boxes.interpolated`` = 1 for a box the tracker filled in for a frame a track missed (0 = detected)."""

_V4_GOVERNANCE = """
CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT NOT NULL, cameras TEXT, password TEXT NOT NULL,
                    created REAL NOT NULL);
CREATE TABLE audit_log (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, actor TEXT NOT NULL,
                        action TEXT NOT NULL, details TEXT NOT NULL, prev_hash TEXT NOT NULL,
                        row_hash TEXT NOT NULL);
CREATE INDEX audit_log_time ON audit_log(time);
ALTER TABLE links ADD COLUMN actor TEXT;
CREATE TABLE link_rejections (track_id INTEGER NOT NULL REFERENCES tracks(id), global_id INTEGER NOT NULL,
                              actor TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (track_id, global_id));
CREATE INDEX samples_time ON samples(time);
"""
"""v4 (data protection, issue 11): ``users`` (role, camera scope as a JSON list or NULL = all, scrypt
password record), ``audit_log`` (append-only, hash-chained; ``meta.audit_anchor`` holds the hash of
the last row purged by retention), ``links.actor`` (who made a ``manual`` link; NULL = automatic) and
``link_rejections`` (track/identity pairs an operator rejected: association never links them again)."""

_V5_CAMERA_STATUS = """
CREATE TABLE camera_status (camera_id TEXT PRIMARY KEY, run_id INTEGER, state TEXT NOT NULL, frames INTEGER NOT NULL,
                            fps REAL, last_frame_time REAL, last_error TEXT, updated REAL NOT NULL);
"""
"""v5: ``camera_status``, each camera's heartbeat written by the run that reads it, with its commits: state
('live', 'reconnecting', 'ended', 'failed'), frames read this run, frames/s since the previous heartbeat,
time (epoch s) of the last frame, the reader's last error and when the row was written (epoch s)."""

_V6_FILTER_INDEX = """
DROP INDEX IF EXISTS tracks_camera_time;
CREATE INDEX IF NOT EXISTS tracks_camera_time ON tracks(camera_id, start_time, end_time, n_samples, global_id);
"""
"""v6: ``tracks_camera_time`` also holds the columns a search's camera/time filter reads (end time, sample
count, identity), so the filter is answered from the index alone: on 625k tracks, 7 ms instead of 31 ms
(one table lookup per track of the camera that started before the window's end)."""

MIGRATIONS: tuple[str, ...] = (_V1, _V2_EMBEDDERS, _V3_INTERPOLATED, _V4_GOVERNANCE, _V5_CAMERA_STATUS,
                               _V6_FILTER_INDEX)
"""SQL scripts; ``MIGRATIONS[k]`` migrates version k to k + 1 (version 0 = an empty database)."""
SCHEMA_VERSION = len(MIGRATIONS)


def connect(path: Path, readonly: bool, immutable: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (the store issues BEGIN/COMMIT itself); StoreError if it cannot open.

    immutable (read-only only): SQLite's ``immutable=1``: no locks, no ``-shm`` file, the ``-wal``
    file ignored; for a store on a read-only filesystem, where ``mode=ro`` cannot create the ``-shm``."""
    try:
        if readonly:
            query = "?mode=ro&immutable=1" if immutable else "?mode=ro"
            return sqlite3.connect(path.resolve().as_uri() + query, uri=True, isolation_level=None,
                                   check_same_thread=False, timeout=10.0)
        path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10.0)
    except (OSError, sqlite3.Error) as e:
        raise StoreError(f"cannot open store {path} ({e}): check the path and its permissions") from None


def database_error(path: Path, e: sqlite3.DatabaseError) -> StoreError:
    """The one-line StoreError for a SQLite error met while opening ``path``."""
    if "not a database" in str(e) or "malformed" in str(e):
        return StoreError(f"{path} is not a track store ({e}): pass another --db path")
    return StoreError(f"cannot open store {path} ({e}): check the path and its permissions")


def tables(con: sqlite3.Connection) -> set[str]:
    return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def schema_version(con: sqlite3.Connection, path: Path) -> int:
    """The store's schema version; StoreError if the database is empty or not a track store."""
    names = tables(con)
    if not names:
        raise StoreError(f"{path} is an empty database, not a track store: run `python -m pipeline run` first")
    if "meta" not in names:
        raise StoreError(f"{path} is a SQLite database but not a track store: pass another --db path")
    version = int(con.execute("PRAGMA user_version").fetchone()[0])
    if version == 0:  # written before user_version was used
        row = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row is not None else 0
    return version


def check_version(version: int, path: Path, can_migrate: bool) -> None:
    """Refuse, in one line, a version this code cannot read (newer) or may not migrate (older, read-only)."""
    if version > SCHEMA_VERSION:
        raise StoreError(f"store {path} has schema v{version}, newer than this code's v{SCHEMA_VERSION}: "
                         "upgrade camreid or use another --db")
    if version < SCHEMA_VERSION and not can_migrate:
        raise StoreError(f"store {path} has schema v{version}, this code reads v{SCHEMA_VERSION}: migrate it once "
                         f"with `python -m pipeline index --db {path}` (or any run on it), or use another --db")


def create(con: sqlite3.Connection, meta: dict[str, str]) -> None:
    """Build the newest schema in an empty database with ``meta`` rows (what the store is built with),
    in one transaction. The page size goes first: the first table fixes it."""
    con.execute(f"PRAGMA page_size={PAGE_SIZE}")
    con.execute("PRAGMA journal_mode=WAL")
    migrate(con, 0, meta)


def migrate(con: sqlite3.Connection, version: int, meta: dict[str, str] | None = None) -> None:
    """Apply ``MIGRATIONS[version:]`` (then insert ``meta`` rows) and stamp ``user_version``, in one transaction."""
    con.execute("BEGIN")
    try:
        for script in MIGRATIONS[version:]:
            for stmt in script.split(";"):
                if stmt.strip():
                    con.execute(stmt)
        if meta:
            con.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", meta.items())
        con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def connect_side(path: Path) -> sqlite3.Connection:
    """A writable connection for short transactions beside a running writer (users, audit, corrections,
    erasure; see :mod:`.governance`): busy timeout 10 s, foreign keys on; migrates an older store."""
    con = connect(path, readonly=False)
    try:
        version = schema_version(con, path)
        check_version(version, path, can_migrate=True)
        if con.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            migrate(con, version)
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten with zeros, not left in free pages
    except sqlite3.DatabaseError as e:
        con.close()
        raise database_error(path, e) from None
    except BaseException:
        con.close()
        raise
    return con


def compact(con: sqlite3.Connection) -> bool:
    """VACUUM, then checkpoint and truncate the WAL, so deleted rows leave the file bytes; True if the
    WAL could be emptied (a reader holding an old snapshot keeps it until it closes)."""
    import time

    con.execute("VACUUM")
    deadline = time.monotonic() + 5.0  # readers' queries are short: retry while one holds a snapshot
    while True:
        busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy or time.monotonic() > deadline:
            return not busy
        time.sleep(0.05)


def embedder_row(con, name: str, dim: int, spec: str) -> int:
    """The ``embedders`` row of an embedder (created if absent); its id. Any backend's connection."""
    con.execute("INSERT INTO embedders(name, dim, spec, created) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                (name, int(dim), spec, float(int(time.time()))))
    return int(con.execute("SELECT id FROM embedders WHERE name=?", (name,)).fetchone()[0])
