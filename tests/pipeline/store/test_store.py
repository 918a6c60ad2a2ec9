"""TrackStore / StoreReader: schema and its versions, append across runs, embedder checks, bad files,
kill -9 durability.

Frames and thumbnails are real (cut from streams/vtest.avi). No embedder exists in this package's
tests yet, so embeddings are generated unit vectors with chosen cosines; the helpers below are
shared with the associate/query/export tests.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.config import StoreConfig
from pipeline.store import PAGE_SIZE, SCHEMA_VERSION, StoreError, StoreReader, TrackStore
from pipeline.store.backend import is_url
from pipeline.store.schema import MIGRATIONS
from pipeline.types import Detections, Frame

ROOT = Path(__file__).resolve().parents[3]
CLIP = ROOT / "streams" / "vtest.avi"
T0 = 1_700_000_000.0  # epoch seconds of the synthetic timeline
DIM = 32
# Person boxes (x1, y1, x2, y2) in the clip's first frames.
PERSON_BOXES = ((250, 218, 285, 308), (498, 155, 532, 233), (636, 238, 688, 322))


@lru_cache(maxsize=1)
def clip_frames(n: int = 12) -> tuple[np.ndarray, ...]:
    """The first n real frames of the demo clip, (576, 768, 3) BGR."""
    cap = cv2.VideoCapture(str(CLIP))
    frames = []
    while len(frames) < n:
        ok, img = cap.read()
        assert ok, f"cannot read {CLIP}"
        frames.append(img)
    cap.release()
    return tuple(frames)


def crop(image: np.ndarray, box) -> np.ndarray:
    x1, y1, x2, y2 = (int(v) for v in box)
    return image[y1:y2, x1:x2]


def thumbnail_shape(box, height: int = StoreConfig().thumbnail_height) -> tuple[int, int, int]:
    """Shape of the stored thumbnail of a crop ``box``: ``height`` pixels high, aspect kept."""
    x1, y1, x2, y2 = (int(v) for v in box)
    return height, max(1, round((x2 - x1) * height / (y2 - y1))), 3


def unit(rng: np.random.Generator, d: int = DIM) -> np.ndarray:
    v = rng.standard_normal(d).astype(np.float32)
    return v / np.linalg.norm(v)


def near(v: np.ndarray, cos: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector whose cosine with unit vector v is exactly ``cos``."""
    w = rng.standard_normal(v.shape).astype(np.float32)
    w -= (w @ v) * v
    w /= np.linalg.norm(w)
    return (cos * v + np.sqrt(1 - cos**2) * w).astype(np.float32)


def make_store(path: Path, **kw) -> TrackStore:
    return TrackStore(StoreConfig(path=str(path), **kw), "test-embedder-v1", DIM, {"name": "generated-unit-vectors"})


def sql(path: Path | str, query: str) -> list[tuple]:
    """Rows of a read-only SQL query on the SQLite file or PostgreSQL URL (backend checks and diagnostics)."""
    if is_url(path):
        import psycopg

        with psycopg.connect(path, autocommit=True) as con:
            return [tuple(r) for r in con.execute(query).fetchall()]
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def reader_errors(db) -> tuple[type[Exception], ...]:
    """The driver errors a store's connection raises (sqlite3's or psycopg's)."""
    if is_url(db):
        import psycopg

        return (psycopg.Error,)
    return (sqlite3.Error,)


def wait_for_no_session(url: str, application: str, timeout: float = 10.0) -> None:
    """Wait until no PostgreSQL session whose application_name starts with ``application`` is left."""
    import time

    deadline = time.monotonic() + timeout
    while sql(url, f"SELECT COUNT(*) FROM pg_stat_activity WHERE application_name LIKE '{application}%'")[0][0]:
        assert time.monotonic() < deadline, f"a session {application!r} outlived its process"
        time.sleep(0.05)


def add_track(store: TrackStore, camera: str, local_id: int, t0: float, t1: float,
              embeddings: np.ndarray, n_frames: int = 3, person: int = 0, end: bool = True) -> int:
    """Record a track of ``camera`` seen from T0+t0 to T0+t1 (seconds) in n_frames real frames, with
    one sample per embedding row (real crops as thumbnails); returns its track pk."""
    embeddings = np.atleast_2d(embeddings).astype(np.float32)
    times = np.linspace(t0, t1, n_frames)
    box = PERSON_BOXES[person % len(PERSON_BOXES)]
    for k, t in enumerate(times):
        img = clip_frames()[k % 12]
        frame = Frame(camera, int(round(t * 10)), T0 + float(t), img)
        dets = Detections.from_arrays([box], [0.9], track_id=[local_id])
        store.record_frame(frame, dets)
        rows = [e for j, e in enumerate(embeddings) if j % n_frames == k]
        if rows:
            d = Detections.from_arrays([box] * len(rows), [0.9] * len(rows), track_id=[local_id] * len(rows),
                                       embedding=np.stack(rows))
            store.add_samples(frame, d, np.arange(len(rows)), [crop(img, box)] * len(rows))
    if end:
        store.end_tracks(camera, [local_id])
    return store.reader.tracks(camera=camera, run_id=store.run_id)[-1].id if end else -1


# ----------------------------------------------------------------------------- tests
def test_schema_wal_page_size_and_new_folder(tmp_path):
    path = tmp_path / "not" / "yet" / "store.db"
    store = make_store(path)
    assert path.exists()
    con = store._con  # the writer's own connection: its session settings
    assert con.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert con.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert sql(path, "PRAGMA journal_mode")[0][0] == "wal"
    assert sql(path, "PRAGMA page_size")[0][0] == PAGE_SIZE
    assert sql(path, "PRAGMA user_version")[0][0] == SCHEMA_VERSION
    tables = {r[0] for r in sql(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"meta", "runs", "cameras", "tracks", "boxes", "samples", "identities", "links"} <= tables
    indexes = {r[0] for r in sql(path, "SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"tracks_camera_time", "tracks_end_time", "samples_track"} <= indexes
    store.close()
    reread = StoreReader(path)  # read-only open keeps what the store was built with
    assert (reread.embedder_id, reread.embedding_dim) == ("test-embedder-v1", DIM)
    assert reread.embedder_spec == {"name": "generated-unit-vectors"}
    reread.close()


def test_record_and_read_back(store_db):
    _, db = store_db
    rng = np.random.default_rng(0)
    store = make_store(db)
    store.start_run({"cameras": ["cam1"]})
    store.add_camera("cam1", str(CLIP), {"fps": 10})
    embs = np.stack([unit(rng) for _ in range(3)])
    pk = add_track(store, "cam1", 7, 0.0, 2.0, embs)
    open_pk = add_track(store, "cam1", 8, 1.0, 3.0, embs[:1], person=1, end=False)
    store.close()

    store = StoreReader(db)
    tracks = {t.local_id: t for t in store.tracks()}
    t = tracks[7]
    assert (t.id, t.camera_id, t.n_boxes, t.n_samples, t.ended, t.global_id) == (pk, "cam1", 3, 3, True, None)
    assert (t.start_time, t.end_time, t.start_frame, t.end_frame) == (T0, T0 + 2.0, 0, 20)
    assert tracks[8].ended  # close() ends the run's open tracks
    assert open_pk == -1
    mean = embs.mean(0)
    np.testing.assert_allclose(store.track_embeddings([pk])[0], mean / np.linalg.norm(mean), atol=1e-6)
    s = store.samples_of([pk], thumbnails=True)
    np.testing.assert_allclose(s.embedding, embs, atol=1e-6)
    thumb = cv2.imdecode(np.frombuffer(s.thumbnails[0], np.uint8), cv2.IMREAD_COLOR)
    assert thumb.shape == thumbnail_shape(PERSON_BOXES[0])
    b = store.boxes([pk])
    assert list(b.frame) == [0, 10, 20] and np.allclose(b.xyxy[0], PERSON_BOXES[0])
    assert store.cameras() == [("cam1", str(CLIP), {"fps": 10})]
    run = store.runs()[0]
    assert run[2] is not None and run[3] == {"cameras": ["cam1"]}
    assert [t.local_id for t in store.tracks(since=T0 + 2.5)] == [8]
    assert [t.local_id for t in store.tracks(until=T0 + 0.5)] == [7]
    assert store.tracks(camera=["cam2"]) == []
    store.close()


def test_two_runs_append_without_clash(store_db):
    _, db = store_db
    rng = np.random.default_rng(1)
    pks = []
    for run in range(2):
        store = make_store(db)
        run_id = store.start_run({"run": run})
        store.add_camera("cam1", "vtest.avi")
        pks += [add_track(store, "cam1", local, 10.0 * run, 10.0 * run + 2, unit(rng)) for local in (1, 2)]
        assert run_id == run + 1
        store.close()
    store = StoreReader(db)
    tracks = store.tracks()
    assert len(tracks) == 4 and len(set(pks)) == 4
    assert [(t.run_id, t.local_id) for t in tracks] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert sql(db, "SELECT COUNT(*) FROM samples")[0][0] == 4
    store.close()


def test_embedder_mismatch_is_refused(store_db):
    _, db = store_db
    make_store(db).close()
    with pytest.raises(StoreError) as e:
        TrackStore(StoreConfig(path=str(db)), "other-embedder", DIM, {})
    msg = str(e.value)
    assert "\n" not in msg and "test-embedder-v1" in msg and "other-embedder" in msg and "--db" in msg
    with pytest.raises(StoreError, match="32-d"):
        TrackStore(StoreConfig(path=str(db)), "test-embedder-v1", 64, {})


def test_bad_files_give_clear_errors(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="not a track store"):
        make_store(junk)
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE x (a)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not a track store"):
        make_store(other)
    with pytest.raises(StoreError, match="no store at"):
        StoreReader(tmp_path / "missing.db")
    with pytest.raises(StoreError, match="not a track store"):
        StoreReader(junk)
    with pytest.raises(StoreError, match="folder"):
        make_store(tmp_path)
    with pytest.raises(StoreError, match="folder"):
        StoreReader(tmp_path)
    store = make_store(tmp_path / "s.db")
    with pytest.raises(StoreError, match="start_run"):
        one = Detections.from_arrays([[0, 0, 1, 1]], [1], track_id=[1])
        store.record_frame(Frame("cam1", 0, T0, clip_frames()[0]), one)
    store.start_run()
    bad = Detections.from_arrays([[0, 0, 1, 1]], [1], track_id=[1], embedding=np.ones((1, 8)))
    with pytest.raises(StoreError, match="8 dims"):
        store.add_samples(Frame("cam1", 0, T0, clip_frames()[0]), bad, [0], [None])
    store.close()


def test_batched_commits_are_visible_to_readers_only_when_committed(store_db):
    _, db = store_db
    rng = np.random.default_rng(2)
    store = make_store(db, commit_interval=3600)
    store.start_run()
    add_track(store, "cam1", 1, 0, 1, unit(rng))
    assert store.maybe_commit() is False
    assert sql(db, "SELECT COUNT(*) FROM tracks") == [(0,)]
    store.commit_interval = 0.0
    assert store.maybe_commit() is True
    assert sql(db, "SELECT COUNT(*), SUM(n_boxes) FROM tracks") == [(1, 3)]
    store.close()


WRITER = textwrap.dedent("""
    import itertools, sys
    import numpy as np
    from pipeline.config import StoreConfig
    from pipeline.store import TrackStore
    from pipeline.types import Detections, Frame
    store = TrackStore(StoreConfig(path=sys.argv[1], commit_interval=0.01), "test-embedder-v1", 32, {})
    store.start_run({"writer": True})
    store.add_camera("cam1", "vtest.avi")
    rng = np.random.default_rng(0)
    image = np.zeros((8, 8, 3), np.uint8)
    for f in itertools.count():
        ids = [3 * (f // 20) + k for k in range(3)]
        frame = Frame("cam1", f, 1000.0 + f / 10, image)
        emb = rng.standard_normal((3, 32)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        dets = Detections.from_arrays([[k, k, k + 10, k + 20] for k in range(3)], [0.9] * 3, track_id=ids,
                                      embedding=emb)
        store.record_frame(frame, dets)
        store.add_samples(frame, dets, [0, 1, 2], [image] * 3)
        if f % 20 == 19:
            store.end_tracks("cam1", ids)
        if store.maybe_commit():
            print(f, flush=True)
""")


def test_sigkill_mid_write_keeps_committed_work(tmp_path, store_db):
    backend, db = store_db
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), str(db)], stdout=subprocess.PIPE, text=True, env=env)
    committed = -1
    guard = threading.Timer(60, proc.kill)  # a writer that hangs fails the test instead of blocking it
    guard.start()
    try:
        for line in proc.stdout:
            committed = int(line)
            if committed >= 150:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # mid-batch: the writer never stops writing
        proc.wait(timeout=30)
        guard.cancel()
    assert proc.returncode == -signal.SIGKILL and committed >= 150

    if backend == "sqlite":
        assert sql(db, "PRAGMA integrity_check")[0][0] == "ok"
        assert sql(db, "PRAGMA foreign_key_check") == []
    last_frame = sql(db, "SELECT MAX(frame) FROM boxes")[0][0]
    assert last_frame >= committed  # everything reported committed survived
    # each batch is all-or-nothing: the track rows agree with the boxes and samples committed with them
    mismatched = sql(db, """
        SELECT COUNT(*) FROM tracks t WHERE n_boxes != (SELECT COUNT(*) FROM boxes b WHERE b.track_id = t.id)
           OR n_samples != (SELECT COUNT(*) FROM samples s WHERE s.track_id = t.id)
           OR end_frame != (SELECT MAX(frame) FROM boxes b WHERE b.track_id = t.id)""")[0][0]
    assert mismatched == 0
    assert sql(db, "SELECT finished FROM runs") == [(None,)]
    # the killed run's open tracks: the three of the current group, unless the last commit held their ending
    open_tracks = sql(db, "SELECT COUNT(*) FROM tracks WHERE ended=0")[0][0]
    assert open_tracks == (0 if last_frame % 20 == 19 else 3), (open_tracks, last_frame)

    store = make_store(db)  # opens, then a new run appends and closes the killed run's open tracks
    if backend == "postgresql":  # the server ends the killed writer's session (and its run's lock) on EOF
        wait_for_no_session(db, "camreid run 1 ")
    assert store.start_run() == 2
    assert store.reader.tracks(ended=False) == []
    last = store.reader.tracks()[-1]
    s = store.reader.samples_of([last.id])
    mean = s.embedding.mean(0)
    np.testing.assert_allclose(store.reader.track_embeddings([last.id])[0], mean / np.linalg.norm(mean), atol=1e-5)
    pk = add_track(store, "cam1", 0, 0, 1, unit(np.random.default_rng(3)))
    assert store.reader.tracks(run_id=2)[0].id == pk
    store.close()


def test_boxes_of_a_roi_camera_are_stored_in_full_frame_pixels(store_db):
    """A camera with roi (384, 0, 768, 576) sees crops; its boxes, samples and so query/export
    results are in the full source frame, where the frame indices point."""
    _, db = store_db
    full = clip_frames()[0]
    x1, y1, x2, y2 = PERSON_BOXES[1]  # (498, 155, 532, 233) in the full frame
    right = full[:, 384:]
    frame = Frame("right", 0, T0, right, origin=(384, 0))
    dets = Detections.from_arrays([[x1 - 384, y1, x2 - 384, y2]], [0.9], track_id=[1],
                                  embedding=unit(np.random.default_rng(0))[None])
    with make_store(db) as store:
        store.start_run()
        store.record_frame(frame, dets)
        store.add_samples(frame, dets, [0], [crop(right, dets.xyxy[0])])
        store.commit()
        (tid,) = [t.id for t in store.reader.tracks()]
        assert store.reader.boxes([tid]).xyxy.tolist() == [[x1, y1, x2, y2]]
        assert store.reader.samples_of([tid]).xyxy.tolist() == [[x1, y1, x2, y2]]


def _v1_store(path: Path) -> None:
    """A genuine version-1 store of the days before user_version (version in meta.schema_version) holding
    one track with two boxes, built with the v1 script only."""
    con = sqlite3.connect(path)
    con.executescript(MIGRATIONS[0])
    con.executemany("INSERT INTO meta(key, value) VALUES (?, ?)",
                    [("schema_version", "1"), ("embedder_id", "test-embedder-v1"), ("embedding_dim", str(DIM)),
                     ("embedder_spec", "{}")])
    con.execute("INSERT INTO runs(started, finished, config) VALUES (0, 1, '{}')")
    con.execute("INSERT INTO cameras(id, source) VALUES ('a', 'a.avi')")
    con.execute("INSERT INTO tracks(run_id, camera_id, local_id, start_time, end_time, start_frame, end_frame, "
                "n_boxes, ended) VALUES (1, 'a', 1, 0, 0.1, 0, 1, 2, 1)")
    con.executemany("INSERT INTO boxes VALUES (1, ?, ?, 10, 20, 30, 80, 0.9)", [(0, 0.0), (1, 0.1)])
    con.commit()
    con.close()


def test_schema_v1_store_is_migrated_to_the_current_version_keeping_its_boxes(tmp_path):
    path = tmp_path / "s.db"
    _v1_store(path)
    with pytest.raises(StoreError, match=r"schema v1, this code reads v\d+: migrate it once with"):
        StoreReader(path)  # the read-only reader does not migrate
    with make_store(path) as store:  # the writer migrates v1 -> v2 in place
        boxes = store.reader.boxes([1])
        assert boxes.frame.tolist() == [0, 1] and boxes.interpolated.tolist() == [False, False]
        store.start_run()
        frame = Frame("a", 5, 0.5, np.zeros((100, 100, 3), np.uint8))
        store.record_frame(frame, Detections.from_arrays([[1, 2, 11, 32]], [0.8], track_id=[7]), interpolated=True)
        store.record_frame(replace(frame, index=6, timestamp=0.6),
                           Detections.from_arrays([[2, 2, 12, 32]], [0.9], track_id=[7]))
    assert sql(path, "PRAGMA user_version")[0][0] == SCHEMA_VERSION == 6
    # v6: a search's camera/time filter is answered from the index alone, without table lookups
    plan = sql(path, "EXPLAIN QUERY PLAN SELECT id, COALESCE(global_id, -1) FROM tracks WHERE camera_id IN ('a') "
                     "AND end_time>=0 AND start_time<=1 AND n_samples>=1 ORDER BY id")
    assert any("COVERING INDEX tracks_camera_time" in row[-1] for row in plan), plan
    with StoreReader(path) as reader:
        (new,) = [t for t in reader.tracks() if t.run_id == 2]
        assert (new.start_frame, new.end_frame, new.n_boxes) == (5, 6, 2)
        assert reader.boxes([new.id]).interpolated.tolist() == [True, False]
        assert reader.boxes([1]).interpolated.tolist() == [False, False]


def test_interpolated_boxes_for_earlier_frames_extend_the_track(store_db):
    """The tracker fills a gap once the track is re-found: boxes for frames before the last one recorded."""
    _, db = store_db
    with make_store(db) as store:
        store.start_run()
        image = np.zeros((100, 100, 3), np.uint8)
        for index in (0, 3):
            store.record_frame(Frame("a", index, index / 10, image),
                               Detections.from_arrays([[index, 0, index + 10, 30]], [0.9], track_id=[1]))
        for index in (1, 2):
            store.record_frame(Frame("a", index, index / 10, image),
                               Detections.from_arrays([[index, 0, index + 10, 30]], [0.9], track_id=[1]),
                               interpolated=True)
        store.commit()
        (t,) = store.reader.tracks()
        assert (t.start_frame, t.end_frame, t.n_boxes) == (0, 3, 4)
        b = store.reader.boxes([t.id])
        assert b.frame.tolist() == [0, 1, 2, 3] and b.interpolated.tolist() == [False, True, True, False]
        np.testing.assert_allclose(b.time, [0.0, 0.1, 0.2, 0.3])


def test_schema_versions_are_migrated_or_refused_in_one_line(tmp_path):
    path = tmp_path / "s.db"
    make_store(path).close()
    # a store written before user_version was used: its version kept in meta.schema_version
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version=0")
    con.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    con.commit()
    con.close()
    with StoreReader(path) as reader:  # read as v1
        assert reader.embedder_id == "test-embedder-v1"
    make_store(path).close()  # the writer stamps it
    assert sql(path, "PRAGMA user_version")[0][0] == SCHEMA_VERSION
    # a store of a newer schema is refused by both sides
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    for open_store in (StoreReader, make_store):
        with pytest.raises(StoreError) as e:
            open_store(path)
        msg = str(e.value)
        assert "\n" not in msg and f"v{SCHEMA_VERSION + 1}" in msg and "upgrade camreid" in msg
    # an older one (v0: a meta table but no schema yet) is refused by the read-only reader
    old = tmp_path / "old.db"
    con = sqlite3.connect(old)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match=r"schema v0, this code reads v\d+: migrate it once with"):
        StoreReader(old)


def test_reader_is_read_only_and_sees_committed_rows_of_a_running_writer(store_db):
    _, db = store_db
    rng = np.random.default_rng(4)
    store = make_store(db, commit_interval=3600)
    store.start_run()
    add_track(store, "cam1", 1, 0, 1, unit(rng))
    with StoreReader(db) as reader:
        assert reader.tracks() == [] and len(store.reader.tracks()) == 1  # the writer sees its own batch
        store.commit()
        assert [t.local_id for t in reader.tracks()] == [1]
        assert reader.run_summary(store.run_id).tracks == 1
        with pytest.raises(reader_errors(db), match="readonly|read-only"):
            reader._con.execute("DELETE FROM tracks")
    store.close()


def _store_with_two_cameras(path: Path) -> None:
    rng = np.random.default_rng(5)
    store = make_store(path)
    store.start_run({})
    store.add_camera("north", str(CLIP), {})
    store.add_camera("south", str(CLIP), {})
    add_track(store, "north", 1, 0, 10, np.stack([unit(rng) for _ in range(3)]))
    add_track(store, "south", 1, 20, 30, np.stack([unit(rng) for _ in range(3)]), person=1)
    store.close()


def test_reader_opens_a_store_on_a_read_only_filesystem(tmp_path, read_only_view):
    """A WAL store needs its -shm index file beside it for mode=ro; where the folder is read-only
    (and we are root, so only a read-only mount stops us) the reader falls back to immutable=1."""
    folder = tmp_path / "share"
    _store_with_two_cameras(folder / "s.db")
    assert sorted(p.name for p in folder.iterdir()) == ["s.db"]  # a cleanly closed store: no -wal, no -shm
    assert (folder / "s.db").read_bytes()[18:20] == b"\x02\x02"  # header: WAL mode
    ro, how = read_only_view(folder)
    with pytest.raises(OSError):
        (ro / "probe").write_bytes(b"")  # really read-only, as root too
    with StoreReader(ro / "s.db") as reader:
        assert [c for c, _, _ in reader.cameras()] == ["north", "south"], how
        tracks = reader.tracks()
        assert [t.camera_id for t in tracks] == ["north", "south"]
        assert len(reader.samples_of([t.id for t in tracks], thumbnails=True)) == 6
        assert reader.boxes([tracks[0].id]).xyxy.shape == (3, 4)
    assert sorted(p.name for p in ro.iterdir()) == ["s.db"]


def test_reader_refuses_a_leftover_wal_on_a_read_only_filesystem(tmp_path, read_only_view):
    """Rows still in a -wal file (its writer was killed) are not in the main file: immutable=1 would
    miss them, so the reader says so instead of answering from part of the store."""
    _store_with_two_cameras(tmp_path / "s.db")
    con = sqlite3.connect(tmp_path / "s.db")
    con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute("INSERT INTO runs(started, config) VALUES (1, '{}')")
    con.commit()
    folder = tmp_path / "share"  # the store and its log as a killed writer left them, without the index
    folder.mkdir()
    for name in ("s.db", "s.db-wal"):
        (folder / name).write_bytes((tmp_path / name).read_bytes())
    con.close()
    assert (folder / "s.db-wal").stat().st_size > 0
    ro, _ = read_only_view(folder)
    with pytest.raises(StoreError, match=r"read-only.*s\.db-wal holds rows"):
        StoreReader(ro / "s.db")


def test_reader_names_unknown_cameras_and_runs(store_db):
    _, db = store_db
    _store_with_two_cameras(db)
    with StoreReader(db) as reader:
        reader.check_cameras(None)
        reader.check_cameras(["north", "south"])
        reader.check_run(None)
        reader.check_run(1)
        with pytest.raises(ValueError, match="^unknown camera nosuchcam; the store has north, south$"):
            reader.check_cameras("nosuchcam")
        with pytest.raises(ValueError, match="^unknown cameras east, west; the store has north, south$"):
            reader.check_cameras(["north", "east", "west", "east"])
        with pytest.raises(ValueError, match=r"^no run 99 \(runs: 1\)"):
            reader.check_run(99)


def test_the_index_command_migrates_an_older_store_for_the_read_only_commands(tmp_path, capsys):
    from pipeline.cli import main

    path = tmp_path / "s.db"
    _v1_store(path)
    assert main(["index", "--db", str(path), "--quiet"]) == 0  # what the read-only refusal tells the user to run
    with StoreReader(path) as reader:  # now readable: migrated in place, its boxes kept
        assert reader.boxes([1]).frame.tolist() == [0, 1]


def test_camera_status_upserts_in_the_batch_and_reads_back(store_db):
    """The heartbeat row commits with the run's next commit (not before), one row per camera, updated in place."""
    _, db = store_db
    store = make_store(db)
    run = store.start_run({"cameras": ["cam1", "cam2"]})
    store.add_camera("cam1", str(CLIP), {"fps": 10})
    store.camera_status("cam1", "live", 10, 9.5, 1000.5)
    store.camera_status("cam2", "reconnecting", 0, None, None, "cannot connect to rtsp://x")
    with StoreReader(db) as other:
        assert other.camera_statuses() == {}  # not committed yet
    assert store.reader.camera_statuses()["cam1"].state == "live"  # the writer's own reader sees the batch
    store.commit()
    with StoreReader(db) as other:
        rows = other.camera_statuses()
    assert set(rows) == {"cam1", "cam2"}
    r = rows["cam1"]
    assert (r.run_id, r.state, r.frames, r.fps, r.last_frame_time, r.last_error) == (run, "live", 10, 9.5, 1000.5, None)
    assert rows["cam2"].state == "reconnecting" and rows["cam2"].last_error == "cannot connect to rtsp://x"
    assert rows["cam2"].fps is None and rows["cam2"].last_frame_time is None and rows["cam2"].updated >= r.updated
    store.camera_status("cam1", "ended", 25, None, 1002.0)
    with pytest.raises(ValueError, match="camera state"):
        store.camera_status("cam1", "sleeping", 25, None, 1002.0)
    store.close()
    with StoreReader(db) as other:
        rows = other.camera_statuses()
    assert (rows["cam1"].state, rows["cam1"].frames, rows["cam1"].fps) == ("ended", 25, None) and len(rows) == 2
