"""``build_stages(cfg, device)``: every per-frame stage of a run, each from its own config section."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.config import PipelineConfig, TrackerConfig
from pipeline.types import Detections, Frame

from .detect import PersonDetector, detect_interval
from .embed import Embedder
from .public import PublicDetections
from .sampling import TrackSampler
from .track import ByteTracker


@dataclass
class Stages:
    """The stages of one run. Trackers are per camera and need its frame rate: :meth:`tracker`.

    detector: the YOLO detector, None when every camera has public detections (``detections:``).
    public: camera id -> its PublicDetections, for the cameras that have them.
    """

    detector: PersonDetector | None
    embedder: Embedder
    sampler: TrackSampler
    tracker_config: TrackerConfig
    public: dict[str, PublicDetections] = field(default_factory=dict)

    def tracker(self, frame_rate: float) -> ByteTracker:
        """A new tracker (own id counter) for a camera delivering ``frame_rate`` frames/s."""
        return ByteTracker(self.tracker_config, frame_rate=frame_rate)

    def detect_interval(self, camera_id: str, frame_rate: float) -> int:
        """Frames per detector run for a camera fed ``frame_rate`` frames/s: ``detector.interval``
        (:func:`~.detect.detect_interval`); 1 for a public-detection camera (its file has every frame)."""
        if camera_id in self.public or self.detector is None:
            return 1
        return detect_interval(self.detector.config.interval, frame_rate)

    def may_skip(self, camera_id: str) -> bool:
        """Whether the detector may skip a frame of this camera now (at its :meth:`detect_interval`): not while
        it still measures the people of the first frames, and, for ``interval: auto``, not for a camera
        whose people it does not resolve (:meth:`~.detect.PersonDetector.resolves`)."""
        d = self.detector
        if camera_id in self.public or d is None or d.measuring:
            return False
        return d.config.interval != "auto" or d.resolves(camera_id)

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        """One Detections per frame (same order): public-detection cameras from their file, the other
        frames in one detector batch."""
        out: list[Detections | None] = [None] * len(frames)
        batch = []
        for k, f in enumerate(frames):
            if f.camera_id in self.public:
                out[k] = self.public[f.camera_id].detect(f)
            else:
                batch.append(k)
        if batch:
            images, keys = [frames[k].image for k in batch], [frames[k].camera_id for k in batch]
            for k, d in zip(batch, self.detector(images, keys=keys)):
                out[k] = d
        return out  # type: ignore[return-value]

    def warmup(self, shape: tuple[int, int] | None, batch: int) -> None:
        """One throw-away detector batch of ``batch`` (H, W) frames and one embedder call, so that stage
        timings show steady-state cost."""
        if self.detector is not None:
            self.detector.warmup(shape, batch=batch)
        self.embedder([np.zeros((128, 64, 3), np.uint8)])


def build_stages(cfg: PipelineConfig, device: str = "auto") -> Stages:
    """Load the embedder and the detector (unless every camera has public detections) on ``device``
    ('auto' | 'cpu' | 'cuda[:N]'), read the cameras' det.txt files and make the sampler."""
    embedder = Embedder(cfg.embedder, device)
    public = {cam.id: PublicDetections(cam) for cam in cfg.cameras if cam.detections is not None}
    detector = None if len(public) == len(cfg.cameras) else PersonDetector(cfg.detector, device)
    return Stages(detector=detector, embedder=embedder, sampler=TrackSampler(cfg.embedder),
                  tracker_config=cfg.tracker, public=public)
