"""Where a store lives: a SQLite file (the default) or a PostgreSQL database (a ``postgresql://`` URL).

    backend = open_backend("runs/demo.db")                       # SqliteBackend
    backend = open_backend("postgresql://camreid@localhost/cams")  # PostgresBackend (needs psycopg)

A backend opens connections that speak the store's one SQL dialect (``?`` placeholders, ``ON
CONFLICT``, ``RETURNING``; see :mod:`.postgres` for how it is translated), builds or migrates the
schema of :mod:`.schema`, and guards writers: SQLite has one writer per file (:class:`.WriterLock`,
an flock); PostgreSQL has many writers at once, each holding its cameras and its run with
advisory locks (:class:`.postgres.WriterClaims`), and identities written under an advisory lock.
The writer and the reader (:mod:`.writer`, :mod:`.reader`) hold the SQL; nothing else differs.
"""
from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from pipeline.config.schema import STORE_URL_SCHEMES

from . import schema
from .base import StoreError, require_store
from .lock import WriterLock


def is_url(db: object) -> bool:
    """True for a PostgreSQL URL (``postgresql://`` or ``postgres://``), False for a file path."""
    return isinstance(db, str) and db.strip().lower().startswith(STORE_URL_SCHEMES)


def store_location(db: str | Path) -> str | Path:
    """``db`` as the store's location: a URL stays a string, anything else becomes a Path."""
    return db.strip() if is_url(db) else Path(db)


def sidecar_base(db: str | Path) -> Path:
    """The path whose ``<base>.index/``, ``<base>.index.lock`` and ``<base>.embedder/`` hold a store's
    local search index and ONNX query embedder: the store file itself, or for a PostgreSQL URL a local
    folder per database, ``$CAMREID_INDEX_DIR`` (default ``~/.cache/camreid/index``) /
    ``<sha256 of host, port, dbname and options>[:16]/store``: no user or password in it, so every user
    of one machine querying one database shares one copy; each machine keeps its own."""
    if not is_url(db):
        return Path(db)
    import hashlib
    import os
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(str(db).strip())
    query = {k: v for k, v in parse_qsl(parts.query) if k in ("host", "hostaddr", "port", "dbname", "options")}
    key = "|".join([parts.hostname or "", str(parts.port or ""), parts.path.lstrip("/"),
                    *(f"{k}={query[k]}" for k in sorted(query))])
    root = Path(os.environ.get("CAMREID_INDEX_DIR") or Path.home() / ".cache" / "camreid" / "index").expanduser()
    return root / hashlib.sha256(key.encode()).hexdigest()[:16] / "store"  # made by the first index update


def open_backend(db: str | Path) -> Backend:
    """The backend of the store at ``db`` (a file path or a PostgreSQL URL); nothing is opened yet."""
    if is_url(db):
        from .postgres import PostgresBackend

        return PostgresBackend(str(db).strip())
    return SqliteBackend(Path(db))


class Backend:
    """What the writer and the reader need of a database (see module docstring).

    display: the store as shown in messages (a path, or the URL without its password);
    errors: the database driver's exception classes; shared: True where several writers may write
    at once (PostgreSQL), so a run leaves linking identities to ``pipeline associate --follow``.
    """

    display: str | Path
    errors: tuple[type[BaseException], ...]
    shared: bool = False

    def writer_lock(self, cameras=()):  # pragma: no cover - interface
        raise NotImplementedError

    def same_lock(self, lock) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def connect(self, readonly: bool):  # pragma: no cover - interface
        raise NotImplementedError

    def tables(self, con) -> set[str]:  # pragma: no cover - interface
        raise NotImplementedError

    def prepare_writer(self, con, new_meta: dict[str, str]) -> None:  # pragma: no cover - interface
        """Create the newest schema with ``new_meta`` in an empty database, or migrate an older one."""
        raise NotImplementedError

    def check_reader(self, con) -> None:  # pragma: no cover - interface
        """StoreError unless the database is a store of the version this code reads."""
        raise NotImplementedError

    def end_dead_runs(self, con) -> None:  # pragma: no cover - interface
        """Mark ended the open tracks of runs that never finished and whose writer is gone."""
        raise NotImplementedError

    def lock_identities(self, con) -> None:  # pragma: no cover - interface
        """Inside the open transaction: wait until no other writer is linking identities."""
        raise NotImplementedError

    def database_error(self, e: BaseException) -> StoreError:  # pragma: no cover - interface
        raise NotImplementedError


class SqliteBackend(Backend):
    """A store file (SQLite, WAL): one writer at a time (flock on ``<store>.lock``), readers any time."""

    errors = (sqlite3.Error,)

    def __init__(self, path: Path) -> None:
        self.path = self.display = Path(path)

    def writer_lock(self, cameras=()) -> WriterLock:
        return WriterLock.acquire(self.path)

    def same_lock(self, lock) -> bool:
        return isinstance(lock, WriterLock) and Path(lock.db_path) == self.path

    def connect(self, readonly: bool) -> sqlite3.Connection:
        if readonly:
            return _connect_readonly(require_store(self.path))
        return schema.connect(self.path, readonly=False)

    def tables(self, con) -> set[str]:
        return schema.tables(con)

    def prepare_writer(self, con, new_meta: dict[str, str]) -> None:
        if not schema.tables(con):
            schema.create(con, new_meta)
        else:
            version = schema.schema_version(con, self.path)
            schema.check_version(version, self.path, can_migrate=True)
            if con.execute("PRAGMA user_version").fetchone()[0] != schema.SCHEMA_VERSION:
                schema.migrate(con, version)  # older, or of the days before user_version: stamp it
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA foreign_keys=ON")

    def check_reader(self, con) -> None:
        version = schema.schema_version(con, self.path)
        schema.check_version(version, self.path, can_migrate=False)

    def end_dead_runs(self, con) -> None:
        # safe: this writer holds the store's lock, so no earlier run is still writing
        con.execute("UPDATE tracks SET ended=1 WHERE ended=0 AND run_id IN "
                    "(SELECT id FROM runs WHERE finished IS NULL)")

    def lock_identities(self, con) -> None:
        return None  # the one writer of the file links alone

    def database_error(self, e: BaseException) -> StoreError:
        return schema.database_error(self.path, e)


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """``mode=ro``, or ``immutable=1`` where a read-only folder (read-only mount, CD, ``chattr +i``)
    keeps SQLite from creating the WAL index (``-shm``) that ``mode=ro`` needs. A leftover ``-wal``
    file there (its writer was killed) holds rows ``immutable`` would miss: refused in one line."""
    con = schema.connect(path, readonly=True)
    try:
        con.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return con
    except sqlite3.DatabaseError as e:
        con.close()
        if "unable to open" not in str(e):
            raise schema.database_error(path, e) from None
    wal = path.with_name(path.name + "-wal")
    if wal.is_file() and wal.stat().st_size > 0:
        raise StoreError(f"cannot open store {path} read-only: its folder is read-only and {wal.name} holds rows "
                         "not yet in the store file; copy the store with its -wal file to a writable folder")
    return schema.connect(path, readonly=True, immutable=True)


def close_quietly(con) -> None:
    with contextlib.suppress(Exception):
        con.close()
