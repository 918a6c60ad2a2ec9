"""pipeline/runner.py with a live camera that fails mid-run: it is reconnected while a file camera keeps going.

Two cameras through the real pipeline (bundled detector, ByteTracker, MobileNetV2, SQLite store):
``north``, 60 frames of the real clip streams/vtest.avi, and ``live``, an MJPEG-over-HTTP camera on
127.0.0.1 (tests/pipeline/mjpeg_server.py) serving real frames of the same clip. Once the pipeline
has processed a few frames of both, the server cuts the live connection and refuses new ones for
REFUSE_S seconds, then accepts again. The live source never ends by itself; ``max_frames`` stops it.
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from pipeline.ingest import seek_frame
from pipeline.runner import Runner, run_pipeline
from pipeline.store import StoreReader
from tests.pipeline.ingest.mjpeg_server import MJPEGServer

FILE_WINDOW = (340, 400)   # north: source frames [start, end) of the clip, people walking
LIVE_FRAMES = (400, 460)   # the live camera cycles over these real clip frames
N_FRAMES = FILE_WINDOW[1] - FILE_WINDOW[0]  # max_frames: stops the live camera too
DROP_AT = 8                # cut the live stream once the pipeline has done this many north frames
                           # ... and once live boxes are stored (the tracker confirms a track and proves it
                           # moves before its boxes are kept), however slowly a machine delivers live frames
REFUSE_S = 5.0             # then refuse connections this long: the reader, backing off 0.5, 1, 2, 4 s,
                           # is back after ~7.5 s, several pipeline steps even on a busy 2-core machine
DEADLINE_S = 120.0         # a run still going after this long has lost its live camera: fail, don't hang


def _stored_boxes(reader: StoreReader, camera: str) -> int:
    """Boxes of ``camera`` in the writer's store so far (its reader sees the open batch)."""
    tracks = reader.tracks(camera=camera)
    return len(reader.boxes([t.id for t in tracks])) if tracks else 0


@pytest.fixture(scope="module")
def live_jpegs(vtest_path: Path) -> list[bytes]:
    """Real clip frames LIVE_FRAMES as JPEG bytes (what an IP camera sends)."""
    cap = cv2.VideoCapture(str(vtest_path))
    cap = seek_frame(cap, LIVE_FRAMES[0], lambda: cv2.VideoCapture(str(vtest_path)))
    jpegs = []
    for _ in range(*LIVE_FRAMES):
        ok, image = cap.read()
        assert ok and image.shape == (576, 768, 3)
        jpegs.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
    cap.release()
    return jpegs


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_live_camera_drops_and_reconnects_while_file_camera_keeps_going(make_demo_yaml, live_jpegs, tmp_path,
                                                                        monkeypatch) -> None:
    # The server would drop after 10**6 frames; the hook below sets drop_after = 0 ("drop now") mid-run, so
    # the outage falls while north still has frames, however fast or slow this machine is.
    with MJPEGServer(live_jpegs, fps=5, drop_after=10**6, drops=1, refuse_seconds=REFUSE_S,
                     max_seconds=DEADLINE_S + 30) as server:
        cams = make_demo_yaml(tmp_path / "cams.yaml", window={"north": FILE_WINDOW}, db=tmp_path / "live.db")
        data = yaml.safe_load(cams.read_text())
        data["cameras"].append({"id": "live", "source": server.url})
        cams.write_text(yaml.safe_dump(data, sort_keys=False))

        # every frame the pipeline processes: (wall time, camera, frame index, frame timestamp)
        seen: list[tuple[float, str, int, float]] = []
        step = Runner._step
        t_start = time.time()

        heartbeats: list[str] = []  # the live camera's camera_status state after each step (writer's batch)

        def recording_step(self: Runner, batch) -> None:
            step(self, batch)
            row = self.store.reader.camera_statuses().get("live")
            heartbeats.append(row.state if row is not None else None)
            now = time.time()
            seen.extend((now, f.camera_id, f.index, f.timestamp) for f in batch)
            n_north = sum(c == "north" for _, c, _, _ in seen)
            if n_north >= DROP_AT and server.drop_after != 0 and _stored_boxes(self.store.reader, "live") > 0:
                server.drop_after = 0
            if now - t_start > DEADLINE_S:
                raise RuntimeError(f"run still going after {DEADLINE_S} s (server: {server.connections} "
                                   f"connections, {server.drops_done} drops)")

        monkeypatch.setattr(Runner, "_step", recording_step)
        summary = run_pipeline(cams, device="cpu", max_frames=N_FRAMES, progress=False)
        t_end = time.time()
    print(summary.format())

    # the run ended by itself, with every frame of both cameras, and the live camera came back
    assert not summary.interrupted and summary.cameras == ("north", "live")
    assert summary.frames == 2 * N_FRAMES
    assert server.drops_done == 1 and server.connections >= 2
    assert summary.reconnects.get("live", 0) >= 1 and "north" not in summary.reconnects
    assert "reconnects: live" in summary.format()

    north = [(t, i) for t, c, i, _ in seen if c == "north"]
    live = [(t, i, stamp) for t, c, i, stamp in seen if c == "live"]
    assert [i for _, i in north] == list(range(*FILE_WINDOW))  # no file frame lost or reordered
    assert len(live) == N_FRAMES and [i for _, i, _ in live] == sorted({i for _, i, _ in live})

    # the outage: the longest pause between live frames (grab times); north frames were processed during it
    stamps = np.array([s for _, _, s in live])
    assert (np.diff(stamps) > 0).all() and t_start <= stamps[0] and stamps[-1] <= t_end
    k = int(np.argmax(np.diff(stamps)))
    gap_start, gap_end = stamps[k], stamps[k + 1]
    during = [i for t, i in north if gap_start < t < gap_end]
    print(f"live outage {gap_end - gap_start:.1f} s; north frames processed meanwhile: {during}")
    assert gap_end - gap_start >= REFUSE_S  # the server refused this long
    assert len(during) >= 2, (gap_start, gap_end, north)
    assert during == list(range(during[0], during[0] + len(during)))
    assert sum(s > gap_end for s in stamps) >= 3  # and live frames flowed again afterwards

    # the heartbeat said so: live, reconnecting during the outage, live again; both cameras end with their frames
    assert "reconnecting" in heartbeats and "live" in heartbeats[heartbeats.index("reconnecting"):]
    with StoreReader(tmp_path / "live.db") as store:
        rows = store.camera_statuses()
    assert {c: (r.state, r.frames) for c, r in rows.items()} == {"north": ("ended", N_FRAMES),
                                                                 "live": ("ended", N_FRAMES)}

    # both cameras' tracks and boxes are in the store, the live ones stamped with wall-clock time
    with StoreReader(tmp_path / "live.db") as store:
        tracks = store.tracks()
        assert all(t.ended for t in tracks)
        for cam in ("north", "live"):
            mine = [t for t in tracks if t.camera_id == cam]
            assert mine and sum(t.n_boxes for t in mine) >= 10, cam
            boxes = store.boxes([t.id for t in mine])
            assert len(boxes) == sum(t.n_boxes for t in mine)
            if cam == "north":
                assert (boxes.frame >= FILE_WINDOW[0]).all() and (boxes.frame < FILE_WINDOW[1]).all()
            else:
                assert (boxes.time >= t_start).all() and (boxes.time <= t_end).all()
                # boxes on both sides of the outage: the reconnected stream was detected and tracked too
                assert (boxes.time < gap_start + 1e-6).any() and (boxes.time > gap_end - 1e-6).any()
