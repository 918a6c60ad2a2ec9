"""TrackStore under faults: a second writer (same process and a real second process), a write that
fails between a batch's rows and its counts, a full disk (a real tmpfs), a final commit that fails,
read-only files and folders."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import StoreConfig
from pipeline.store import StoreBusyError, StoreError, StoreReader, StoreWriteError, TrackStore, WriterLock
from pipeline.types import Detections, Frame

from ..fs_helpers import read_only_folder, tiny_fs
from .test_store import DIM, PERSON_BOXES, T0, add_track, clip_frames, crop, make_store, sql, unit

ROOT = Path(__file__).resolve().parents[3]


def _counts_match_rows(db: Path) -> None:
    """Every track's n_boxes / n_samples equal the rows they count (what a reader relies on)."""
    rows = sql(db, "SELECT t.id, t.n_boxes, (SELECT COUNT(*) FROM boxes b WHERE b.track_id=t.id), "
                   "t.n_samples, (SELECT COUNT(*) FROM samples s WHERE s.track_id=t.id) FROM tracks t")
    bad = [r for r in rows if r[1] != r[2] or r[3] != r[4]]
    assert not bad, f"(track, n_boxes, boxes rows, n_samples, samples rows) disagree: {bad}"


# ----------------------------------------------------------------------------- one writer per store
def test_a_second_writer_is_refused_naming_the_run_and_pid(tmp_path):
    db = tmp_path / "s.db"
    first = make_store(db)
    with pytest.raises(StoreBusyError, match=rf"being written by a run that is starting \(this process \(pid "
                                             rf"{os.getpid()}\)\)"):
        make_store(db)
    run = first.start_run()
    with pytest.raises(StoreBusyError) as e:
        make_store(db)
    assert f"run {run}" in str(e.value) and str(db) in str(e.value) and "\n" not in str(e.value)
    with StoreReader(db) as reader:  # readers are not writers: never refused
        assert reader.runs()[0][0] == run
    first.close()
    second = make_store(db)  # the lock went with close()
    assert second.start_run() == run + 1
    second.close()


_HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from tests.pipeline.store.test_store import make_store, add_track, unit
    import numpy as np
    store = make_store(__import__("pathlib").Path(sys.argv[1]), commit_interval=0.001)
    store.start_run()
    add_track(store, "cam1", 1, 0.0, 1.0, unit(np.random.default_rng(0)), end=False)  # a track still open
    store.commit()
    print("ready", flush=True)
    time.sleep(600)
""")


def test_a_live_writer_process_keeps_its_store_until_it_dies(tmp_path):
    """Two real processes: while the first writes, the second is refused and changes nothing (the first's
    open track stays open); once the first is killed (-9), the lock is gone and the next writer closes
    out the dead run's open track."""
    db, script = tmp_path / "s.db", tmp_path / "holder.py"
    script.write_text(_HOLDER)
    proc = subprocess.Popen([sys.executable, str(script), str(db), str(ROOT)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(StoreBusyError, match=rf"being written by run 1 \(pid {proc.pid}\)"):
            make_store(db)
        assert sql(db, "SELECT run_id, ended FROM tracks") == [(1, 0)]  # not ended by the refused writer
        assert sql(db, "SELECT COUNT(*) FROM runs") == [(1,)]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    store = make_store(db)  # no stale lock after kill -9
    assert store.start_run() == 2
    assert sql(db, "SELECT run_id, ended FROM tracks") == [(1, 1)]  # the dead run's track closed out
    store.close()


def test_a_lock_taken_first_is_handed_to_the_store_and_released_by_it(tmp_path):
    """The runner takes the lock before loading models and hands it over to the store."""
    db = tmp_path / "s.db"
    lock = WriterLock.acquire(db)
    assert lock.held and (tmp_path / "s.db.lock").exists()
    with pytest.raises(StoreBusyError):
        WriterLock.acquire(db)
    store = TrackStore(StoreConfig(path=str(db)), "test-embedder-v1", DIM, None, writer_lock=lock)
    with pytest.raises(StoreBusyError):
        make_store(db)
    store.close()
    assert not lock.held and not (tmp_path / "s.db.lock").exists()
    WriterLock.acquire(db).release()
    with pytest.raises(ValueError, match="not a held lock"):
        TrackStore(StoreConfig(path=str(db)), "test-embedder-v1", DIM, None, writer_lock=lock)
    # a store that fails to open gives the lock back
    (tmp_path / "bad.db").write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="not a track store"):
        make_store(tmp_path / "bad.db")
    WriterLock.acquire(tmp_path / "bad.db").release()


# ----------------------------------------------------------------------------- failed writes
class _FailingConnection:
    """The writer's sqlite3 connection, failing statements that start with ``fail_on`` (disk full)."""

    def __init__(self, con: sqlite3.Connection, fail_on: str) -> None:
        self._con, self.fail_on, self.armed = con, fail_on, True

    def _check(self, statement: str) -> None:
        if self.armed and statement.lstrip().upper().startswith(self.fail_on):
            raise sqlite3.OperationalError("database or disk is full")

    def execute(self, statement, *args):
        self._check(statement)
        return self._con.execute(statement, *args)

    def executemany(self, statement, *args):
        self._check(statement)
        return self._con.executemany(statement, *args)

    def __getattr__(self, name):
        return getattr(self._con, name)


def _frame(k: int, local_ids=(1,)) -> tuple[Frame, Detections]:
    img = clip_frames()[k % 12]
    boxes = [PERSON_BOXES[i % 3] for i in range(len(local_ids))]
    return Frame("cam1", k, T0 + k / 10, img), Detections.from_arrays(boxes, [0.9] * len(boxes),
                                                                      track_id=list(local_ids))


def test_a_failed_box_insert_rolls_the_batch_back_counts_included(tmp_path):
    """The fault seen on a nearly full disk: counts committed without the rows they count. A failure between
    the count update and the row insert must roll back both; the writer then carries on from the last commit."""
    db = tmp_path / "s.db"
    store = make_store(db, commit_interval=3600)
    store.start_run()
    for k in range(3):
        store.record_frame(*_frame(k))
    store.commit()  # committed: track 1 with 3 boxes
    store.record_frame(*_frame(3, (1, 2)))  # in the open batch: a 4th box of track 1, new track 2
    real = store._con
    store._con = _FailingConnection(real, "INSERT OR REPLACE INTO BOXES")
    with pytest.raises(StoreWriteError, match=r"cannot write store .*s\.db \(database or disk is full\): the last "
                                              r".* s of run 1 \(1 new tracks, 2 boxes\) were rolled back"):
        store.record_frame(*_frame(4, (1, 2)))
    store._con = real
    assert store.lost is not None and store.lost.boxes == 2
    store.record_frame(*_frame(5))  # carries on
    store.close()
    _counts_match_rows(db)
    assert sql(db, "SELECT local_id, n_boxes, start_frame, end_frame FROM tracks") == [(1, 4, 0, 5)]
    assert sql(db, "SELECT frame FROM boxes ORDER BY frame") == [(0,), (1,), (2,), (5,)]


def test_a_failed_final_commit_still_closes_and_says_what_was_lost(tmp_path):
    db = tmp_path / "s.db"
    store = make_store(db, commit_interval=3600)
    store.start_run()
    store.record_frame(*_frame(0))
    store.commit()
    for k in range(1, 4):
        store.record_frame(*_frame(k, (1, 2)))
    store._con = _FailingConnection(store._con, "COMMIT")
    with pytest.raises(StoreWriteError) as e:
        store.close()
    msg = str(e.value)
    assert "\n" not in msg and f"final commit of store {db} failed (database or disk is full)" in msg
    assert "1 new tracks, 6 boxes" in msg and "run 1" in msg and "stays marked unfinished" in msg
    with pytest.raises(sqlite3.ProgrammingError):  # the connection is closed ...
        store._con._con.execute("SELECT 1")
    WriterLock.acquire(db).release()  # ... and the lock released
    store.close()  # idempotent
    _counts_match_rows(db)
    assert sql(db, "SELECT local_id, n_boxes, ended FROM tracks") == [(1, 1, 0)]  # what the last commit held
    assert sql(db, "SELECT finished FROM runs") == [(None,)]


def test_a_full_disk_keeps_counts_and_rows_in_step(tmp_path):
    """A real full disk (a 2 MiB tmpfs): writing stops with StoreWriteError; what is stored is consistent."""
    rng = np.random.default_rng(0)
    with tiny_fs(tmp_path / "disk", 2048) as disk:
        db = disk / "s.db"
        store = make_store(db, commit_interval=0.001)
        store.start_run()
        failure = None
        try:
            for k in range(100_000):
                frame, dets = _frame(k, (1, 2, 3))
                store.record_frame(frame, dets)
                emb = Detections.from_arrays(dets.xyxy, dets.confidence, track_id=dets.track_id,
                                             embedding=np.stack([unit(rng) for _ in range(3)]))
                store.add_samples(frame, emb, [0, 1, 2], [crop(frame.image, b) for b in dets.xyxy])
                store.maybe_commit()
        except StoreWriteError as e:
            failure = e
        assert failure is not None and "full" in str(failure) and "\n" not in str(failure)
        try:
            store.close()
        except StoreWriteError as e:  # the final commit may fail too: it says so, and still closes
            assert "final commit" in str(e)
        WriterLock.acquire(db).release()
        assert sql(db, "PRAGMA integrity_check") == [("ok",)]
        _counts_match_rows(db)
        assert sql(db, "SELECT COUNT(*) FROM boxes")[0][0] > 10


# ----------------------------------------------------------------------------- read-only places
def _a_store(folder: Path) -> None:
    store = make_store(folder / "s.db")
    store.start_run()
    add_track(store, "cam1", 1, 0, 1, unit(np.random.default_rng(1)))
    store.close()


def test_read_only_store_file_and_folders_are_refused_in_one_line(tmp_path):
    with read_only_folder(tmp_path / "ro", _a_store) as ro:
        for db, words in ((ro / "s.db", ("read-only", str(ro))),        # an existing store there
                          (ro / "new.db", ("read-only", str(ro))),      # a new store in a read-only folder
                          (ro / "sub" / "new.db", ("cannot create folder", str(ro / "sub")))):
            with pytest.raises(StoreError) as e:
                make_store(db)
            assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)
        assert sorted(p.name for p in ro.iterdir()) == ["s.db"]  # untouched: no lock, WAL or new file
    if os.geteuid() == 0:
        return
    # a read-only file in a writable folder (not possible for root: permission bits do not bind it)
    _a_store(tmp_path)
    (tmp_path / "s.db").chmod(0o444)
    with pytest.raises(StoreError, match=rf"store file {tmp_path / 's.db'} is read-only"):
        make_store(tmp_path / "s.db")
