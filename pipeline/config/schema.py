"""The pipeline's settings as frozen dataclasses: the one source of every default and range.

Field names are the YAML keys of cams.yaml; defaults are the values used when a key is left out.
``__post_init__`` checks (and normalises: lists become tuples, ints floats) every field, so a
config built in Python is checked exactly like one loaded from YAML; a bad value raises
:class:`~pipeline.config.checks.FieldError` (a one-line ``ConfigError``) naming the field.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import checks as c
from .detections import DetectionFileError, read_detection_file

__all__ = ["AssociationConfig", "CameraConfig", "DetectorConfig", "EmbedderConfig", "PipelineConfig", "RetentionConfig",
           "StoreConfig", "TrackerConfig", "TransitRule"]

def _set(obj, name: str, value) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class CameraConfig:
    """One camera. ``source``: a video file or image folder path (absolute after loading), a URL or a
    webcam index.

    fps: files/folders: timestamp rate (None = the file's own fps; folders 10).
    start_time: epoch seconds (UTC) of source frame 0 (an ISO-8601 string is converted), or None = run start.
    stride: keep every Nth frame. start_frame / end_frame: files/folders: source frame range [start, end).
    roi: (x1, y1, x2, y2) pixels to crop, or None for the full frame.
    reconnect: live sources reconnect with exponential back-off.
    detections: files/folders: a MOTChallenge det.txt (frame = source frame + 1, full-frame pixels) whose
        boxes replace the detector for this camera (public detections). Every box is used, whatever its
        score: detector.confidence does not apply; the tracker's thresholds decide, as in MOTChallenge's
        public-detection protocol. With a roi, boxes whose centre is inside it are kept, cut to it.
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
    detections: str | None = None

    def __post_init__(self) -> None:
        o = "CameraConfig"
        c.camera_id(o, "id", self.id)
        _set(self, "source", c.source(o, "source", self.source))
        if self.is_live:
            for key in ("fps", "start_time", "start_frame", "end_frame", "detections"):
                if getattr(self, key) not in (None, 0):
                    c.fail(o, key, "only applies to video files and image folders; live sources "
                                   "(URL, webcam) are stamped with wall-clock time: remove it")
        _set(self, "start_frame", c.integer(o, "start_frame", self.start_frame, lo=0))
        _set(self, "end_frame", c.integer(o, "end_frame", self.end_frame, lo=1, optional=True))
        if self.end_frame is not None and self.end_frame <= self.start_frame:
            c.fail(o, "end_frame", f"must be greater than start_frame ({self.start_frame}), got {self.end_frame}")
        _set(self, "fps", c.number(o, "fps", self.fps, lo=0, lo_open=True, optional=True))
        _set(self, "start_time", c.timestamp(o, "start_time", self.start_time))
        _set(self, "stride", c.integer(o, "stride", self.stride, lo=1))
        _set(self, "roi", c.roi(o, "roi", self.roi))
        c.boolean(o, "reconnect", self.reconnect)
        _set(self, "detections", c.optional_path(o, "detections", self.detections))
        if self.detections is not None:  # a missing or malformed det.txt stops here, at config load
            try:
                read_detection_file(self.detections)
            except DetectionFileError as e:
                c.fail(o, "detections", str(e))

    @property
    def kind(self) -> str:
        """'webcam', 'url', 'folder' or 'file'."""
        if isinstance(self.source, int):
            return "webcam"
        if c.url_scheme(self.source):
            return "url"
        return "folder" if Path(self.source).is_dir() else "file"

    @property
    def is_live(self) -> bool:
        """Live sources (URLs, webcams) are stamped with wall-clock time and reconnect."""
        return self.kind in ("webcam", "url")


@dataclass(frozen=True)
class DetectorConfig:
    """weights: a YOLO .pt (None = the bundled person detector). person_classes: class ids that are persons
    (the bundled detector's class 1, "Fall", fires on static objects in ordinary footage, so only 0 is used).
    confidence: min box score in [0, 1]; keep it at or below tracker.track_low_thresh so the tracker's
    second stage sees the weak boxes. iou: NMS IoU in (0, 1].
    imgsz: input pixels (>= 32), or 'auto': measured once per run from the people of the first frames
    (see pipeline.stages.detect.choose_imgsz); all cameras share the largest size any of them needs.
    max_aspect: boxes wider than max_aspect * height are narrowed around their centre (a standing
    pedestrian is about 0.41 h wide); 'auto' = 0.41 for the bundled detector, whose boxes are ~1.6x
    wider than the person, and off for other weights (a model trained on tight boxes, or footage of
    sitting people, must not be reshaped); null = off.
    half: 'auto' = fp16 on CUDA, fp32 on CPU; true needs CUDA.
    interval: the detector runs on every interval-th frame of a camera (an integer >= 1; 1 = every frame)
    and the tracker fills the frames between by interpolation (stored as interpolated boxes); 'auto' =
    as many frames as keep at least pipeline.stages.detect.MIN_DETECT_RATE detector frames per second
    (see pipeline.stages.detect.detect_interval), for cameras whose people the detector resolves (else
    every frame). Public-detection cameras use every frame."""

    weights: str | None = None
    person_classes: tuple[int, ...] = (0,)
    confidence: float = 0.1
    iou: float = 0.7
    imgsz: int | str = "auto"
    max_aspect: float | str | None = "auto"
    half: bool | str = "auto"
    interval: int | str = "auto"

    def __post_init__(self) -> None:
        o = "DetectorConfig"
        iv = self.interval
        if iv != "auto" and not (isinstance(iv, int) and not isinstance(iv, bool) and iv >= 1):
            c.fail(o, "interval", f"expected auto or an integer >= 1 (1 = detect every frame), got {c.show(iv)}")
        _set(self, "weights", c.optional_path(o, "weights", self.weights))
        classes = self.person_classes
        if (not isinstance(classes, (list, tuple)) or not classes
                or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in classes)):
            c.fail(o, "person_classes", f"expected a non-empty list of class ids >= 0 like [0], got {c.show(classes)}")
        _set(self, "person_classes", tuple(int(k) for k in classes))
        _set(self, "confidence", c.number(o, "confidence", self.confidence, lo=0, hi=1))
        _set(self, "iou", c.number(o, "iou", self.iou, lo=0, hi=1, lo_open=True))
        imgsz, aspect = self.imgsz, self.max_aspect
        if imgsz != "auto" and not (isinstance(imgsz, int) and not isinstance(imgsz, bool) and imgsz >= 32):
            c.fail(o, "imgsz", f"expected auto or an integer >= 32, got {c.show(imgsz)}")
        ok = aspect in ("auto", None) or (isinstance(aspect, (int, float)) and not isinstance(aspect, bool)
                                          and 0 < aspect < float("inf"))
        if not ok:
            c.fail(o, "max_aspect", f"expected auto, null or a positive number like 0.41, got {c.show(aspect)}")
        if aspect not in ("auto", None):
            _set(self, "max_aspect", float(aspect))
        if self.half != "auto" and not isinstance(self.half, bool):
            c.fail(o, "half", f"expected auto, true or false, got {c.show(self.half)}")


@dataclass(frozen=True)
class TrackerConfig:
    """ByteTrack settings with appearance, gap filling and static-object suppression. Scores and costs are in [0, 1].

    track_high_thresh: detections at or above this are matched first.
    track_low_thresh: detections above this (and below high) are matched second (<= track_high_thresh;
    the detector's ``confidence`` must not be above it, or the second stage gets no boxes).
    new_track_thresh: an unmatched detection at or above this starts a track.
    match_thresh: max cost (1 - IoU * score) of a first-stage match.
    track_buffer: frames (at 30 frames/s; 60 = 2 s at any frame rate) a lost track is kept (>= 1).
    min_hits: matched frames before a track is confirmed (tracks of the first frame at once; >= 1).
    appearance: use HSV colour histograms of each box (a first-stage match whose boxes look too different
    is ruled out; lost tracks are recovered by appearance).
    appearance_thresh: max cosine distance (in [0, 1]) of an appearance match (and of a first-stage pair).
    interpolate_seconds: a track re-found after missing at most this long gets linearly interpolated
    boxes for the frames it missed (stored flagged as interpolated); 0 = off.
    static_seconds: a track that stays in place this long with a mean score below track_high_thresh
    is taken for a static object and not reported until it moves; 0 = off.
    """

    track_high_thresh: float = 0.5
    track_low_thresh: float = 0.1
    new_track_thresh: float = 0.6
    match_thresh: float = 0.9
    track_buffer: int = 60
    min_hits: int = 3
    appearance: bool = True
    appearance_thresh: float = 0.25
    interpolate_seconds: float = 1.0
    static_seconds: float = 5.0

    def __post_init__(self) -> None:
        o = "TrackerConfig"
        for key in ("track_high_thresh", "track_low_thresh", "new_track_thresh", "match_thresh",
                    "appearance_thresh"):
            _set(self, key, c.number(o, key, getattr(self, key), lo=0, hi=1))
        for key in ("track_buffer", "min_hits"):
            _set(self, key, c.integer(o, key, getattr(self, key), lo=1))
        c.boolean(o, "appearance", self.appearance)
        for key in ("interpolate_seconds", "static_seconds"):
            _set(self, key, c.number(o, key, getattr(self, key), lo=0))
        if self.track_low_thresh > self.track_high_thresh:
            c.fail(o, "track_low_thresh", f"must not exceed track_high_thresh ({self.track_high_thresh}), "
                                          f"got {self.track_low_thresh}")


@dataclass(frozen=True)
class EmbedderConfig:
    """checkpoint: a reid_models .pt (None = the generic embedder, reid_models.generic).
    batch_size: crops per forward pass.
    Sampling (which tracked boxes are embedded): at most max_samples_per_track per track, at least
    sample_interval seconds apart, with confidence >= min_confidence and height >= min_height pixels."""

    checkpoint: str | None = None
    batch_size: int = 32
    max_samples_per_track: int = 8
    sample_interval: float = 1.0
    min_confidence: float = 0.5
    min_height: int = 48

    def __post_init__(self) -> None:
        o = "EmbedderConfig"
        _set(self, "checkpoint", c.optional_path(o, "checkpoint", self.checkpoint))
        _set(self, "batch_size", c.integer(o, "batch_size", self.batch_size, lo=1))
        _set(self, "max_samples_per_track", c.integer(o, "max_samples_per_track", self.max_samples_per_track, lo=1))
        _set(self, "sample_interval", c.number(o, "sample_interval", self.sample_interval, lo=0))
        _set(self, "min_confidence", c.number(o, "min_confidence", self.min_confidence, lo=0, hi=1))
        _set(self, "min_height", c.integer(o, "min_height", self.min_height, lo=0))


@dataclass(frozen=True)
class TransitRule:
    """Allowed time (seconds) from leaving ``cameras[0]`` to appearing on ``cameras[1]`` (either way);
    ``max_seconds`` None = no upper bound. ``[cam, cam]`` constrains re-entries on one camera."""

    cameras: tuple[str, str]
    min_seconds: float = 0.0
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        o = "TransitRule"
        cams = self.cameras
        if not isinstance(cams, (list, tuple)) or len(cams) != 2 or not all(isinstance(k, str) for k in cams):
            c.fail(o, "cameras", f"expected two camera ids like [cam1, cam2], got {c.show(cams)}")
        _set(self, "cameras", (cams[0], cams[1]))
        _set(self, "min_seconds", c.number(o, "min_seconds", self.min_seconds, lo=0))
        _set(self, "max_seconds", c.number(o, "max_seconds", self.max_seconds, lo=0, optional=True))
        if self.max_seconds is not None and self.max_seconds < self.min_seconds:
            c.fail(o, "max_seconds", f"must be >= min_seconds ({self.min_seconds}), got {self.max_seconds}")


@dataclass(frozen=True)
class AssociationConfig:
    """threshold: min average cosine to link tracks, in [-1, 1]. min_track_samples: samples a track needs
    to be linked (>= 1). transit: travel-time rules, at most one per camera pair."""

    threshold: float = 0.6
    min_track_samples: int = 1
    transit: tuple[TransitRule, ...] = ()

    def __post_init__(self) -> None:
        o = "AssociationConfig"
        _set(self, "threshold", c.number(o, "threshold", self.threshold, lo=-1, hi=1))
        _set(self, "min_track_samples", c.integer(o, "min_track_samples", self.min_track_samples, lo=1))
        if not isinstance(self.transit, (list, tuple)) or not all(isinstance(r, TransitRule) for r in self.transit):
            c.fail(o, "transit", f"expected a list of TransitRule, got {c.show(self.transit)}")
        _set(self, "transit", tuple(self.transit))
        pairs: dict[frozenset, int] = {}
        for i, rule in enumerate(self.transit):
            key = frozenset(rule.cameras)
            if key in pairs:
                c.fail(o, f"transit[{i}].cameras", f"duplicate rule for {list(rule.cameras)} (also "
                                                   f"association.transit[{pairs[key]}]); keep one rule per camera pair")
            pairs[key] = i


STORE_URL_SCHEMES = ("postgresql://", "postgres://")
"""A store path starting so is a PostgreSQL database URL (pipeline.store.backend), not a file."""


@dataclass(frozen=True)
class StoreConfig:
    """path: the store file (absolute after loading), or a PostgreSQL URL
    (``postgresql://user@host/db``). thumbnail_height: pixels of stored sample crops (>= 8).
    commit_interval: seconds between commits (> 0): the most work a crash loses."""

    path: str = "runs/store.db"
    thumbnail_height: int = 128
    commit_interval: float = 1.0

    def __post_init__(self) -> None:
        o = "StoreConfig"
        path = self.path.__fspath__() if hasattr(self.path, "__fspath__") else self.path
        if not isinstance(path, str) or not path.strip():
            c.fail(o, "path", f"expected a file path like runs/store.db, got {c.show(path)}")
        _set(self, "path", path)
        _set(self, "thumbnail_height", c.integer(o, "thumbnail_height", self.thumbnail_height, lo=8))
        _set(self, "commit_interval", c.number(o, "commit_interval", self.commit_interval, lo=0, lo_open=True))


@dataclass(frozen=True)
class RetentionConfig:
    """How long the store keeps person data, in days (None = forever; > 0), applied by ``run`` every
    ``every_minutes`` and by ``pipeline purge``. boxes_days: tracked boxes. samples_days: samples with
    their embeddings (and thumbnails). thumbnails_days: sample thumbnails only (the vectors stay).
    audit_days: audit rows (the chain stays verifiable from an anchor). A track left with no box and no
    sample is deleted, and an identity left with no track."""

    boxes_days: float | None = None
    samples_days: float | None = None
    thumbnails_days: float | None = None
    audit_days: float | None = None
    every_minutes: float = 60.0

    def __post_init__(self) -> None:
        o = "RetentionConfig"
        for key in ("boxes_days", "samples_days", "thumbnails_days", "audit_days"):
            _set(self, key, c.number(o, key, getattr(self, key), lo=0, lo_open=True, optional=True))
        _set(self, "every_minutes", c.number(o, "every_minutes", self.every_minutes, lo=0, lo_open=True))

    @property
    def active(self) -> bool:
        """True if any kind has a limit."""
        return any(v is not None for v in (self.boxes_days, self.samples_days, self.thumbnails_days, self.audit_days))


@dataclass(frozen=True)
class SearchConfig:
    """How a query searches the store's index (``pipeline.search.index``); not a cams.yaml section.

    exact_max_rows: a camera/time filter keeping at most this many samples is searched exactly (ANN
    indexes lose recall under selective filters); exact_max_fraction: nor more than this fraction of
    the indexed samples. ann_min_rows: below this many samples no ANN index is built (exact is fast).
    ann_candidates: samples the ANN index returns per query, re-scored exactly. nprobe: IVF lists
    scanned per query. nlist: IVF lists (0 = about sqrt(samples)). ann_stale_fraction: the ANN index
    is rebuilt when samples added since exceed this fraction of it (they are searched exactly until then).
    """

    exact_max_rows: int = 100_000
    exact_max_fraction: float = 0.05
    ann_min_rows: int = 50_000
    ann_candidates: int = 1024
    nprobe: int = 16
    nlist: int = 0
    ann_stale_fraction: float = 0.1

    def __post_init__(self) -> None:
        o = "SearchConfig"
        for key, lo in (("exact_max_rows", 0), ("ann_min_rows", 1), ("ann_candidates", 1), ("nprobe", 1),
                        ("nlist", 0)):
            _set(self, key, c.integer(o, key, getattr(self, key), lo=lo))
        _set(self, "exact_max_fraction", c.number(o, "exact_max_fraction", self.exact_max_fraction, lo=0, hi=1))
        _set(self, "ann_stale_fraction", c.number(o, "ann_stale_fraction", self.ann_stale_fraction, lo=0,
                                                  lo_open=True))


@dataclass(frozen=True)
class WebConfig:
    """The operator web app (``python -m pipeline serve``); not part of a cams.yaml.

    session_idle_minutes / session_max_hours: a session ends after this long unused / in all (> 0).
    login_failures / login_window_seconds: that many failed logins per user name or client address
    within the window block further tries until the window has passed (>= 1, > 0).
    upload_max_bytes: largest query photo accepted (>= 1024). page_size: identities per result
    page (>= 1). segment_max_frames: longest video segment cut for one sighting, frames (>= 1).
    """

    session_idle_minutes: float = 30.0
    session_max_hours: float = 12.0
    login_failures: int = 5
    login_window_seconds: float = 300.0
    upload_max_bytes: int = 10 * 1024 * 1024
    page_size: int = 10
    segment_max_frames: int = 300

    def __post_init__(self) -> None:
        o = "WebConfig"
        _set(self, "session_idle_minutes", c.number(o, "session_idle_minutes", self.session_idle_minutes, lo=0,
                                                    lo_open=True))
        _set(self, "session_max_hours", c.number(o, "session_max_hours", self.session_max_hours, lo=0, lo_open=True))
        _set(self, "login_failures", c.integer(o, "login_failures", self.login_failures, lo=1))
        _set(self, "login_window_seconds", c.number(o, "login_window_seconds", self.login_window_seconds, lo=0,
                                                    lo_open=True))
        _set(self, "upload_max_bytes", c.integer(o, "upload_max_bytes", self.upload_max_bytes, lo=1024))
        _set(self, "page_size", c.integer(o, "page_size", self.page_size, lo=1))
        _set(self, "segment_max_frames", c.integer(o, "segment_max_frames", self.segment_max_frames, lo=1))


@dataclass(frozen=True)
class PipelineConfig:
    """The whole cams.yaml: cameras (at least one, unique ids) and one section per stage."""

    cameras: tuple[CameraConfig, ...]
    detector: DetectorConfig = DetectorConfig()
    tracker: TrackerConfig = TrackerConfig()
    embedder: EmbedderConfig = EmbedderConfig()
    association: AssociationConfig = AssociationConfig()
    store: StoreConfig = StoreConfig()
    retention: RetentionConfig = RetentionConfig()
    source_path: str | None = None      # the YAML file it was loaded from

    def __post_init__(self) -> None:
        o = "PipelineConfig"
        cams = self.cameras
        if not isinstance(cams, (list, tuple)) or not cams or not all(isinstance(k, CameraConfig) for k in cams):
            c.fail(o, "cameras", f"expected a list of at least one camera (- id: ..., source: ...), got {c.show(cams)}")
        _set(self, "cameras", tuple(cams))
        seen: dict[str, int] = {}
        for i, cam in enumerate(self.cameras):
            if cam.id in seen:
                c.fail(o, f"cameras[{i}].id", f"duplicate camera id '{cam.id}' (also cameras[{seen[cam.id]}].id); "
                                              "give each camera a unique id")
            seen[cam.id] = i
        for i, rule in enumerate(self.association.transit):
            for cam_id in rule.cameras:
                if cam_id not in seen:
                    c.fail(o, f"association.transit[{i}].cameras",
                           f"unknown camera '{cam_id}'; known cameras: {', '.join(seen)}")
        for name, cls in (("detector", DetectorConfig), ("tracker", TrackerConfig), ("embedder", EmbedderConfig),
                          ("association", AssociationConfig), ("store", StoreConfig),
                          ("retention", RetentionConfig)):
            if not isinstance(getattr(self, name), cls):
                c.fail(o, name, f"expected a {cls.__name__}, got {type(getattr(self, name)).__name__}")
