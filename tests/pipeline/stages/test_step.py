"""FrameStepper, the run loop's step shared by the single process and the worker groups: real frames of the
demo clip with the public det.txt (read from ../shared, never copied), two cameras in one batch."""
from __future__ import annotations

import cv2
import numpy as np
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
