"""pipeline.config: a good cams.yaml loads into frozen dataclasses; each mistake is a one-line error."""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pipeline.config import (
    AssociationConfig,
    CameraConfig,
    ConfigError,
    DetectorConfig,
    PipelineConfig,
    TrackerConfig,
    TransitRule,
    config_from_dict,
    config_to_dict,
    load_config,
)

GOOD = """\
cameras:
  - id: cam1
    source: clips/vtest.avi
    fps: 25
    start_time: "2024-05-01T10:00:00+02:00"
    stride: 2
    start_frame: 10
    end_frame: 400
    roi: [0, 0, 384, 576]
  - id: cam2
    source: clips/vtest.avi
    start_time: 1714550400
    roi: [384, 0, 768, 576]
  - id: door
    source: frames
  - id: lobby
    source: rtsp://127.0.0.1:8554/lobby
    reconnect: false
  - id: usb
    source: 0
detector:
  weights: weights/best.pt
  person_classes: [0]
  confidence: 0.3
  half: false
tracker:
  track_buffer: 60
embedder:
  sample_interval: 0.5
association:
  threshold: 0.7
  transit:
    - cameras: [cam1, cam2]
      min_seconds: 5
      max_seconds: 120
store:
  path: runs/demo.db
"""


@pytest.fixture()
def project(tmp_path: Path, vtest_path: Path) -> Path:
    """A folder like a user's project: the YAML, a clip, a frames folder and a weights file."""
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "vtest.avi").symlink_to(vtest_path)
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "000001.jpg").write_bytes(b"\xff\xd8")  # existence is what config checks
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "best.pt").write_bytes(b"x")
    (tmp_path / "cams.yaml").write_text(GOOD)
    return tmp_path


def test_good_yaml_loads_into_frozen_dataclasses(project: Path) -> None:
    cfg = load_config(project / "cams.yaml")
    assert isinstance(cfg, PipelineConfig)
    assert cfg.source_path == str((project / "cams.yaml").resolve())
    assert [c.id for c in cfg.cameras] == ["cam1", "cam2", "door", "lobby", "usb"]
    cam1, cam2, door, lobby, usb = cfg.cameras
    clip = str((project / "clips" / "vtest.avi").resolve())
    assert cam1 == CameraConfig(id="cam1", source=clip, fps=25.0, start_time=1714550400.0, stride=2,
                                start_frame=10, end_frame=400, roi=(0, 0, 384, 576), reconnect=True)
    assert cam2.start_time == 1714550400.0 and cam2.fps is None and cam2.roi == (384, 0, 768, 576)
    assert [c.kind for c in cfg.cameras] == ["file", "file", "folder", "url", "webcam"]
    assert [c.is_live for c in cfg.cameras] == [False, False, False, True, True]
    assert door.source == str((project / "frames").resolve())
    assert lobby.source == "rtsp://127.0.0.1:8554/lobby" and lobby.reconnect is False
    assert usb.source == 0
    assert cfg.detector == DetectorConfig(weights=str((project / "weights" / "best.pt").resolve()),
                                          person_classes=(0,), confidence=0.3, half=False)
    assert cfg.tracker == TrackerConfig(track_buffer=60)
    assert cfg.embedder.sample_interval == 0.5 and cfg.embedder.batch_size == 32
    assert cfg.association == AssociationConfig(
        threshold=0.7, transit=(TransitRule(cameras=("cam1", "cam2"), min_seconds=5.0, max_seconds=120.0),))
    assert cfg.store.path == str((project / "runs" / "demo.db").resolve())
    with pytest.raises(dataclasses.FrozenInstanceError):
        cam1.fps = 10  # type: ignore[misc]


def test_defaults_and_json_snapshot(project: Path) -> None:
    (project / "min.yaml").write_text("cameras:\n  - {id: a, source: clips/vtest.avi}\n")
    cfg = load_config(project / "min.yaml")
    assert cfg.detector == DetectorConfig() and cfg.detector.person_classes == (0,)
    assert cfg.tracker.min_hits == 3 and cfg.embedder.checkpoint is None
    assert cfg.association.transit == () and cfg.store.commit_interval == 1.0
    assert cfg.store.path == str((project / "runs" / "store.db").resolve())
    snap = json.loads(json.dumps(config_to_dict(load_config(project / "cams.yaml"))))
    assert snap["cameras"][0]["roi"] == [0, 0, 384, 576]
    assert snap["association"]["transit"][0]["cameras"] == ["cam1", "cam2"]
    assert snap["detector"]["person_classes"] == [0] and snap["source_path"].endswith("cams.yaml")


def test_yaml_timestamps_and_naive_iso_are_utc(project: Path) -> None:
    clip = str(project / "clips" / "vtest.avi")
    for value in ["2024-05-01T08:00:00", "2024-05-01T08:00:00Z", datetime(2024, 5, 1, 8, 0)]:
        cfg = config_from_dict({"cameras": [{"id": "a", "source": clip, "start_time": value}]})
        assert cfg.cameras[0].start_time == datetime(2024, 5, 1, 8, tzinfo=timezone.utc).timestamp()


def test_empty_optional_sections_mean_defaults(project: Path) -> None:
    (project / "c.yaml").write_text("cameras:\n  - {id: a, source: clips/vtest.avi}\ndetector:\nstore:\n")
    assert load_config(project / "c.yaml").detector == DetectorConfig()


CAM = "cameras:\n  - id: cam1\n    source: clips/vtest.avi\n"
ALLOWED_CAM = "id, source, fps, start_time, stride, start_frame, end_frame, roi, reconnect, detections"

BAD = [
    # (yaml text, expected message after "cams.yaml: ")
    (CAM + "  - id: cam2\n    source: clips/vtest.avi\n    fps: ten\n",
     "cameras[1].fps: expected a positive number, got 'ten'"),
    (CAM + "    fsp: 10\n", f"cameras[0].fsp: unknown key (did you mean 'fps'?); allowed keys: {ALLOWED_CAM}"),
    (CAM + "camera: {}\n",
     "camera: unknown key (did you mean 'cameras'?); "
     "allowed keys: cameras, detector, tracker, embedder, association, store, retention"),
    (CAM + "detector:\n  conf: 0.5\n",
     "detector.conf: unknown key (did you mean 'confidence'?); "
     "allowed keys: weights, person_classes, confidence, iou, imgsz, max_aspect, half, interval"),
    (CAM + "  - id: cam1\n    source: clips/vtest.avi\n",
     "cameras[1].id: duplicate camera id 'cam1' (also cameras[0].id); give each camera a unique id"),
    (CAM + "    roi: [100, 0, 50, 200]\n",
     "cameras[0].roi: expected [x1, y1, x2, y2] integer pixels >= 0 with x1 < x2 and y1 < y2, "
     "got [100, 0, 50, 200]"),
    (CAM + "    roi: [0, 0, 100]\n",
     "cameras[0].roi: expected [x1, y1, x2, y2] integer pixels >= 0 with x1 < x2 and y1 < y2, got [0, 0, 100]"),
    (CAM + "association:\n  transit:\n    - cameras: [cam1, cam9]\n",
     "association.transit[0].cameras: unknown camera 'cam9'; known cameras: cam1"),
    (CAM + "    stride: 0\n", "cameras[0].stride: expected an integer >= 1, got 0"),
    (CAM + "    start_frame: 50\n    end_frame: 20\n",
     "cameras[0].end_frame: must be greater than start_frame (50), got 20"),
    (CAM + "    start_time: yesterday\n",
     "cameras[0].start_time: expected an ISO-8601 time like '2024-05-01T10:00:00+02:00' or epoch seconds, "
     "got 'yesterday'"),
    (CAM + "    reconnect: 'yes'\n", "cameras[0].reconnect: expected true or false, got 'yes'"),
    (CAM + "detector:\n  confidence: 1.5\n", "detector.confidence: expected a number from 0 to 1, got 1.5"),
    (CAM + "detector:\n  person_classes: person\n",
     "detector.person_classes: expected a non-empty list of class ids >= 0 like [0], got 'person'"),
    (CAM + "tracker:\n  track_low_thresh: 0.7\n  track_high_thresh: 0.5\n",
     "tracker.track_low_thresh: must not exceed track_high_thresh (0.5), got 0.7"),
    ("cameras: []\n", "cameras: expected a list of at least one camera (- id: ..., source: ...), got []"),
    ("detector: {}\n", "missing required key 'cameras' (a list of cameras with id and source)"),
    ("", "file is empty; it needs at least 'cameras:' with one camera"),
    ("cameras:\n  - id: cam1\n",
     "cameras[0]: missing required key 'source' (video file, image folder, rtsp/http URL or webcam index)"),
    ("cameras:\n  - id: cam1\n    source: ftp://host/x.avi\n",
     "cameras[0].source: unsupported URL scheme 'ftp://'; use one of rtsp://, rtsps://, rtmp://, http://, "
     "https://, udp://, tcp://, srt://"),
    ("cameras:\n  - id: cam1\n    source: rtsp://10.0.0.2/s\n    start_frame: 100\n",
     "cameras[0].start_frame: only applies to video files and image folders; live sources (URL, webcam) "
     "are stamped with wall-clock time: remove it"),
    ("cameras:\n  - id: cam 1\n    source: clips/vtest.avi\n",
     "cameras[0].id: expected a name of letters, digits, '_', '-' or '.', got 'cam 1'"),
    (CAM + "    fps: 10\n    fps: 12\n", "line 5: duplicate key 'fps'; keep only one of them"),
    (CAM + "    fps: 10: 5\n",
     "line 4, column 12: invalid YAML (mapping values are not allowed here); "
     "fix the syntax (indent with spaces, 'key: value')"),
]


@pytest.mark.parametrize("text,expected", BAD, ids=[b[1].split(":")[0][:40] for b in BAD])
def test_bad_input_gives_one_line_message(project: Path, monkeypatch, text: str, expected: str) -> None:
    monkeypatch.chdir(project)
    Path("cams.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config("cams.yaml")
    assert str(err.value) == f"cams.yaml: {expected}"
    assert isinstance(err.value, ValueError) and "\n" not in str(err.value)


def test_missing_files_are_named_with_the_folder_they_were_looked_in(project: Path, monkeypatch) -> None:
    monkeypatch.chdir(project)
    with pytest.raises(ConfigError, match=r"^nope\.yaml: config file not found; check the path"):
        load_config("nope.yaml")
    Path("cams.yaml").write_text("cameras:\n  - id: a\n    source: clips/missing.mp4\n")
    with pytest.raises(ConfigError) as err:
        load_config("cams.yaml")
    base = project.resolve()
    assert str(err.value) == (f"cams.yaml: cameras[0].source: no such video file or image folder: "
                              f"{base / 'clips' / 'missing.mp4'} (relative paths are resolved from {base})")
    Path("cams.yaml").write_text(CAM + "embedder:\n  checkpoint: ckpt/osnet.pt\n")
    with pytest.raises(ConfigError, match=r"^cams\.yaml: embedder\.checkpoint: file not found: .*ckpt/osnet\.pt"):
        load_config("cams.yaml")
    (project / "empty").mkdir()
    Path("cams.yaml").write_text("cameras:\n  - id: a\n    source: empty\n")
    with pytest.raises(ConfigError, match=r"^cams\.yaml: cameras\[0\]\.source: folder .*empty has no image files"):
        load_config("cams.yaml")


def test_paths_resolve_from_the_yaml_folder_not_the_working_folder(project: Path, monkeypatch,
                                                                    tmp_path_factory) -> None:
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    cfg = load_config(project / "cams.yaml")
    assert Path(cfg.cameras[0].source) == (project / "clips" / "vtest.avi").resolve()


def test_a_postgresql_store_url_is_kept_as_given(project: Path) -> None:
    url = "postgresql://camreid@db.internal:5432/cams?sslmode=verify-full"
    (project / "cams.yaml").write_text(GOOD.replace("path: runs/demo.db", f"path: '{url}'"))
    assert load_config(project / "cams.yaml").store.path == url  # not resolved as a file path


def test_the_association_section_alone_is_read_without_the_cameras(project: Path) -> None:
    from pipeline.config import load_association

    cfg = load_association(project / "cams.yaml")
    assert cfg.threshold == 0.7 and cfg.transit == (TransitRule(cameras=("cam1", "cam2"), min_seconds=5,
                                                                max_seconds=120),)
    only = project / "association.yaml"
    only.write_text("association:\n  threshold: 0.8\n  transit:\n    - {cameras: [north, south], max_seconds: 10}\n")
    assert load_association(only).transit[0].cameras == ("north", "south")  # no camera list needed
    only.write_text("association:\n  treshold: 0.8\n")
    with pytest.raises(ConfigError, match=r"association\.treshold: unknown key \(did you mean 'threshold'\?\)"):
        load_association(only)
    only.write_text("store: {path: x.db}\n")
    with pytest.raises(ConfigError, match="no 'association:' section"):
        load_association(only)
