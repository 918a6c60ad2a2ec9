"""One writer per store: an exclusive OS lock on ``<store>.lock``, held for the writer's lifetime.

    lock = WriterLock.acquire(Path("store.db"))   # StoreBusyError if another writer holds it
    lock.note_run(7)                              # what a refused second writer is told
    lock.release()

The lock is ``flock`` on a small file beside the store, so the kernel drops it when the holding
process ends in any way (``kill -9`` included): a lock is never left stale. The file also holds
the holder's pid and run id (JSON) for the refusal message. ``release`` deletes it (a killed
writer leaves it behind, harmlessly: the next writer locks it again); a writer that locked a file
some releasing writer had just deleted notices (the path no longer names its file) and retries.
``acquire`` also checks, before any model is loaded, that the store can be written at all
(folder creatable and writable, the store file and its WAL files writable). Platforms without
``fcntl`` (Windows) get the checks but no lock.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from .base import StoreBusyError, StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def lock_path(db_path: Path) -> Path:
    """``<store>.lock``, beside the store file."""
    return db_path.with_name(db_path.name + ".lock")


def _why(e: OSError) -> str:
    return e.strerror or type(e).__name__


def check_writable(db_path: Path) -> None:
    """StoreError naming the file or folder if a store at ``db_path`` cannot be created or written.

    Creates missing parent folders (as the store does). A store needs its folder writable too: SQLite
    keeps ``-wal`` and ``-shm`` files beside it.
    """
    if db_path.is_dir():
        raise StoreError(f"store path {db_path} is a folder: pass a file path such as {db_path / 'store.db'}")
    folder = db_path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create folder {folder} for store {db_path} ({_why(e)}): "
                         "pass a --db in a writable folder") from None
    if not folder.is_dir():
        raise StoreError(f"store {db_path}: {folder} is not a folder; pass another --db")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(f"cannot write store {db_path}: folder {folder} is read-only (SQLite keeps its -wal "
                         "and -shm files beside the store): pass a --db in a writable folder")
    for path in (db_path, db_path.with_name(db_path.name + "-wal"), db_path.with_name(db_path.name + "-shm")):
        if not path.exists():
            continue
        try:
            os.close(os.open(path, os.O_RDWR))
        except OSError as e:
            raise StoreError(f"store file {path} is read-only ({_why(e)}): make it writable "
                             "or pass another --db") from None


class WriterLock:
    """The held writer lock of one store (see module docstring); :meth:`acquire` makes one."""

    def __init__(self, db_path: Path, fd: int | None) -> None:
        self.db_path, self._fd = db_path, fd

    @classmethod
    def acquire(cls, db_path: str | Path) -> WriterLock:
        """Check the store is writable, then take its lock without waiting.

        StoreError if it cannot be written; StoreBusyError ("being written by run N, pid P") if
        another writer (this process included) holds it.
        """
        db_path = Path(db_path)
        check_writable(db_path)
        path = lock_path(db_path)
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise StoreError(f"cannot create the writer lock {path} of store {db_path} ({_why(e)}): "
                                 "pass a --db in a writable folder") from None
            if fcntl is None:  # pragma: no cover
                return cls(db_path, fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(fd)
                os.close(fd)
                raise StoreBusyError(f"store {db_path} is being written by {_describe(holder)}: one run writes "
                                     "a store at a time; wait for it to end, stop it, or pass another --db") from None
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # locked a file a releasing writer had just deleted: lock the new one
        lock = cls(db_path, fd)
        lock._write_holder(None)
        return lock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def claim(self, cameras) -> None:
        """Nothing to do: the lock holds every camera of the store (PostgreSQL claims them one by one)."""

    def hold_run(self, run_id: int) -> None:
        """Nothing to do: while this lock is held no other run is live."""

    def note_run(self, run_id: int | None) -> None:
        """Record the run id this writer is writing (shown to a refused second writer)."""
        if self._fd is not None:
            self._write_holder(run_id)

    def _write_holder(self, run_id: int | None) -> None:
        text = json.dumps({"pid": os.getpid(), "run_id": run_id, "since": time.time()}).encode()
        with contextlib.suppress(OSError):  # the lock holds without the note (e.g. a full disk)
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, text, 0)

    def release(self) -> None:
        """Give the lock up and delete the lock file (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(lock_path(self.db_path))  # while still holding it (see acquire's retry)
        os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    pid = holder.get("pid")
    who = f"pid {pid}" if pid else "another process"
    if pid == os.getpid():
        who = f"this process (pid {pid})"
    run = holder.get("run_id")
    return f"run {run} ({who})" if run is not None else f"a run that is starting ({who})"
