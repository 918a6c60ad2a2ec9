"""The config dataclasses check themselves: built in Python they fail exactly like cams.yaml does."""
from __future__ import annotations

import re

import pytest

from pipeline.config import (
    AssociationConfig,
    CameraConfig,
    ConfigError,
    DetectorConfig,
    EmbedderConfig,
    FieldError,
    PipelineConfig,
    StoreConfig,
    TrackerConfig,
    TransitRule,
    config_from_dict,
)
from pipeline.config.loader import did_you_mean

BAD = [
    (lambda: TrackerConfig(track_buffer=0), "TrackerConfig.track_buffer: expected an integer >= 1, got 0"),
    (lambda: TrackerConfig(match_thresh=1.5), "TrackerConfig.match_thresh: expected a number from 0 to 1, got 1.5"),
    (lambda: DetectorConfig(iou=0), "DetectorConfig.iou: expected a number from 0 to 1, got 0"),
    (lambda: DetectorConfig(person_classes=[]),
     "DetectorConfig.person_classes: expected a non-empty list of class ids >= 0 like [0], got []"),
    (lambda: DetectorConfig(half="yes"), "DetectorConfig.half: expected auto, true or false, got 'yes'"),
    (lambda: EmbedderConfig(batch_size=0), "EmbedderConfig.batch_size: expected an integer >= 1, got 0"),
    (lambda: StoreConfig(commit_interval=0), "StoreConfig.commit_interval: expected a positive number, got 0"),
    (lambda: TransitRule(cameras=("a",)), "TransitRule.cameras: expected two camera ids like [cam1, cam2], got ['a']"),
    (lambda: TransitRule(cameras=("a", "b"), min_seconds=5, max_seconds=2),
     "TransitRule.max_seconds: must be >= min_seconds (5.0), got 2.0"),
    (lambda: AssociationConfig(threshold=2), "AssociationConfig.threshold: expected a number from -1 to 1, got 2"),
    (lambda: CameraConfig(id="a b", source=0), "CameraConfig.id: expected a name of letters, digits, '_', '-' or '.', "
                                               "got 'a b'"),
    (lambda: CameraConfig(id="a", source="rtsp://h/s", fps=10), "CameraConfig.fps: only applies to video files and "
     "image folders; live sources (URL, webcam) are stamped with wall-clock time: remove it"),
    (lambda: PipelineConfig(cameras=()), "PipelineConfig.cameras: expected a list of at least one camera "
                                         "(- id: ..., source: ...), got []"),
    (lambda: PipelineConfig(cameras=(CameraConfig("a", 0), CameraConfig("a", 1))),
     "PipelineConfig.cameras[1].id: duplicate camera id 'a' (also cameras[0].id); give each camera a unique id"),
    (lambda: PipelineConfig(cameras=(CameraConfig("a", 0),),
                            association=AssociationConfig(transit=(TransitRule(("a", "b")),))),
     "PipelineConfig.association.transit[0].cameras: unknown camera 'b'; known cameras: a"),
]


@pytest.mark.parametrize("build,expected", BAD, ids=[b[1].split(":")[0] for b in BAD])
def test_python_built_configs_are_checked_in_one_line(build, expected):
    with pytest.raises(FieldError) as err:
        build()
    assert str(err.value) == expected and isinstance(err.value, ConfigError) and isinstance(err.value, ValueError)


def test_values_are_normalised_like_the_yaml_loader_does():
    cam = CameraConfig(id="a", source="clip.avi", fps=25, start_time="2024-05-01T10:00:00Z", roi=[0, 0, 10, 10])
    assert cam.fps == 25.0 and isinstance(cam.fps, float) and cam.start_time == 1714557600.0
    assert cam.roi == (0, 0, 10, 10)
    assert DetectorConfig(person_classes=[0]).person_classes == (0,)
    assert TransitRule(cameras=["a", "b"]).cameras == ("a", "b")
    assert TrackerConfig() == TrackerConfig(track_buffer=60)  # one set of defaults
    # the loader and Python share the dataclass defaults
    assert config_from_dict({"cameras": [{"id": "a", "source": 0}]}).tracker == TrackerConfig()


def test_did_you_mean():
    assert did_you_mean("fsp", ["fps", "stride"]) == " (did you mean 'fps'?)"
    assert did_you_mean("conf", ["confidence", "iou"]) == " (did you mean 'confidence'?)"
    assert did_you_mean("colour", ["cameras", "detector"]) == ""


def test_detector_auto_settings_and_their_messages():
    d = DetectorConfig()
    assert (d.imgsz, d.max_aspect, d.person_classes, d.confidence) == ("auto", "auto", (0,), 0.1)
    assert DetectorConfig(imgsz=960, max_aspect=1).max_aspect == 1.0
    assert DetectorConfig(max_aspect=None).max_aspect is None
    for kw, msg in [({"imgsz": "big"}, "imgsz: expected auto or an integer >= 32, got 'big'"),
                    ({"imgsz": 16}, "imgsz: expected auto or an integer >= 32, got 16"),
                    ({"max_aspect": 0}, "max_aspect: expected auto, null or a positive number like 0.41, got 0"),
                    ({"interval": 0}, "interval: expected auto or an integer >= 1 (1 = detect every frame), got 0"),
                    ({"interval": 1.5}, "interval: expected auto or an integer >= 1 (1 = detect every frame), "
                                        "got 1.5")]:
        with pytest.raises(ValueError, match=re.escape(msg)):
            DetectorConfig(**kw)
    assert DetectorConfig().confidence <= TrackerConfig().track_low_thresh  # the second stage gets weak boxes
    assert DetectorConfig().interval == "auto" and DetectorConfig(interval=3).interval == 3
    with pytest.raises(ValueError, match="interpolate_seconds: expected a number >= 0"):
        TrackerConfig(interpolate_seconds=-1)
    with pytest.raises(ValueError, match="appearance: expected true or false"):
        TrackerConfig(appearance="yes")


def test_retention_section():
    from pipeline.config import RetentionConfig

    assert not RetentionConfig().active and RetentionConfig().every_minutes == 60
    cam = [{"id": "a", "source": 0}]
    cfg = config_from_dict({"cameras": cam, "retention": {"samples_days": 30, "audit_days": 365}})
    assert cfg.retention == RetentionConfig(samples_days=30.0, audit_days=365.0) and cfg.retention.active
    with pytest.raises(FieldError, match=re.escape("RetentionConfig.boxes_days: expected a positive number, got -1")):
        RetentionConfig(boxes_days=-1)
    with pytest.raises(ConfigError, match=re.escape("retention.sample_days: unknown key (did you mean 'samples_days'")):
        config_from_dict({"cameras": cam, "retention": {"sample_days": 3}})
