"""`python -m pipeline run` under faults: bad outputs and stores refused before any model loads (and before
a run row is written), a second run on a store being written, no camera delivering, a video onto a full
disk, SIGTERM while running."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.store import WriterLock

from .fs_helpers import read_only_folder, tiny_fs
from .test_runner import LONG_WINDOW, _rows, _start_run

REPO = Path(__file__).resolve().parents[2]
ONE_CAMERA = {"north": (0, 400)}
# runs the CLI in a fresh interpreter and reports whether the detector library was ever imported
_PROBE = ("import sys; from pipeline.cli import main; rc = main(sys.argv[1:]); "
          "print('ultralytics loaded' if 'ultralytics' in sys.modules else 'no model loaded'); sys.exit(rc)")


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, YOLO_OFFLINE="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", _PROBE, "run", *args, "--device", "cpu", "--quiet"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)


def _one_line_error(proc: subprocess.CompletedProcess, code: int, *words: str) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == code, (proc.returncode, err[-2000:])
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("error: "), err
    for w in words:
        assert w in err, err
    return err


def _refused_before_models(proc: subprocess.CompletedProcess, *words: str) -> None:
    _one_line_error(proc, 2, *words)
    assert proc.stdout.strip() == "no model loaded"


@pytest.fixture
def run_without_models(monkeypatch, capsys):
    """``run(*args) -> CompletedProcess`` of the CLI in this process, where building the models fails the
    test: what it refuses is refused before any model loads."""
    import pipeline.runner
    from pipeline.cli import main

    def no_models(*_a, **_k):
        raise AssertionError("models were loaded before the bad input was refused")
    monkeypatch.setattr(pipeline.runner, "build_stages", no_models)

    def run(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        rc = main(["run", *args, "--device", "cpu", "--quiet"])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, rc, out + "no model loaded", err)
    return run


def test_bad_outputs_and_stores_are_refused_before_models_load(make_demo_yaml, tmp_path, run_without_models):
    _run = run_without_models
    cams = make_demo_yaml(tmp_path / "cams.yaml", window=ONE_CAMERA)
    db = tmp_path / "s.db"
    (tmp_path / "existing_file.txt").write_text("x")
    _refused_before_models(_run("--cameras", str(cams), "--db", str(db), "--save-video",
                                str(tmp_path / "existing_file.txt")), "existing_file.txt", "is a file, not a folder")
    _refused_before_models(_run("--cameras", str(cams), "--db", str(tmp_path / "existing_file.txt" / "s.db")),
                           "existing_file.txt")
    assert not db.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["cams.yaml", "existing_file.txt"]

    with read_only_folder(tmp_path / "ro", lambda folder: (folder / "s.db").write_bytes(b"")) as ro:
        _refused_before_models(_run("--cameras", str(cams), "--db", str(ro / "s.db")), str(ro), "read-only")
        _refused_before_models(_run("--cameras", str(cams), "--db", str(ro / "new.db")), str(ro), "read-only")
        _refused_before_models(_run("--cameras", str(cams), "--db", str(ro / "missing" / "new.db")),
                               str(ro / "missing"), "cannot create folder")
        _refused_before_models(_run("--cameras", str(cams), "--db", str(db), "--save-video", str(ro / "videos")),
                               str(ro / "videos"), "--save-video")
        assert sorted(p.name for p in ro.iterdir()) == ["s.db"]


def _store_has_no_run(db: Path) -> None:
    assert not db.exists() or _rows(db, "SELECT COUNT(*) FROM runs") == [(0,)]


def test_sources_that_cannot_be_read_leave_no_run(make_demo_yaml, tmp_path, run_without_models):
    """An roi outside the frame and a fake .mp4 fail before models load and before a run row is written."""
    _run = run_without_models
    db = tmp_path / "s.db"
    cams = make_demo_yaml(tmp_path / "roi.yaml", window=ONE_CAMERA, db=db)
    text = cams.read_text().replace("end_frame: 400", "end_frame: 400\n  roi: [0, 0, 2000, 100]")
    cams.write_text(text)
    _refused_before_models(_run("--cameras", str(cams)), "roi [0, 0, 2000, 100] does not fit the 768x576")
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    cams.write_text(text.replace(str(REPO / "streams" / "vtest.avi"), str(fake)).replace(
        "\n  roi: [0, 0, 2000, 100]", ""))
    proc = _run("--cameras", str(cams))
    _refused_before_models(proc, "fake.mp4", "cannot open video file")
    _store_has_no_run(db)
    assert not (tmp_path / "s.db.lock").exists()


def test_ffmpeg_and_libpng_lines_do_not_come_before_the_one_line_error(make_demo_yaml, tmp_path):
    """A fresh interpreter (FFmpeg's log level is read once per process), stderr captured at the descriptor."""
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    cams = make_demo_yaml(tmp_path / "cams.yaml", window=ONE_CAMERA, db=tmp_path / "s.db")
    cams.write_text(cams.read_text().replace(str(REPO / "streams" / "vtest.avi"), str(fake)))
    proc = _run("--cameras", str(cams))
    _refused_before_models(proc, "fake.mp4", "cannot open video file")  # one line: no "moov atom not found"
    folder = tmp_path / "frames"
    folder.mkdir()
    import cv2

    png = cv2.imencode(".png", cv2.imread(str(REPO / "streams" / "suspect.jpg")))[1].tobytes()
    (folder / "0001.png").write_bytes(png[:len(png) // 2])  # cut off: "libpng error: Read Error"
    cams.write_text(cams.read_text().replace(str(fake), str(folder)).replace("end_frame: 400", "end_frame: null"))
    proc = _run("--cameras", str(cams))
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and not any(line.startswith(("libpng", "[ERROR", "[ WARN")) for line in err), err
    assert err[-1].startswith("error: camera 'north': none of the 1 images of folder"), err


@pytest.mark.slow
def test_no_camera_delivering_a_frame_fails_and_leaves_no_run(make_demo_yaml, tmp_path):
    with socket_closed_port() as port:
        cams = make_demo_yaml(tmp_path / "cams.yaml", window={}, db=tmp_path / "s.db",
                              cameras=[{"id": "gate", "source": f"rtsp://127.0.0.1:{port}/live", "reconnect": False}])
        proc = _run("--cameras", str(cams), timeout=600)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and err[-1].startswith("error: no camera delivered a frame (gate: cannot connect "
                                                       f"to rtsp://127.0.0.1:{port}/live)"), proc.stderr[-2000:]
    _store_has_no_run(tmp_path / "s.db")


class socket_closed_port:
    """A local TCP port nothing listens on (bound then closed)."""

    def __enter__(self) -> int:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        return port

    def __exit__(self, *exc) -> None:
        pass


@pytest.mark.slow
def test_a_video_cut_short_by_a_full_disk_is_an_error_naming_it(make_demo_yaml, tmp_path):
    db = tmp_path / "s.db"
    cams = make_demo_yaml(tmp_path / "cams.yaml", window=ONE_CAMERA, db=db)
    with tiny_fs(tmp_path / "videos", 200) as videos:
        proc = _run("--cameras", str(cams), "--max-frames", "12", "--save-video", str(videos), timeout=600)
    err = _one_line_error(proc, 1, "video of camera north could not be written", str(videos / "north.mp4"))
    assert "disk full" in err
    assert f"video north: NOT WRITTEN: {videos / 'north.mp4'}" in proc.stdout
    assert "finished run 1" in proc.stdout  # the store has the run all the same
    assert _rows(db, "SELECT COUNT(*) FROM runs WHERE finished IS NOT NULL") == [(1,)]


@pytest.mark.slow
def test_a_second_run_is_refused_while_one_writes_and_sigterm_links_what_it_has(make_demo_yaml, tmp_path):
    """Two real processes on one store: the second is refused at start naming run 1 and its pid, writes
    nothing and ends none of its tracks; SIGTERM then makes the first end and link its tracks, exit 130."""
    db = tmp_path / "s.db"
    cams = make_demo_yaml(tmp_path / "cams.yaml", window=LONG_WINDOW, db=db)
    first, _ = _start_run(cams, db)
    try:
        second = _run("--cameras", str(cams))
        _refused_before_models(second, f"store {db} is being written by run 1 (pid {first.pid})")
        assert _rows(db, "SELECT COUNT(*) FROM runs") == [(1,)]  # it never opened the store for writing
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err.decode()[-2000:]
    assert "ending tracks and linking identities" in err.decode()
    assert _rows(db, "SELECT COUNT(*) FROM tracks WHERE ended=0") == [(0,)]
    unlinked = _rows(db, "SELECT COUNT(*) FROM tracks WHERE n_samples > 0 AND global_id IS NULL")[0][0]
    assert unlinked == 0 and _rows(db, "SELECT COUNT(*) FROM tracks WHERE global_id IS NOT NULL")[0][0] > 0
    assert _rows(db, "SELECT finished IS NOT NULL FROM runs") == [(1,)]
    WriterLock.acquire(db).release()

