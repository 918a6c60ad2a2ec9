"""pipeline/runner.py on the real clip (slow: real runs): what a run stores, cross-camera links, appending, kill -9."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.runner import STAGES
from pipeline.store import StoreReader, WriterLock
from tests.signals import default_sigint

REPO = Path(__file__).resolve().parents[2]


def _rows(db: Path, sql: str, args=()) -> list[tuple]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


@pytest.mark.slow
def test_run_stores_tracks_boxes_samples_and_timings(demo_run):
    s = demo_run.summary
    assert s.frames == 120 and s.cameras == ("north", "south") and not s.interrupted
    assert set(STAGES) <= set(s.stage_ms) and s.stage_ms["detect"] > 0 and s.fps > 0
    assert "frames/s" in s.format() and "detect" in s.format()
    with StoreReader(demo_run.db) as store:
        tracks = store.tracks()
        assert {t.camera_id for t in tracks} == {"north", "south"}
        assert all(t.ended for t in tracks)  # the run finished every track
        north = [t for t in tracks if t.camera_id == "north"]
        assert all(340 <= t.start_frame <= t.end_frame < 400 for t in north)
        assert len(tracks) == s.tracks >= 4
        sampled = [t for t in tracks if t.n_samples > 0]
        assert len(sampled) >= 4 and sum(t.n_samples for t in tracks) == s.samples
        samples = store.samples_of([t.id for t in sampled], thumbnails=True)
        assert np.allclose(np.linalg.norm(samples.embedding, axis=1), 1.0, atol=1e-4)
        assert samples.embedding.shape[1] == 1536  # the generic default embedder (generic_mnv2_hsv)
        # at most 8 samples per track, at least 1 s apart (demo.yaml)
        for t in sampled:
            times = np.sort(samples.time[samples.track_id == t.id])
            assert len(times) <= 8 and (np.diff(times) >= 1.0 - 1e-6).all()
        thumb = cv2.imdecode(np.frombuffer(samples.thumbnails[0], np.uint8), cv2.IMREAD_COLOR)
        assert thumb is not None and thumb.shape[0] == 128
        boxes = store.boxes([t.id for t in tracks])
        assert len(boxes) == sum(t.n_boxes for t in tracks) > 100
        assert (boxes.xyxy[:, 2] > boxes.xyxy[:, 0]).all() and (boxes.xyxy[:, 3] > boxes.xyxy[:, 1]).all()
        assert (boxes.xyxy >= -5).all() and (boxes.xyxy[:, 2] <= 773).all() and (boxes.xyxy[:, 3] <= 581).all()
        # timestamps follow start_time + frame / 10 fps of demo.yaml
        t0 = load_config(demo_run.yaml).cameras[0].start_time
        assert np.allclose(boxes.time, t0 + boxes.frame / 10.0)


@pytest.mark.slow
def test_two_camera_demo_links_a_person_across_cameras(demo_run):
    assert demo_run.summary.cross_camera >= 1
    with StoreReader(demo_run.db) as store:
        multi = [g for g, cams in store.identities().items() if cams == ["north", "south"]]
        assert multi
        for g in multi:
            tracks = store.tracks(global_ids=[g])
            north = [t for t in tracks if t.camera_id == "north"]
            south = [t for t in tracks if t.camera_id == "south"]
            # one person, one place at a time: north's part ends before south's begins (transit <= 10 s)
            assert max(t.end_time for t in north) <= min(t.start_time for t in south) <= \
                max(t.end_time for t in north) + 10.0


@pytest.mark.slow
def test_second_run_on_same_db_appends_without_id_clash(demo_run, tmp_path, capsys):
    """`python -m pipeline run` again on the same store (in-process CLI, 12 frames per camera)."""
    db = tmp_path / "again.db"
    db.write_bytes(demo_run.db.read_bytes())  # the fixture's store is closed (WAL checkpointed)
    before = _rows(db, "SELECT id, run_id, camera_id, local_id, global_id, n_boxes FROM tracks ORDER BY id")
    max_gid = _rows(db, "SELECT MAX(id) FROM identities")[0][0]
    assert main(["run", "--cameras", str(demo_run.yaml), "--db", str(db), "--max-frames", "12", "--device", "cpu",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"finished run 2 -> {db}" in printed and "24 frames from 2 camera(s)" in printed
    after = _rows(db, "SELECT id, run_id, camera_id, local_id, global_id, n_boxes FROM tracks ORDER BY id")
    assert after[:len(before)] == before  # first run untouched
    new = after[len(before):]
    assert new and all(r[1] == 2 for r in new) and min(r[0] for r in new) > max(r[0] for r in before)
    assert len({(r[1], r[2], r[3]) for r in after}) == len(after)  # (run, camera, local id) unique
    assert any(r[4] is not None for r in new)  # run 2 was associated too
    new_ids = [r[0] for r in _rows(db, "SELECT id FROM identities WHERE id > ?", (max_gid,))]
    assert new_ids and len(set(new_ids)) == len(new_ids)
    # no identity holds two tracks at the same time (run 2 re-saw run 1's people at the same times)
    spans = _rows(db, "SELECT global_id, start_time, end_time FROM tracks WHERE global_id IS NOT NULL")
    for gid in {g for g, _, _ in spans}:
        mine = sorted((a, b) for g, a, b in spans if g == gid)
        assert all(prev[1] <= nxt[0] for prev, nxt in zip(mine, mine[1:])), f"identity {gid} overlaps itself"
    assert [r[0] for r in _rows(db, "SELECT id FROM runs ORDER BY id")] == [1, 2]
    assert all(r[0] is not None for r in _rows(db, "SELECT finished FROM runs"))


def _start_run(cams: Path, db: Path, min_boxes: int = 20) -> tuple[subprocess.Popen, int]:
    """Start `python -m pipeline run` and return once >= min_boxes boxes are committed (and how many)."""
    env = dict(os.environ, YOLO_OFFLINE="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--cameras", str(cams), "--device", "cpu",
                             "--quiet"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=default_sigint)
    seen, deadline = 0, time.monotonic() + 150
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if db.exists():
            try:
                seen = _rows(db, "SELECT COUNT(*) FROM boxes")[0][0]
            except sqlite3.OperationalError:  # schema not committed yet
                continue
            if seen >= min_boxes:
                break
    if proc.poll() is not None or seen < min_boxes:
        proc.kill()
        pytest.fail(f"run ended early or stored no boxes: {proc.communicate()[1].decode()[-2000:]}")
    time.sleep(1.5)  # let it commit a little more
    return proc, seen


LONG_WINDOW = {"north": (0, 400), "south": (400, 795)}


@pytest.mark.slow
def test_sigkill_mid_run_keeps_committed_work(make_demo_yaml, tmp_path):
    db = tmp_path / "killed.db"
    proc, seen = _start_run(make_demo_yaml(tmp_path / "cams.yaml", window=LONG_WINDOW, db=db), db)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert _rows(db, "PRAGMA integrity_check") == [("ok",)]
    with StoreReader(db) as store:
        assert store.runs()[0][2] is None  # the killed run never finished
        kept = _rows(db, "SELECT COUNT(*) FROM boxes")[0][0]
        assert kept >= seen  # nothing that was committed is lost
        assert len(store.tracks()) >= 1
    WriterLock.acquire(db).release()  # kill -9 leaves no stale writer lock: the next run may write


@pytest.mark.slow
def test_ctrl_c_closes_the_store_cleanly_and_exits_130(make_demo_yaml, tmp_path):
    db = tmp_path / "interrupted.db"
    proc, seen = _start_run(make_demo_yaml(tmp_path / "cams.yaml", window=LONG_WINDOW, db=db), db)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()[-2000:]
    assert err.decode().strip().splitlines()[-1].startswith("error: interrupted")
    with StoreReader(db) as store:
        assert store.runs()[0][2] is not None  # run marked finished: the store was closed properly
        assert _rows(db, "SELECT COUNT(*) FROM boxes")[0][0] >= seen
        assert all(t.ended for t in store.tracks())
        # Ctrl-C links what the run has, as the end of a file does: no sampled track is left without identity
        assert [t.id for t in store.tracks() if t.n_samples > 0 and t.global_id is None] == []


def test_heartbeat_counts_frames_and_measures_fps_between_beats(tmp_path):
    """CameraHeartbeat: due once per interval, fps = frames since the last beat / seconds since it (live and
    reconnecting rows only), written into the store's batch."""
    from pipeline.config import StoreConfig
    from pipeline.runner import CameraHeartbeat
    from pipeline.store import TrackStore

    now = [100.0]
    beat = CameraHeartbeat(1.0, clock=lambda: now[0])
    with TrackStore(StoreConfig(path=str(tmp_path / "s.db")), "test-embedder-v1", 4) as store:
        store.start_run()
        assert beat.due()
        beat.write(store, {"a": ("live", None), "b": ("reconnecting", "cannot connect to rtsp://b")})
        assert not beat.due()
        for k in range(20):
            beat.saw("a", 1000.0 + k / 10)
        now[0] = 102.0
        assert beat.due()
        beat.write(store, {"a": ("live", None), "b": ("reconnecting", "cannot connect to rtsp://b")})
        rows = store.reader.camera_statuses()
        assert (rows["a"].frames, rows["a"].fps, rows["a"].last_frame_time) == (20, 10.0, 1000.0 + 19 / 10)
        b = rows["b"]
        assert (b.state, b.frames, b.fps, b.last_frame_time) == ("reconnecting", 0, 0.0, None)
        beat.saw("a", 1002.0, n=5)
        now[0] = 103.0
        beat.write(store, {"a": ("ended", None), "b": ("failed", "gave up")})
    with StoreReader(tmp_path / "s.db") as reader:
        rows = reader.camera_statuses()
    assert (rows["a"].state, rows["a"].frames, rows["a"].fps) == ("ended", 25, None)
    assert (rows["b"].state, rows["b"].last_error) == ("failed", "gave up")
