"""`run --workers N` (pipeline/workers.py + Runner._run_groups) on real data: four cameras of the demo clip
with the public MOTChallenge detections of PETS09-S2L1 (../shared/data/mot15, so no detector runs), the
same store as one process; kill -9 of the parent, of a group, Ctrl-C, a group that cannot load its models."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.runner import run_pipeline
from pipeline.store import WriterLock
from pipeline.workers import split_cameras, threads_per_group
from tests.signals import default_sigint

REPO = Path(__file__).resolve().parents[2]
DET = REPO.parent / "shared" / "data" / "mot15" / "PETS09-S2L1" / "det" / "det.txt"
needs_det = pytest.mark.skipif(not DET.is_file(), reason=f"public detections not found at {DET} (../shared/data)")


def four_cameras(path: Path, frames: int, detections: bool = True, **extra) -> Path:
    """A cams.yaml with streams/demo.yaml's settings and 4 cameras cut from the clip (``frames`` each, spread
    over it), each on the public det.txt unless ``detections`` is False."""
    data = yaml.safe_load((REPO / "streams" / "demo.yaml").read_text())
    data["association"].pop("transit", None)
    step = (795 - frames) // 3
    data["cameras"] = [{"id": f"cam{k + 1}", "source": str(REPO / "streams" / "vtest.avi"),
                        "start_time": 1714557600.0, "start_frame": k * step, "end_frame": k * step + frames}
                       | ({"detections": str(DET)} if detections else {}) for k in range(4)]
    data["store"]["path"] = str(path.with_suffix(".db"))
    data.update(extra)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _rows(db: Path, sql: str, args=()) -> list[tuple]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


BOXES = ("SELECT t.camera_id, t.local_id, b.frame, b.x1, b.y1, b.x2, b.y2, b.confidence, b.interpolated "
         "FROM boxes b JOIN tracks t ON t.id = b.track_id ORDER BY 1, 2, 3")
TRACKS = "SELECT camera_id, local_id, start_frame, end_frame, n_boxes, n_samples, ended FROM tracks ORDER BY 1, 2"
SAMPLES = ("SELECT t.camera_id, t.local_id, s.frame, s.embedding, length(s.thumbnail) > 0 FROM samples s "
           "JOIN tracks t ON t.id = s.track_id ORDER BY 1, 2, 3")


def test_cameras_are_split_into_even_groups_and_threads_shared_out(tmp_path):
    cams = load_config(four_cameras(tmp_path / "cams.yaml", 10)).cameras
    assert [[c.id for c in g] for g in split_cameras(cams, 3)] == [["cam1", "cam2"], ["cam3"], ["cam4"]]
    assert [len(g) for g in split_cameras(cams, 4)] == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="between 1 and the 4 camera"):
        split_cameras(cams, 5)
    cores = len(os.sched_getaffinity(0))
    assert threads_per_group(1) == cores and threads_per_group(cores * 2) == 1


def test_cli_refuses_more_workers_than_cameras_and_video_with_workers(tmp_path, capsys):
    cams = four_cameras(tmp_path / "cams.yaml", 10)
    assert main(["run", "--cameras", str(cams), "--workers", "5", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --workers 5 but {cams} has 4 camera(s): use at most "
                                               "--workers 4")
    assert main(["run", "--cameras", str(cams), "--workers", "2", "--save-video", str(tmp_path / "v"), "--quiet"]) == 2
    assert "--save-video needs --workers 1" in capsys.readouterr().err
    assert not (tmp_path / "cams.db").exists()


def test_a_bad_store_or_camera_is_refused_before_any_group_starts(tmp_path, monkeypatch, capsys):
    import pipeline.runner

    def no_groups(*_a, **_k):
        raise AssertionError("worker groups were started before the bad input was refused")
    monkeypatch.setattr(pipeline.runner, "WorkerPool", no_groups)
    cams = four_cameras(tmp_path / "cams.yaml", 10)
    (tmp_path / "file").write_text("x")
    assert main(["run", "--cameras", str(cams), "--db", str(tmp_path / "file" / "s.db"), "--workers", "2",
                 "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("error: ") and not (tmp_path / "cams.db").exists()
    data = yaml.safe_load(cams.read_text())
    data["cameras"][3]["source"] = str(tmp_path / "file")
    cams.write_text(yaml.safe_dump(data))
    assert main(["run", "--cameras", str(cams), "--workers", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: camera 'cam4'") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "cams.db").exists() or _rows(tmp_path / "cams.db", "SELECT COUNT(*) FROM runs") == [(0,)]
    WriterLock.acquire(tmp_path / "cams.db").release()


def test_a_group_killed_in_the_middle_of_a_message_ends_only_its_own_channel(tmp_path):
    """One pipe per group: a half-written message (the writer was killed) is end-of-file on that group's
    channel only; the other group's messages still arrive whole (a shared queue would have lost both)."""
    import multiprocessing
    import pickle
    import struct

    from pipeline.workers import CamerasEnded, WorkerPool

    cfg = load_config(four_cameras(tmp_path / "cams.yaml", 10))
    pool = WorkerPool(cfg, split_cameras(cfg.cameras, 2))  # not started: its channels are replaced below
    (r0, w0), (r1, w1) = multiprocessing.Pipe(duplex=False), multiprocessing.Pipe(duplex=False)
    pool._channels, pool._running = {0: r0, 1: r1}, {0, 1}
    os.write(w0.fileno(), struct.pack("!i", 1000) + b"x" * 10)  # a header and 10 of its 1000 bytes
    w0.close()
    sent = CamerasEnded(1, {"cam3": (1, 2)})
    w1.send_bytes(pickle.dumps(sent))
    got = []
    for _ in range(4):
        got += pool._drain(0.2)
    assert got == [sent] and list(pool._channels) == [1]
    pool._channels = {}
    pool.close()


@pytest.mark.slow
@needs_det
def test_two_workers_store_the_same_tracks_boxes_and_samples_as_one_process(tmp_path):
    cfg = load_config(four_cameras(tmp_path / "cams.yaml", 60))
    one = run_pipeline(cfg, db_path=tmp_path / "one.db", device="cpu", progress=False)
    two = run_pipeline(cfg, db_path=tmp_path / "two.db", device="cpu", progress=False, workers=2)
    assert one.workers == 1 and two.workers == 2 and "in 2 worker groups" in two.format()
    assert one.frames == two.frames == 240 and two.fps > 0 and two.cpu_seconds > 0 and not two.worker_errors
    assert {"read", "detect", "track", "embed", "store", "associate"} <= set(two.stage_ms)
    a, b = tmp_path / "one.db", tmp_path / "two.db"
    assert _rows(a, TRACKS) == _rows(b, TRACKS) and len(_rows(a, TRACKS)) >= 8
    assert {r[0] for r in _rows(b, TRACKS)} == {"cam1", "cam2", "cam3", "cam4"}
    assert _rows(a, BOXES) == _rows(b, BOXES)
    sa, sb = _rows(a, SAMPLES), _rows(b, SAMPLES)
    assert [r[:3] + r[4:] for r in sa] == [r[:3] + r[4:] for r in sb] and len(sa) >= 8
    ea = np.stack([np.frombuffer(r[3], np.float32) for r in sa])
    eb = np.stack([np.frombuffer(r[3], np.float32) for r in sb])
    assert np.allclose(ea, eb, atol=1e-4)  # the same crops; only the embedder's batches differ
    assert _rows(b, "SELECT COUNT(*) FROM tracks WHERE n_samples > 0 AND global_id IS NULL") == [(0,)]
    assert _rows(b, "SELECT finished IS NOT NULL, json_extract(config, '$.workers') FROM runs") == [(1, 2)]
    assert abs(one.identities - two.identities) <= max(1, one.identities // 10)
    # each camera's heartbeat: the groups sent their states, the parent counted the frames it stored
    status = "SELECT camera_id, state, frames, last_frame_time > 1714557600.0, run_id FROM camera_status ORDER BY 1"
    assert _rows(a, status) == _rows(b, status) == [(f"cam{k}", "ended", 60, 1, 1) for k in range(1, 5)]
    WriterLock.acquire(b).release()


@pytest.mark.slow
def test_worker_groups_give_the_last_skipped_frame_its_boxes_as_one_process_does(tmp_path):
    """The bundled detector with ``interval: auto`` (every 2nd frame after the first 20 measured ones): a
    camera's last frame, when skipped, is detected at the end of its stream (FrameStepper.close), in the
    worker groups as in one process, and is not counted as a second frame."""
    cfg = load_config(four_cameras(tmp_path / "cams.yaml", 30, detections=False))  # the 30th is skipped
    one = run_pipeline(cfg, db_path=tmp_path / "one.db", device="cpu", progress=False)
    two = run_pipeline(cfg, db_path=tmp_path / "two.db", device="cpu", progress=False, workers=2)
    assert one.frames == two.frames == 120 and one.detector_frames == two.detector_frames < 120
    a, b = tmp_path / "one.db", tmp_path / "two.db"
    ra, rb = _rows(a, BOXES), _rows(b, BOXES)  # the detector's batches differ: its floats by ~1e-6
    assert [r[:3] + r[8:] for r in ra] == [r[:3] + r[8:] for r in rb]
    assert np.allclose([r[3:8] for r in ra], [r[3:8] for r in rb], atol=1e-3)
    last = "SELECT t.camera_id, MAX(b.frame) FROM boxes b JOIN tracks t ON t.id = b.track_id GROUP BY 1 ORDER BY 1"
    step = (795 - 30) // 3
    assert _rows(b, last) == [(f"cam{k + 1}", k * step + 29) for k in range(4)]


# ----------------------------------------------------------------------------- faults (real processes)
def _start(cams: Path, db: Path, *args: str, min_boxes: int = 100) -> tuple[subprocess.Popen, int, list[int]]:
    """Start `run --workers 2` in its own process group; returns once >= min_boxes boxes are committed, with
    how many and the pids of its group processes."""
    env = dict(os.environ, YOLO_OFFLINE="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--cameras", str(cams), "--db", str(db),
                             "--device", "cpu", "--quiet", "--workers", "2", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=default_sigint)
    seen, deadline = 0, time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None and seen < min_boxes:
        time.sleep(0.5)
        try:
            seen = _rows(db, "SELECT COUNT(*) FROM boxes")[0][0] if db.exists() else 0
        except sqlite3.OperationalError:  # schema not committed yet
            continue
    if proc.poll() is not None or seen < min_boxes:
        proc.kill()
        pytest.fail(f"run ended early or stored no boxes: {proc.communicate()[1].decode()[-2000:]}")
    children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    groups = [p for p in children if b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(groups) == 2, children
    return proc, seen, groups


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _gone(pids: list[int], within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    return not any(_alive(p) for p in pids)


@pytest.mark.slow
@needs_det
def test_kill_9_of_the_parent_keeps_committed_work_and_leaves_no_orphan_group(tmp_path):
    db = tmp_path / "s.db"
    proc, seen, groups = _start(four_cameras(tmp_path / "cams.yaml", 400), db)
    proc.kill()
    proc.communicate(timeout=30)
    assert _gone(groups), "a worker group outlived its parent"
    assert _rows(db, "PRAGMA integrity_check") == [("ok",)]
    assert _rows(db, "SELECT finished FROM runs") == [(None,)]  # the killed run never finished
    assert _rows(db, "SELECT COUNT(*) FROM boxes")[0][0] >= seen  # nothing committed is lost
    # counts and rows agree in what was committed (one all-or-nothing transaction per commit)
    assert _rows(db, "SELECT COUNT(*) FROM tracks t WHERE n_boxes != (SELECT COUNT(*) FROM boxes b "
                     "WHERE b.track_id = t.id)") == [(0,)]
    WriterLock.acquire(db).release()


@pytest.mark.slow
@needs_det
def test_a_group_that_dies_is_one_error_line_and_the_others_finish(tmp_path):
    db = tmp_path / "s.db"
    proc, _, groups = _start(four_cameras(tmp_path / "cams.yaml", 400), db)
    os.kill(groups[-1], signal.SIGKILL)
    out, err = (s.decode() for s in proc.communicate(timeout=300))
    lines = err.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, err[-2000:]
    assert lines[0] == ("error: worker group 2 (cameras cam3, cam4) stopped: its process was killed by signal "
                        "SIGKILL; its tracks were ended, the other groups carry on")
    assert "STOPPED EARLY" in out and "finished run 1" in out
    assert _rows(db, "SELECT COUNT(*) FROM tracks WHERE ended = 0") == [(0,)]
    assert _rows(db, "SELECT finished IS NOT NULL FROM runs") == [(1,)]
    last = dict(_rows(db, "SELECT camera_id, MAX(end_frame) FROM tracks GROUP BY camera_id"))
    assert last["cam1"] >= 350 and last["cam2"] >= 131 + 350  # group 1 ran its cameras (to frame 399, 530)
    assert _gone(groups)


@pytest.mark.slow
@needs_det
def test_ctrl_c_stops_every_group_ends_and_links_the_tracks(tmp_path):
    db = tmp_path / "s.db"
    proc, seen, groups = _start(four_cameras(tmp_path / "cams.yaml", 400), db)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-2000:]
    assert err.decode().strip().splitlines()[-1].startswith("error: interrupted")
    assert _gone(groups)
    assert _rows(db, "SELECT finished IS NOT NULL FROM runs") == [(1,)]
    assert _rows(db, "SELECT COUNT(*) FROM boxes")[0][0] >= seen
    assert _rows(db, "SELECT COUNT(*) FROM tracks WHERE ended = 0") == [(0,)]
    assert _rows(db, "SELECT COUNT(*) FROM tracks WHERE n_samples > 0 AND global_id IS NULL") == [(0,)]


@pytest.mark.slow
def test_a_group_that_cannot_load_its_detector_is_the_one_process_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    cams = four_cameras(tmp_path / "cams.yaml", 10, detections=False)
    data = yaml.safe_load(cams.read_text())
    data["detector"]["weights"] = str(bad)
    cams.write_text(yaml.safe_dump(data, sort_keys=False))
    env = dict(os.environ, YOLO_OFFLINE="1", PYTHONPATH=str(REPO))
    errors = []
    for workers in ("1", "2"):
        proc = subprocess.run([sys.executable, "-m", "pipeline", "run", "--cameras", str(cams), "--device", "cpu",
                               "--quiet", "--workers", workers], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=300)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
        errors.append(lines[0])
    assert errors[0] == errors[1] and str(bad) in errors[1]
    db = tmp_path / "cams.db"
    assert not db.exists() or _rows(db, "SELECT COUNT(*) FROM runs") == [(0,)]
