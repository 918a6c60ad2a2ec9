"""pipeline/embed.py: the real ImageNet MobileNetV2 embedder, reid_models checkpoints, TrackSampler."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pipeline.embed import Embedder, TrackSampler, crop_boxes, mobilenet_weights_path
from pipeline.types import Detections, Frame

BUS = Path(importlib.util.find_spec("ultralytics").submodule_search_locations[0]) / "assets" / "bus.jpg"
BUS_PEOPLE = [[46, 384, 216, 907], [211, 391, 347, 872], [657, 254, 809, 887], [1, 379, 188, 908]]
# The same three people in vtest.avi frames 392 and 396 (boxes found by the bundled detector).
VTEST_392 = [[249, 188, 296, 264], [644, 280, 698, 396], [568, 141, 609, 213]]
VTEST_396 = [[255, 192, 300, 267], [667, 289, 728, 407], [574, 136, 622, 208]]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(None, device="cpu", batch_size=4)


def _vtest_frame(path: Path, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, image = cap.read()
    cap.release()
    assert ok
    return image


def test_mobilenet_embeds_real_people_as_unit_vectors(embedder):
    assert embedder.dim == 1280 and embedder.input_size == (224, 224)
    image = cv2.imread(str(BUS))
    crops = crop_boxes(image, np.array(BUS_PEOPLE))
    v = embedder(crops)  # 4 crops in batches of 4: one forward
    assert v.shape == (4, 1280) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    again = embedder(crops[::-1])[::-1]  # batch order does not matter
    assert np.allclose(v, again, atol=1e-4)
    assert embedder([]).shape == (0, 1280)


def test_same_person_in_nearby_frames_is_closer_than_other_people(embedder, vtest_path):
    a = embedder(crop_boxes(_vtest_frame(vtest_path, 392), np.array(VTEST_392)))
    b = embedder(crop_boxes(_vtest_frame(vtest_path, 396), np.array(VTEST_396)))
    sim = a @ b.T
    for i in range(3):
        others = np.delete(sim[i], i)
        assert sim[i, i] > others.max() + 0.03, sim


def test_embedder_id_identifies_the_weights(embedder, tmp_path):
    from reid_models import create_model, save_checkpoint

    assert embedder.embedder_id.startswith("mobilenetv2_imagenet-")
    assert embedder.spec["sha256"].startswith(embedder.embedder_id.split("-")[-1])
    assert Embedder.from_spec(embedder.spec, device="cpu").embedder_id == embedder.embedder_id
    assert mobilenet_weights_path().is_file()

    torch.manual_seed(0)
    model = create_model("bot_r50", num_classes=5, input_size=(64, 32))
    kw = dict(model_name="bot_r50", model_kwargs={"input_size": (64, 32)}, num_classes=5, input_size=(64, 32))
    first = save_checkpoint(tmp_path / "a.pt", model, **kw)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    second = save_checkpoint(tmp_path / "b.pt", model, **kw)
    ea, eb = Embedder(first, device="cpu"), Embedder(second, device="cpu")
    assert ea.embedder_id.startswith("bot_r50-") and ea.input_size == (64, 32) and ea.dim == 2048
    assert len({ea.embedder_id, eb.embedder_id, embedder.embedder_id}) == 3
    crops = crop_boxes(cv2.imread(str(BUS)), np.array(BUS_PEOPLE[:2]))
    v = ea(crops)
    assert v.shape == (2, 2048) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert Embedder.from_spec(ea.spec, device="cpu").embedder_id == ea.embedder_id
    first.write_bytes(second.read_bytes())  # the weights behind a store changed: refuse
    with pytest.raises(ValueError, match="restore the original weights"):
        Embedder.from_spec(ea.spec, device="cpu")


def test_bad_input_is_a_clear_error(embedder, tmp_path):
    with pytest.raises(ValueError, match="crop 1 is empty"):
        embedder([np.zeros((10, 10, 3), np.uint8), np.zeros((0, 5, 3), np.uint8)])
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        Embedder(tmp_path / "missing.pt", device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            Embedder(None, device="cuda")


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
    s = TrackSampler(min_confidence=0.5, min_height=48, border=2, aspect_range=(1.0, 5.0))
    boxes = [[100, 100, 140, 200],   # good
             [0, 100, 40, 200],      # cut by the left border
             [700, 500, 740, 576],   # cut by the bottom border
             [100, 100, 140, 140],   # too short (40 px)
             [100, 100, 300, 200],   # lying / merged boxes (h/w 0.5)
             [300, 100, 340, 200]]   # good box, low confidence
    conf = np.array([0.9, 0.9, 0.9, 0.9, 0.9, 0.3])
    assert s.select(_frame(0.0), _tracks(boxes, conf)).tolist() == [0]


def test_sampler_spaces_and_caps_samples_per_track():
    s = TrackSampler(max_samples_per_track=3, sample_interval=1.0, min_confidence=0.5)
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


def test_sampler_from_config():
    from pipeline.config import EmbedderConfig

    s = TrackSampler.from_config(EmbedderConfig(max_samples_per_track=2, sample_interval=0.5, min_confidence=0.4,
                                                min_height=30))
    assert (s.max_samples_per_track, s.sample_interval, s.min_confidence, s.min_height) == (2, 0.5, 0.4, 30)
