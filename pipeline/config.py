"""Strict loader for ``cams.yaml``: cameras and stage settings as frozen dataclasses.

Every mistake is a :class:`ConfigError` with a one-line message naming the file, the key
path and the fix, e.g. ``cams.yaml: cameras[1].fps: expected a positive number, got 'ten'``.
Unknown keys are errors (the message lists the allowed keys). Relative paths are resolved
from the YAML file's folder. The schema is the dataclasses below (field names = YAML keys,
defaults = the values used when a key is left out); streams/demo.yaml is a working example.
The value checkers (typed getters, source/time/ROI values, strict YAML) are in
:mod:`pipeline.config_parse`.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config_parse import (
    IMAGE_EXTENSIONS,
    URL_SCHEMES,
    ConfigError,
    _Ctx,
    _DuplicateKey,
    _one_line,
    _roi,
    _show,
    _source,
    _StrictLoader,
    _timestamp,
    _url_scheme,
    _yaml_problem,
)

__all__ = ["IMAGE_EXTENSIONS", "URL_SCHEMES", "AssociationConfig", "CameraConfig", "ConfigError", "DetectorConfig",
           "EmbedderConfig", "PipelineConfig", "StoreConfig", "TrackerConfig", "TransitRule", "config_from_dict",
           "config_to_dict", "load_config"]

_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


# ---------------------------------------------------------------------------------------
# dataclasses (field names = YAML keys)
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CameraConfig:
    """One camera. ``source`` is an absolute path (file or image folder), a URL or a webcam index.

    start_time: epoch seconds (UTC) of source frame 0, or None = the run's start time.
    roi: (x1, y1, x2, y2) pixels to crop, or None for the full frame.
    """

    id: str
    source: str | int
    fps: float | None = None
    start_time: float | None = None
    stride: int = 1
    start_frame: int = 0
    end_frame: int | None = None
    roi: tuple[int, int, int, int] | None = None
    reconnect: bool = True

    @property
    def kind(self) -> str:
        """'webcam', 'url', 'folder' or 'file'."""
        if isinstance(self.source, int):
            return "webcam"
        if _url_scheme(self.source):
            return "url"
        return "folder" if Path(self.source).is_dir() else "file"

    @property
    def is_live(self) -> bool:
        """Live sources (URLs, webcams) are stamped with wall-clock time and reconnect."""
        return self.kind in ("webcam", "url")


@dataclass(frozen=True)
class DetectorConfig:
    weights: str | None = None          # None -> bundled person detector
    person_classes: tuple[int, ...] = (0, 1)
    confidence: float = 0.25
    iou: float = 0.7
    imgsz: int = 640
    half: bool | str = "auto"           # "auto" = fp16 on CUDA, fp32 on CPU


@dataclass(frozen=True)
class TrackerConfig:
    track_high_thresh: float = 0.5
    track_low_thresh: float = 0.1
    new_track_thresh: float = 0.6
    match_thresh: float = 0.8
    track_buffer: int = 30              # frames a lost track is kept
    min_hits: int = 2                   # frames before a new track is reported


@dataclass(frozen=True)
class EmbedderConfig:
    checkpoint: str | None = None       # None -> ImageNet MobileNetV2 generic embedder
    batch_size: int = 32
    max_samples_per_track: int = 8
    sample_interval: float = 1.0        # seconds between samples of one track
    min_confidence: float = 0.5
    min_height: int = 48                # pixels


@dataclass(frozen=True)
class TransitRule:
    """Allowed time (seconds) from leaving ``cameras[0]`` to appearing on ``cameras[1]`` (either way)."""

    cameras: tuple[str, str]
    min_seconds: float = 0.0
    max_seconds: float | None = None


@dataclass(frozen=True)
class AssociationConfig:
    threshold: float = 0.6              # min cosine similarity to link tracks
    min_track_samples: int = 1
    transit: tuple[TransitRule, ...] = ()


@dataclass(frozen=True)
class StoreConfig:
    path: str = "runs/store.db"         # absolute after loading
    thumbnail_height: int = 128
    commit_interval: float = 1.0        # seconds: max work lost on a crash


@dataclass(frozen=True)
class PipelineConfig:
    cameras: tuple[CameraConfig, ...]
    detector: DetectorConfig = DetectorConfig()
    tracker: TrackerConfig = TrackerConfig()
    embedder: EmbedderConfig = EmbedderConfig()
    association: AssociationConfig = AssociationConfig()
    store: StoreConfig = StoreConfig()
    source_path: str | None = None      # the YAML file it was loaded from


# ---------------------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------------------

def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a cams.yaml file. Raises ConfigError (one line) on any problem."""
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise ConfigError(f"{name}: config file not found; check the path "
                          f"(working folder is {Path.cwd()})")
    if not path.is_file():
        raise ConfigError(f"{name}: is a folder, not a YAML file; pass the path of cams.yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{name}: cannot read the file ({_one_line(e)}); "
                          "it must be a UTF-8 YAML text file") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - SafeLoader subclass
    except _DuplicateKey as e:
        raise ConfigError(f"{name}: line {e.line}: duplicate key '{e.key}'; "
                          "keep only one of them") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{name}: {_yaml_problem(e)}") from None
    cfg = config_from_dict(data, base_dir=path.resolve().parent, name=name)
    return dataclasses.replace(cfg, source_path=str(path.resolve()))


def config_from_dict(data: Any, base_dir: str | Path = ".", name: str = "config") -> PipelineConfig:
    """Validate an already-parsed mapping (as from YAML); ``name`` prefixes error messages."""
    ctx = _Ctx(name, Path(base_dir).resolve())
    if data is None:
        ctx.fail("", "file is empty; it needs at least 'cameras:' with one camera")
    top = ctx.mapping("", data, ("cameras", "detector", "tracker", "embedder", "association", "store"))
    if "cameras" not in top:
        ctx.fail("", "missing required key 'cameras' (a list of cameras with id and source)")
    cameras = _cameras(ctx, top["cameras"])
    return PipelineConfig(
        cameras=cameras,
        detector=_detector(ctx, top.get("detector")),
        tracker=_tracker(ctx, top.get("tracker")),
        embedder=_embedder(ctx, top.get("embedder")),
        association=_association(ctx, top.get("association"), [c.id for c in cameras]),
        store=_store(ctx, top.get("store")),
    )


def config_to_dict(cfg: PipelineConfig) -> dict:
    """A JSON-able snapshot of the config (tuples become lists), for storing with a run."""
    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return plain(dataclasses.asdict(cfg))


# ---------------------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------------------

def _cameras(ctx: _Ctx, value: Any) -> tuple[CameraConfig, ...]:
    if not isinstance(value, list) or not value:
        ctx.fail("cameras", f"expected a list of at least one camera (- id: ..., source: ...), "
                            f"got {_show(value)}")
    fields = [f.name for f in dataclasses.fields(CameraConfig)]
    cams: list[CameraConfig] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        p = f"cameras[{i}]"
        m = ctx.mapping(p, item, fields)
        for key in ("id", "source"):
            if key not in m:
                ctx.fail(p, f"missing required key '{key}'"
                         + ("" if key == "id" else " (video file, image folder, rtsp/http URL or webcam index)"))
        cam_id = m["id"]
        if not isinstance(cam_id, str) or not _ID_RE.match(cam_id):
            ctx.fail(f"{p}.id", f"expected a name of letters, digits, '_', '-' or '.', got {_show(cam_id)}"
                     + ("; quote it, e.g. id: 'cam1'" if isinstance(cam_id, int) else ""))
        if cam_id in seen:
            ctx.fail(f"{p}.id", f"duplicate camera id '{cam_id}' (also cameras[{seen[cam_id]}].id); "
                                "give each camera a unique id")
        seen[cam_id] = i
        source = _source(ctx, f"{p}.source", m["source"])
        live = isinstance(source, int) or bool(_url_scheme(source))
        for key in ("fps", "start_time", "start_frame", "end_frame"):
            if live and m.get(key) not in (None, 0):
                ctx.fail(f"{p}.{key}", "only applies to video files and image folders; live sources "
                                       "(URL, webcam) are stamped with wall-clock time: remove it")
        start_frame = ctx.integer(f"{p}.start_frame", m.get("start_frame", 0), lo=0)
        end_frame = ctx.integer(f"{p}.end_frame", m.get("end_frame"), lo=1, optional=True)
        if end_frame is not None and end_frame <= start_frame:
            ctx.fail(f"{p}.end_frame", f"must be greater than start_frame ({start_frame}), got {end_frame}")
        cams.append(CameraConfig(
            id=cam_id,
            source=source,
            fps=ctx.number(f"{p}.fps", m.get("fps"), lo=0, lo_open=True, optional=True),
            start_time=_timestamp(ctx, f"{p}.start_time", m.get("start_time")),
            stride=ctx.integer(f"{p}.stride", m.get("stride", 1), lo=1),
            start_frame=start_frame,
            end_frame=end_frame,
            roi=_roi(ctx, f"{p}.roi", m.get("roi")),
            reconnect=ctx.boolean(f"{p}.reconnect", m.get("reconnect", True)),
        ))
    return tuple(cams)


def _detector(ctx: _Ctx, value: Any) -> DetectorConfig:
    m = ctx.mapping("detector", value, [f.name for f in dataclasses.fields(DetectorConfig)])
    d = DetectorConfig()
    classes = m.get("person_classes", list(d.person_classes))
    if (not isinstance(classes, list) or not classes
            or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in classes)):
        ctx.fail("detector.person_classes", f"expected a non-empty list of class ids >= 0 like [0], "
                                            f"got {_show(classes)}")
    half = m.get("half", d.half)
    if half != "auto" and not isinstance(half, bool):
        ctx.fail("detector.half", f"expected auto, true or false, got {_show(half)}")
    return DetectorConfig(
        weights=ctx.file("detector.weights", m.get("weights")),
        person_classes=tuple(classes),
        confidence=ctx.number("detector.confidence", m.get("confidence", d.confidence), lo=0, hi=1),
        iou=ctx.number("detector.iou", m.get("iou", d.iou), lo=0, hi=1, lo_open=True),
        imgsz=ctx.integer("detector.imgsz", m.get("imgsz", d.imgsz), lo=32),
        half=half,
    )


def _tracker(ctx: _Ctx, value: Any) -> TrackerConfig:
    names = [f.name for f in dataclasses.fields(TrackerConfig)]
    m = ctx.mapping("tracker", value, names)
    d = dataclasses.asdict(TrackerConfig())
    kw: dict[str, Any] = {}
    for key in names:
        if key in ("track_buffer", "min_hits"):
            kw[key] = ctx.integer(f"tracker.{key}", m.get(key, d[key]), lo=1)
        else:
            kw[key] = ctx.number(f"tracker.{key}", m.get(key, d[key]), lo=0, hi=1)
    if kw["track_low_thresh"] > kw["track_high_thresh"]:
        ctx.fail("tracker.track_low_thresh", f"must not exceed track_high_thresh "
                                             f"({kw['track_high_thresh']}), got {kw['track_low_thresh']}")
    return TrackerConfig(**kw)


def _embedder(ctx: _Ctx, value: Any) -> EmbedderConfig:
    m = ctx.mapping("embedder", value, [f.name for f in dataclasses.fields(EmbedderConfig)])
    d = EmbedderConfig()
    return EmbedderConfig(
        checkpoint=ctx.file("embedder.checkpoint", m.get("checkpoint")),
        batch_size=ctx.integer("embedder.batch_size", m.get("batch_size", d.batch_size), lo=1),
        max_samples_per_track=ctx.integer("embedder.max_samples_per_track",
                                          m.get("max_samples_per_track", d.max_samples_per_track), lo=1),
        sample_interval=ctx.number("embedder.sample_interval", m.get("sample_interval", d.sample_interval), lo=0),
        min_confidence=ctx.number("embedder.min_confidence", m.get("min_confidence", d.min_confidence), lo=0, hi=1),
        min_height=ctx.integer("embedder.min_height", m.get("min_height", d.min_height), lo=0),
    )


def _association(ctx: _Ctx, value: Any, camera_ids: list[str]) -> AssociationConfig:
    m = ctx.mapping("association", value, [f.name for f in dataclasses.fields(AssociationConfig)])
    d = AssociationConfig()
    transit = m.get("transit") or []
    if not isinstance(transit, list):
        ctx.fail("association.transit", f"expected a list of rules (- cameras: [a, b], min_seconds: ..., "
                                        f"max_seconds: ...), got {_show(transit)}")
    rules: list[TransitRule] = []
    pairs: dict[frozenset, int] = {}
    for i, item in enumerate(transit):
        p = f"association.transit[{i}]"
        r = ctx.mapping(p, item, [f.name for f in dataclasses.fields(TransitRule)])
        cams = r.get("cameras")
        if not isinstance(cams, list) or len(cams) != 2 or not all(isinstance(c, str) for c in cams):
            ctx.fail(f"{p}.cameras", f"expected two camera ids like [cam1, cam2], got {_show(cams)}")
        for c in cams:
            if c not in camera_ids:
                ctx.fail(f"{p}.cameras", f"unknown camera '{c}'; known cameras: {', '.join(camera_ids)}")
        key = frozenset(cams)
        if key in pairs:
            ctx.fail(f"{p}.cameras", f"duplicate rule for {cams} (also association.transit[{pairs[key]}]); "
                                     "keep one rule per camera pair")
        pairs[key] = i
        lo = ctx.number(f"{p}.min_seconds", r.get("min_seconds", 0.0), lo=0)
        hi = ctx.number(f"{p}.max_seconds", r.get("max_seconds"), lo=0, optional=True)
        if hi is not None and hi < lo:
            ctx.fail(f"{p}.max_seconds", f"must be >= min_seconds ({lo}), got {hi}")
        rules.append(TransitRule(cameras=(cams[0], cams[1]), min_seconds=lo, max_seconds=hi))
    return AssociationConfig(
        threshold=ctx.number("association.threshold", m.get("threshold", d.threshold), lo=-1, hi=1),
        min_track_samples=ctx.integer("association.min_track_samples",
                                      m.get("min_track_samples", d.min_track_samples), lo=1),
        transit=tuple(rules),
    )


def _store(ctx: _Ctx, value: Any) -> StoreConfig:
    m = ctx.mapping("store", value, [f.name for f in dataclasses.fields(StoreConfig)])
    d = StoreConfig()
    raw = m.get("path", d.path)
    if not isinstance(raw, str) or not raw.strip():
        ctx.fail("store.path", f"expected a file path like runs/store.db, got {_show(raw)}")
    path = Path(raw).expanduser()
    path = path if path.is_absolute() else ctx.base_dir / path
    if path.is_dir():
        ctx.fail("store.path", f"{path} is a folder; give a database file path like runs/store.db")
    return StoreConfig(
        path=str(path.resolve()),
        thumbnail_height=ctx.integer("store.thumbnail_height", m.get("thumbnail_height", d.thumbnail_height), lo=8),
        commit_interval=ctx.number("store.commit_interval", m.get("commit_interval", d.commit_interval),
                                   lo=0, lo_open=True),
    )
