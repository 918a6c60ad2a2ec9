"""TrackSampler (which tracked boxes are embedded) and crop_boxes, on synthetic tracks."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import EmbedderConfig
from pipeline.stages.sampling import SAMPLE_ASPECT_RANGE, SAMPLE_BORDER, TrackSampler, crop_boxes
from pipeline.types import Detections, Frame


def test_crop_boxes_clips_to_the_image():
    image = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    a, b, c = crop_boxes(image, np.array([[-5, -5, 10, 8], [25.5, 15.2, 40, 40], [29.9, 19.9, 29.9, 19.9]]))
    assert a.shape == (8, 10, 3) and (a == image[:8, :10]).all()
    assert b.shape == (5, 5, 3)
    assert c.shape == (1, 1, 3)


# ---------------------------------------------------------------------------------- TrackSampler
def _frame(t: float, cam: str = "cam1") -> Frame:
    return Frame(cam, int(t * 10), t, np.zeros((576, 768, 3), np.uint8))


def _tracks(boxes, conf=None, ids=None) -> Detections:
    n = len(boxes)
    return Detections.from_arrays(np.array(boxes, np.float32), np.full(n, 0.9) if conf is None else conf,
                                  track_id=np.arange(1, n + 1) if ids is None else ids)


def test_sampler_quality_filter():
    s = TrackSampler(EmbedderConfig(min_confidence=0.5, min_height=48))
    assert (s.border, s.aspect_range) == (SAMPLE_BORDER, SAMPLE_ASPECT_RANGE) == (2, (1.0, 5.0))
    boxes = [[100, 100, 140, 200],   # good
             [0, 100, 40, 200],      # cut by the left border
             [700, 500, 740, 576],   # cut by the bottom border
             [100, 100, 140, 140],   # too short (40 px)
             [100, 100, 300, 200],   # lying / merged boxes (h/w 0.5)
             [300, 100, 340, 200]]   # good box, low confidence
    conf = np.array([0.9, 0.9, 0.9, 0.9, 0.9, 0.3])
    assert s.select(_frame(0.0), _tracks(boxes, conf)).tolist() == [0]


def test_sampler_spaces_and_caps_samples_per_track():
    s = TrackSampler(EmbedderConfig(max_samples_per_track=3, sample_interval=1.0, min_confidence=0.5))
    box = [[100, 100, 140, 200], [300, 100, 340, 200]]
    picked = [s.select(_frame(t), _tracks(box)).tolist() for t in np.arange(0, 6, 0.5)]
    assert picked == [[0, 1], [], [0, 1], [], [0, 1], [], [], [], [], [], [], []]
    assert s.samples("cam1", 1) == 3
    # another camera's track 1 is another track
    assert s.select(_frame(6.0, "cam2"), _tracks(box[:1])).tolist() == [0]
    s.forget("cam1", [1])
    assert s.samples("cam1", 1) == 0 and s.samples("cam2", 1) == 1
    untracked = _tracks(box, ids=np.array([-1, -1]))
    assert s.select(_frame(9.0), untracked).tolist() == []


def test_sampler_takes_exactly_its_config_section():
    cfg = EmbedderConfig(max_samples_per_track=2, sample_interval=0.5, min_confidence=0.4, min_height=30)
    s = TrackSampler(cfg)
    c = s.config
    assert (c.max_samples_per_track, c.sample_interval, c.min_confidence, c.min_height) == (2, 0.5, 0.4, 30)
    box = [[100, 100, 125, 140]]  # 40 px high: kept with min_height 30, not with the default 48
    assert s.select(_frame(0.0), _tracks(box, np.array([0.45]))).tolist() == [0]
    assert TrackSampler().select(_frame(0.0), _tracks(box)).tolist() == []
    picked = [s.select(_frame(t), _tracks(box, np.array([0.45]))).tolist() for t in (0.25, 0.5, 1.0, 1.5)]
    assert picked == [[], [0], [], []]  # 0.5 s apart, at most 2 samples
    with pytest.raises(TypeError, match="EmbedderConfig"):
        TrackSampler({"min_height": 30})


def test_take_returns_the_crops_of_the_selected_rows():
    image = np.arange(576 * 768 * 3, dtype=np.uint8).reshape(576, 768, 3)
    frame = Frame("cam1", 0, 0.0, image)
    rows, crops = TrackSampler().take(frame, _tracks([[100, 100, 140, 200], [0, 0, 40, 100]]))
    assert rows.tolist() == [0] and len(crops) == 1 and (crops[0] == image[100:200, 100:140]).all()
