"""Public detections (``detections:`` a MOTChallenge det.txt): config checks, roi handling and a real run
whose tracks carry exactly the det.txt boxes (det.txt read from ../shared, never copied)."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from pipeline.config import CameraConfig, ConfigError, load_config
from pipeline.config.detections import read_detection_file
from pipeline.stages.public import PublicDetections
from pipeline.types import Frame
from tests.conftest import REPO
from tests.pipeline.evaluation.test_mot import PETS

DET = PETS / "det" / "det.txt"
needs_det = pytest.mark.skipif(not DET.is_file(), reason=f"MOTChallenge PETS09-S2L1 det.txt not found at {DET} "
                                                         "(CC BY-NC-SA, kept outside the repo)")
CLIP = REPO / "streams" / "vtest.avi"


def write_yaml(tmp_path, **camera):
    path = tmp_path / "cams.yaml"
    path.write_text(yaml.safe_dump({"cameras": [{"id": "pets", "source": str(CLIP), **camera}]}))
    return path


def test_malformed_or_missing_det_file_is_one_line_at_config_load(tmp_path):
    bad = tmp_path / "det.txt"
    bad.write_text("1,-1,10,20,30,40,0.9\n2,-1,10,twenty,30,40,0.9\n")
    with pytest.raises(ConfigError) as e:
        load_config(write_yaml(tmp_path, detections=str(bad)))
    msg = str(e.value)
    assert "cameras[0].detections" in msg and f"{bad}:2" in msg and "non-numeric" in msg and "\n" not in msg
    bad.write_text("1,-1,10,20,30,40\n")
    with pytest.raises(ConfigError, match="6 columns, need at least 7"):
        load_config(write_yaml(tmp_path, detections=str(bad)))
    with pytest.raises(ConfigError, match="file not found"):
        load_config(write_yaml(tmp_path, detections="missing.txt"))
    with pytest.raises(ConfigError, match="live sources"):
        CameraConfig("cam", "rtsp://example.invalid/x", detections=str(bad))


def test_boxes_of_a_frame_without_and_with_roi(tmp_path):
    det = tmp_path / "det.txt"
    # frame 3 (= source frame 2): one box inside the roi, one crossing its right edge, one outside
    det.write_text("3,-1,110,120,20,40,0.9\n3,-1,180,100,30,40,0.4\n3,-1,400,100,20,40,0.8\n1,-1,0,0,5,5,0.1\n")
    image = np.zeros((576, 768, 3), np.uint8)
    full = PublicDetections(CameraConfig("c", str(CLIP), detections=str(det)))
    d = full.detect(Frame("c", 2, 0.0, image))
    np.testing.assert_allclose(d.xyxy, [[110, 120, 130, 160], [180, 100, 210, 140], [400, 100, 420, 140]])
    np.testing.assert_allclose(d.confidence, [0.9, 0.4, 0.8], rtol=1e-6)  # scores as given, no cut-off
    assert len(full.detect(Frame("c", 1, 0.0, image))) == 0
    roi = PublicDetections(CameraConfig("c", str(CLIP), roi=(100, 50, 200, 250), detections=str(det)))
    d = roi.detect(Frame("c", 2, 0.0, image[50:250, 100:200], origin=(100, 50)))
    np.testing.assert_allclose(d.xyxy, [[10, 70, 30, 110], [80, 50, 100, 90]])  # cut to the 100x200 crop
    with pytest.raises(ValueError, match="got a frame of"):
        roi([Frame("other", 2, 0.0, image)])


@pytest.mark.slow
@needs_det
def test_run_with_public_detections_tracks_exactly_the_det_boxes(tmp_path):
    """100 frames of the clip with the real det.txt: no detector is loaded, and every stored box that is
    not interpolated lies on a det.txt box of that frame (the tracker reports its Kalman-corrected box
    of the matched detection, so it overlaps the detection closely rather than equalling it)."""
    from pipeline.runner import Runner
    from pipeline.store import StoreReader

    cams = write_yaml(tmp_path, detections=str(DET), end_frame=100, start_time=1714557600.0)
    runner = Runner(load_config(cams), db_path=tmp_path / "s.db", device="cpu", progress=False)
    summary = runner.run()
    assert runner.stages.detector is None and summary.tracks >= 5
    det = read_detection_file(DET)
    with StoreReader(tmp_path / "s.db") as store:
        tracks = store.tracks()
        b = store.boxes([t.id for t in tracks])
    assert len(b.frame) > 300 and b.frame.max() <= 99
    detected = ~np.asarray(b.interpolated, bool)
    assert detected.sum() > 300
    best = []
    for f, box in zip(b.frame[detected], b.xyxy[detected]):
        rows = det.xyxy[det.rows_of(int(f))]
        inter = np.clip(np.minimum(rows[:, 2:], box[2:]) - np.maximum(rows[:, :2], box[:2]), 0, None).prod(1)
        union = (rows[:, 2:] - rows[:, :2]).prod(1) + (box[2:] - box[:2]).prod() - inter
        best.append((inter / union).max())
    best = np.array(best)
    assert best.min() > 0.3, best.min()  # every reported box sits on a det.txt box of its frame
    assert (best >= 0.5).mean() >= 0.95, (best >= 0.5).mean()  # and nearly all match it (MOTChallenge IoU 0.5)
