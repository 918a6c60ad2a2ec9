"""``build_stages(cfg, device)``: every per-frame stage of a run, each from its own config section."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.config import PipelineConfig, TrackerConfig

from .detect import PersonDetector
from .embed import Embedder
from .sampling import TrackSampler
from .track import ByteTracker


@dataclass
class Stages:
    """The stages of one run. Trackers are per camera and need its frame rate: :meth:`tracker`."""

    detector: PersonDetector
    embedder: Embedder
    sampler: TrackSampler
    tracker_config: TrackerConfig

    def tracker(self, frame_rate: float) -> ByteTracker:
        """A new tracker (own id counter) for a camera delivering ``frame_rate`` frames/s."""
        return ByteTracker(self.tracker_config, frame_rate=frame_rate)

    def warmup(self, shape: tuple[int, int] | None, batch: int) -> None:
        """One throw-away detector batch of ``batch`` (H, W) frames and one embedder call, so that stage
        timings show steady-state cost."""
        self.detector.warmup(shape, batch=batch)
        self.embedder([np.zeros((128, 64, 3), np.uint8)])


def build_stages(cfg: PipelineConfig, device: str = "auto") -> Stages:
    """Load the embedder and the detector on ``device`` ('auto' | 'cpu' | 'cuda[:N]') and make the sampler."""
    embedder = Embedder(cfg.embedder, device)
    detector = PersonDetector(cfg.detector, device)
    return Stages(detector=detector, embedder=embedder, sampler=TrackSampler(cfg.embedder),
                  tracker_config=cfg.tracker)
