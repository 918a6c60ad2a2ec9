"""Public detections: a camera whose ``detections:`` names a MOTChallenge det.txt takes its boxes from
that file instead of the detector (the MOTChallenge public-detection protocol: every given box, no score
cut-off; the tracker's thresholds decide which ones start and extend tracks).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.config import CameraConfig
from pipeline.config.detections import read_detection_file
from pipeline.types import Detections, Frame


class PublicDetections:
    """The det.txt boxes of one camera, frame by frame.

    ``PublicDetections(camera)`` for a camera config with ``detections`` set. ``stage(frames)`` with
    frames of that camera returns one :class:`Detections` per frame (same order), boxes in
    ``Frame.image`` pixels: with a roi, the boxes whose centre lies in the crop, shifted by
    ``Frame.origin`` and cut to the crop; without one, the file's boxes exactly. Class id 0.
    """

    def __init__(self, camera: CameraConfig) -> None:
        if not isinstance(camera, CameraConfig) or camera.detections is None:
            raise TypeError("PublicDetections takes a CameraConfig whose detections names a det.txt")
        self.camera_id = camera.id
        self.cropped = camera.roi is not None
        self.file = read_detection_file(camera.detections)

    def __repr__(self) -> str:
        return f"PublicDetections(camera={self.camera_id!r}, file={self.file.path!r}, boxes={len(self.file.frame)})"

    def detect(self, frame: Frame) -> Detections:
        """The file's boxes of ``frame`` (source frame ``frame.index``) in ``frame.image`` pixels."""
        rows = self.file.rows_of(frame.index)
        xyxy = self.file.xyxy[rows]
        score = self.file.score[rows]
        if self.cropped:
            ox, oy = frame.origin
            h, w = frame.shape
            xyxy = xyxy - np.array([ox, oy, ox, oy], np.float32)
            centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
            keep = (centre[:, 0] >= 0) & (centre[:, 0] < w) & (centre[:, 1] >= 0) & (centre[:, 1] < h)
            xyxy = np.clip(xyxy[keep], 0, np.array([w, h, w, h], np.float32))
            score = score[keep]
        return Detections.from_arrays(xyxy, score)

    def __call__(self, frames: Sequence[Frame]) -> list[Detections]:
        """One Detections per frame of this camera (see the class docstring)."""
        for f in frames:
            if f.camera_id != self.camera_id:
                raise ValueError(f"PublicDetections of camera {self.camera_id!r} got a frame of {f.camera_id!r}")
        return [self.detect(f) for f in frames]
