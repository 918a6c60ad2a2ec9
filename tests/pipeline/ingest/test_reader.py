"""pipeline.ingest on the real clip streams/vtest.avi (768x576, 10 fps, 795 frames).

Files, an image folder made of real frames, two cameras at once, and a real MJPEG-over-HTTP
stream (tests/pipeline/ingest/mjpeg_server.py, loopback only) that drops and refuses connections.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.config import CameraConfig
from pipeline.ingest import CameraReader, IngestError, MultiCameraReader, camera_state, list_images, seek_frame
from tests.pipeline.ingest.mjpeg_server import MJPEGServer
from tests.signals import default_sigint

N_REF = 140  # reference frames decoded sequentially


@pytest.fixture(scope="session")
def ref_frames(vtest_path: Path) -> list[np.ndarray]:
    """The clip's first N_REF frames, decoded one after another (ground truth for seeks)."""
    cap = cv2.VideoCapture(str(vtest_path))
    frames = [cap.read()[1] for _ in range(N_REF)]
    cap.release()
    assert all(f is not None and f.shape == (576, 768, 3) for f in frames)
    return frames


@pytest.fixture(scope="session")
def clip_jpegs(ref_frames) -> list[bytes]:
    """30 real clip frames as JPEG bytes (what an IP camera sends)."""
    return [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes() for f in ref_frames[:30]]


def cam(source, **kw) -> CameraConfig:
    return CameraConfig(id=kw.pop("id", "cam"), source=str(source) if isinstance(source, Path) else source, **kw)


def read_all(reader: CameraReader):
    with reader:
        return list(reader)


# -- video files -----------------------------------------------------------------------------

def test_file_range_stride_roi_and_timestamps(vtest_path, ref_frames) -> None:
    r = CameraReader(cam(vtest_path, start_frame=100, end_frame=130, stride=3, roi=(10, 20, 310, 420),
                         start_time=1000.0))
    frames = read_all(r)
    assert [f.index for f in frames] == list(range(100, 130, 3))
    assert all(f.camera_id == "cam" for f in frames)
    assert [f.timestamp for f in frames] == pytest.approx([1000.0 + i / 10 for i in range(100, 130, 3)])
    for f in frames:  # the right source frame, cropped to the roi, with the roi's corner as origin
        assert f.shape == (400, 300) and f.image.flags.c_contiguous and f.origin == (10, 20)
        assert np.array_equal(f.image, ref_frames[f.index][20:420, 10:310])
    s = r.stats
    assert (s.frames_read, s.frames_delivered, s.frames_dropped, s.finished) == (30, 10, 0, True)
    assert r.ended and r.meta["frame_count"] == 795 and r.meta["fps"] == 10.0


def test_file_to_the_end_with_run_start_and_fps_override(vtest_path) -> None:
    frames = read_all(CameraReader(cam(vtest_path, start_frame=780, fps=25.0), run_start=5000.0))
    assert [f.index for f in frames] == list(range(780, 795))  # the clip has 795 frames
    assert frames[0].timestamp == pytest.approx(5000.0 + 780 / 25)
    assert frames[0].shape == (576, 768) and frames[0].origin == (0, 0)


def test_seek_falls_back_to_grab_when_container_cannot_seek(vtest_path, ref_frames) -> None:
    class NoSeek:  # a capture whose set(CAP_PROP_POS_FRAMES) fails, like some streams
        def __init__(self):
            self.cap = cv2.VideoCapture(str(vtest_path))

        def set(self, prop, value):
            return False

        def __getattr__(self, name):
            return getattr(self.cap, name)

    cap = seek_frame(NoSeek(), 37, lambda: cv2.VideoCapture(str(vtest_path)))
    assert np.array_equal(cap.read()[1], ref_frames[37])
    cap = seek_frame(cv2.VideoCapture(str(vtest_path)), 120, lambda: pytest.fail("should not reopen"))
    assert np.array_equal(cap.read()[1], ref_frames[120])


def test_unreadable_files_fail_at_start_naming_the_file(vtest_path, tmp_path) -> None:
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(vtest_path.read_bytes()[:3000])  # header only, no decodable frame
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    for path in (truncated, text):
        with pytest.raises(IngestError, match=rf"^camera 'cam': cannot (open|decode any frame of) video file "
                                              rf"{path}"):
            CameraReader(cam(path)).start()
    with pytest.raises(IngestError, match=r"start_frame 900 is past the end of .*vtest\.avi \(795 frames\)"):
        CameraReader(cam(vtest_path, start_frame=900)).start()
    with pytest.raises(IngestError, match=r"roi \[0, 0, 800, 100\] does not fit the 768x576 frames"):
        CameraReader(cam(vtest_path, roi=(0, 0, 800, 100))).start()


def test_file_blocks_when_queue_is_full_and_loses_nothing(vtest_path) -> None:
    r = CameraReader(cam(vtest_path, end_frame=40), queue_size=2).start()
    time.sleep(0.3)  # the reader fills its queue and waits
    assert r.stats.frames_delivered <= 3 and not r.stats.finished
    frames = list(r)
    r.stop()
    assert [f.index for f in frames] == list(range(40)) and r.stats.frames_dropped == 0


def test_stop_is_prompt_while_reader_is_blocked(vtest_path) -> None:
    r = CameraReader(cam(vtest_path), queue_size=1).start()
    time.sleep(0.2)
    t = time.monotonic()
    r.stop()
    assert time.monotonic() - t < 1.0 and r.stats.finished
    n = len(list(r))  # what was queued is still handed out, then it ends
    assert n <= 1 and r.ended


# -- image folders --------------------------------------------------------------------------

def test_image_folder_in_natural_order_skips_corrupt_image(ref_frames, tmp_path, caplog) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(12):  # frame_0 .. frame_11: natural order, not frame_0, frame_1, frame_10, ...
        cv2.imwrite(str(folder / f"frame_{i}.jpg"), ref_frames[i])
    (folder / "frame_3.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 10)
    (folder / "notes.txt").write_text("ignored")
    assert [p.name for p in list_images(folder)][:4] == ["frame_0.jpg", "frame_1.jpg", "frame_2.jpg", "frame_3.jpg"]
    with caplog.at_level(logging.WARNING, logger="pipeline.ingest"):
        r = CameraReader(cam(folder, start_time=100.0, roi=(0, 0, 400, 300)))
        frames = read_all(r)
    assert [f.index for f in frames] == [0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11]
    assert [f.timestamp for f in frames] == pytest.approx([100 + i / 10 for i in [0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11]])
    for f in frames:
        expected = cv2.imread(str(folder / f"frame_{f.index}.jpg"))[:300, :400]
        assert np.array_equal(f.image, expected)
        assert np.abs(f.image.astype(int) - ref_frames[f.index][:300, :400]).mean() < 4  # real frame, JPEG loss
    assert r.stats.frames_skipped == 1 and "frame_3.jpg" in r.stats.last_error
    assert any("skipping unreadable image" in m and "frame_3.jpg" in m for m in caplog.messages)

    r = CameraReader(cam(folder, start_frame=2, end_frame=9, stride=3))
    assert [f.index for f in read_all(r)] == [2, 5, 8]
    assert (r.stats.frames_read, r.stats.frames_skipped) == (3, 0)  # skipped by stride: never decoded


def test_folder_of_only_unreadable_images_fails_at_start(tmp_path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"junk")
    (tmp_path / "b.png").write_bytes(b"")
    with pytest.raises(IngestError, match=r"none of the 2 images of folder .* can be read"):
        CameraReader(cam(tmp_path)).start()


# -- several cameras ------------------------------------------------------------------------

def test_two_cameras_batches_hold_at_most_one_frame_per_camera(vtest_path, ref_frames) -> None:
    cams = [cam(vtest_path, id="left", end_frame=20, roi=(0, 0, 384, 576)),
            cam(vtest_path, id="right", start_frame=100, end_frame=130, stride=2, roi=(384, 0, 768, 576))]
    seen: dict[str, list[int]] = {"left": [], "right": []}
    with MultiCameraReader(cams, queue_size=4, run_start=0.0) as m:
        batches = list(m)
        assert m.finished and m.next_batch(timeout=0.1) == []
        stats = m.stats
    for batch in batches:
        ids = [f.camera_id for f in batch]
        assert len(ids) == len(set(ids)) >= 1
        for f in batch:
            seen[f.camera_id].append(f.index)
            x0 = 0 if f.camera_id == "left" else 384
            assert np.array_equal(f.image, ref_frames[f.index][:, x0:x0 + 384])
            assert f.timestamp == pytest.approx(f.index / 10)
    assert seen == {"left": list(range(20)), "right": list(range(100, 130, 2))}
    assert stats["left"].frames_delivered == 20 and stats["right"].frames_delivered == 15


def test_multi_start_error_names_camera_and_stops_the_others(vtest_path, tmp_path) -> None:
    cams = [cam(vtest_path, id="ok"), cam(tmp_path / "gone.avi", id="bad")]
    m = MultiCameraReader(cams)
    with pytest.raises(IngestError, match=r"^camera 'bad': cannot open video file .*gone\.avi"):
        m.start()
    assert m.readers["ok"].stats.finished


# -- live sources (real MJPEG over HTTP on 127.0.0.1) --------------------------------------

def test_live_stream_drops_then_reconnects_while_file_keeps_going(vtest_path, clip_jpegs) -> None:
    decoded = [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR)[::8, ::8].astype(int) for j in clip_jpegs]
    with MJPEGServer(clip_jpegs, fps=25, drop_after=15, refuse_seconds=0.5, max_seconds=20) as server:
        cams = [cam(server.url, id="ipcam"), cam(vtest_path, id="file", end_frame=300)]
        arrivals: dict[str, list[tuple[float, object]]] = {"ipcam": [], "file": []}
        t0 = time.time()
        states: list[str] = []
        with MultiCameraReader(cams, queue_size=4, backoff_initial=0.2, backoff_max=1.0) as m:
            while time.time() - t0 < 10 and len(arrivals["ipcam"]) < 35:
                for f in m.next_batch(timeout=0.5):
                    arrivals[f.camera_id].append((time.time(), f))
                states.append(m.stats["ipcam"].state)  # polled as the runner's heartbeat does
                time.sleep(0.01)  # a consumer that needs a little time per batch
            stats = m.stats
            t_stop = time.monotonic()
        assert time.monotonic() - t_stop < 1.5
    live = [f for _, f in arrivals["ipcam"]]
    assert len(live) >= 35, stats
    assert stats["ipcam"].reconnects >= 1 and stats["ipcam"].open_failures >= 1  # refused, then back
    # live, then reconnecting while refused (back-off), then live again; the file camera stays live
    assert states[0] == "live" and "reconnecting" in states and stats["ipcam"].state == "live"
    assert "live" in states[states.index("reconnecting"):] and stats["file"].state == "live"
    assert m.stats["ipcam"].state == "ended" and camera_state(m.stats["ipcam"].state, True) == "ended"
    assert server.drops_done == 1 and server.connections >= 2
    assert [f.index for f in live] == sorted({f.index for f in live})
    stamps = [f.timestamp for f in live]
    assert stamps == sorted(stamps) and t0 - 0.1 <= stamps[0] and stamps[-1] <= time.time()
    for f in live[::5]:  # each delivered image is one of the served real frames
        assert f.shape == (576, 768)
        small = f.image[::8, ::8].astype(int)
        assert min(np.abs(small - d).mean() for d in decoded) < 3
    # the outage: the longest pause between live frames; the file camera delivered during it
    gaps = np.diff([t for t, _ in arrivals["ipcam"]])
    k = int(np.argmax(gaps))
    gap_start, gap_end = arrivals["ipcam"][k][0], arrivals["ipcam"][k + 1][0]
    assert gap_end - gap_start > 0.4
    assert sum(gap_start < t < gap_end for t, _ in arrivals["file"]) >= 5
    file_idx = [f.index for _, f in arrivals["file"]]
    assert file_idx == list(range(len(file_idx)))  # nothing lost on the file camera


def test_live_without_reconnect_ends(clip_jpegs) -> None:
    with MJPEGServer(clip_jpegs, fps=50, drop_after=5, max_seconds=10) as server:
        with MultiCameraReader([cam(server.url, reconnect=False)], backoff_initial=0.1) as m:
            frames = [f for batch in m for f in batch]  # ends by itself
        assert len(frames) == 5 and m.finished
        s = m.stats["cam"]
        assert s.reconnects == 0 and "dropped after 5 frames" in s.last_error
        assert s.state == "failed" and camera_state(s.state, ended=True) == "failed"
        assert camera_state(s.state, ended=False) == "live"  # frames still queued: not ended for the run yet


def test_live_queue_drops_oldest_frames_when_consumer_is_slow(clip_jpegs) -> None:
    with MJPEGServer(clip_jpegs, fps=50, max_seconds=10) as server:
        r = CameraReader(cam(server.url), queue_size=2).start()
        time.sleep(1.0)  # nobody consumes: ~50 frames arrive, only the 2 newest are kept
        first = r.get(timeout=1.0)
        read = r.stats.frames_read
        r.stop()
    s = r.stats
    assert s.frames_dropped >= 20 and s.frames_delivered >= s.frames_dropped + 2
    assert first is not None and first.index >= read - 4  # bounded latency: a recent frame
    assert time.time() - first.timestamp < 0.5


def test_unreachable_url_retries_with_exponential_backoff() -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = CameraReader(cam(f"http://127.0.0.1:{port}/video.mjpg"), backoff_initial=0.05, backoff_max=0.2).start()
    time.sleep(1.0)  # waits 0.05, 0.1, 0.2, 0.2, 0.2, ... -> about 6 attempts, not hundreds
    assert r.stats.state == "reconnecting" and camera_state(r.stats.state, ended=False) == "reconnecting"
    t = time.monotonic()
    r.stop()
    assert time.monotonic() - t < 1.0
    s = r.stats
    assert 3 <= s.open_failures <= 10 and s.reconnects == 0 and s.frames_read == 0
    assert s.last_error == f"cannot connect to http://127.0.0.1:{port}/video.mjpg" and s.finished


def test_stalled_stream_times_out_and_reconnects(clip_jpegs) -> None:
    with MJPEGServer(clip_jpegs, fps=50, drop_after=10, stall=True, max_seconds=15) as server:
        r = CameraReader(cam(server.url), read_timeout=0.5, backoff_initial=0.1).start()
        frames, t0 = [], time.monotonic()
        while len(frames) < 20 and time.monotonic() - t0 < 8:
            f = r.get(timeout=0.2)
            if f is not None:
                frames.append(f)
        r.stop()
    assert len(frames) == 20 and server.drops_done == 1  # 10 before the stall, 10 after reconnecting
    assert r.stats.reconnects == 1 and "dropped after 10 frames" in r.stats.last_error
    assert [f.index for f in frames] == list(range(20))


CTRL_C_SCRIPT = """
import sys, time
from pipeline.config import CameraConfig
from pipeline.ingest import MultiCameraReader
from tests.pipeline.ingest.mjpeg_server import MJPEGServer
jpegs = [open(p, "rb").read() for p in sys.argv[2:]]
with MJPEGServer(jpegs, fps=25, max_seconds=30) as server:
    cams = [CameraConfig("file", sys.argv[1]), CameraConfig("live", server.url)]
    with MultiCameraReader(cams, queue_size=2) as m:
        for i, batch in enumerate(m):
            if i == 5:
                print("ready", flush=True)
            time.sleep(0.05)
"""


def test_ctrl_c_stops_all_readers_within_a_second(vtest_path, clip_jpegs, tmp_path) -> None:
    jpegs = []
    for i, data in enumerate(clip_jpegs[:3]):
        jpegs.append(tmp_path / f"{i}.jpg")
        jpegs[-1].write_bytes(data)
    repo = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C_SCRIPT, str(vtest_path), *map(str, jpegs)], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(repo)}, preexec_fn=default_sigint)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        t = time.monotonic()
        proc.wait(timeout=5)
        assert time.monotonic() - t < 1.5
    finally:
        proc.kill()
        proc.wait()
    assert "KeyboardInterrupt" in proc.stderr.read()
