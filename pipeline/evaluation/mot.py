"""MOTChallenge box files as typed arrays: reading, checking and restricting to a camera's frames.

Frames are 1-based as in MOTChallenge: MOT frame ``f`` is source (video) frame ``f - 1``. The store's
MOT export writes the same numbering (source frame + 1, boxes in full source-frame pixels), so a camera
that starts at ``start_frame`` exports frames ``start_frame + 1 ...`` and lines up with the clip's
ground truth without any offset; :func:`camera_ground_truth` cuts the ground truth to what the camera
saw.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config.detections import numeric_rows

__all__ = ["MotBoxes", "MotFormatError", "camera_ground_truth", "read_mot"]

FORMAT_HELP = "expected MOTChallenge lines 'frame,id,x,y,w,h,conf,...' with 1-based integer frames and ids"


class MotFormatError(ValueError):
    """A MOTChallenge file or array that cannot be scored (message is one line naming the fix)."""


@dataclass(frozen=True)
class MotBoxes:
    """N boxes of one camera, MOTChallenge style.

    frame: (N,) int64 1-based frame numbers (MOT frame f = source frame f - 1).
    id: (N,) int64 track / identity ids (ground-truth ids or predicted ids).
    xywh: (N, 4) float64 top-left x, top-left y, width, height in source-frame pixels.
    """

    frame: np.ndarray
    id: np.ndarray
    xywh: np.ndarray

    def __post_init__(self) -> None:
        frame = np.asarray(self.frame)
        n = frame.shape[0] if frame.ndim == 1 else -1
        ids = np.asarray(self.id)
        xywh = np.asarray(self.xywh, dtype=np.float64)
        if n < 0 or ids.shape != (n,) or xywh.reshape(-1, 4).shape != (n, 4):
            raise MotFormatError(f"MotBoxes arrays must be frame (N,), id (N,), xywh (N, 4); got "
                                 f"{frame.shape}, {ids.shape}, {xywh.shape}")
        for name, a in (("frame", frame), ("id", ids)):
            if n and not np.array_equal(a, np.round(a)):
                raise MotFormatError(f"MotBoxes.{name} must hold integers; {FORMAT_HELP}")
        frame = frame.astype(np.int64)
        if n and frame.min() < 1:
            raise MotFormatError(f"MotBoxes.frame must be >= 1 (MOTChallenge frames are 1-based), got {frame.min()}")
        xywh = xywh.reshape(n, 4)
        if not np.isfinite(xywh).all():
            raise MotFormatError("MotBoxes.xywh holds NaN or infinite values")
        object.__setattr__(self, "frame", np.ascontiguousarray(frame))
        object.__setattr__(self, "id", np.ascontiguousarray(ids.astype(np.int64)))
        object.__setattr__(self, "xywh", np.ascontiguousarray(xywh))

    @classmethod
    def empty(cls) -> MotBoxes:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)))

    @classmethod
    def from_xyxy(cls, frame, ids, xyxy) -> MotBoxes:
        """From corner boxes (N, 4) x1, y1, x2, y2 pixels."""
        xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
        return cls(frame, ids, np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1))

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, index) -> MotBoxes:
        """Rows selected by a boolean mask, an index array or a slice."""
        return MotBoxes(self.frame[index], self.id[index], self.xywh[index])

    @property
    def last_frame(self) -> int:
        """Largest frame number (0 when empty)."""
        return int(self.frame.max()) if len(self) else 0

    def shifted(self, frames: int) -> MotBoxes:
        """A copy with every frame number moved by ``frames``."""
        return MotBoxes(self.frame + int(frames), self.id, self.xywh)

    def duplicates(self) -> tuple[int, int] | None:
        """(frame, id) of the first id seen twice in one frame, or None when ids are unique per frame."""
        if not len(self):
            return None
        key = np.stack([self.frame, self.id], axis=1)
        uniq, counts = np.unique(key, axis=0, return_counts=True)
        if (counts > 1).any():
            f, i = uniq[np.argmax(counts > 1)]
            return int(f), int(i)
        return None

    def check_unique(self, what: str) -> None:
        """Raise MotFormatError naming ``what`` when an id occurs twice in one frame."""
        dup = self.duplicates()
        if dup is not None:
            raise MotFormatError(f"{what}: id {dup[1]} appears more than once in frame {dup[0]}; "
                                 f"each id may have one box per frame")


def read_mot(path: str | Path, ground_truth: bool = False, person_class: int | None = None) -> MotBoxes:
    """Read a MOTChallenge ``.txt`` (comma- or space-separated) into :class:`MotBoxes`.

    ground_truth: drop rows whose 7th column (the "consider" flag) is 0, as TrackEval does for every
        MOTChallenge benchmark. MOT15 files have no classes (columns 8-10 are world coordinates).
    person_class: MOT16/17/20 ground truth only: keep rows whose 8th column equals it (1 = pedestrian).
        (TrackEval additionally drops predictions matched to distractor classes there; not done here.)
    A file whose ids are all -1 (MOTChallenge ``det.txt`` detections) is read as is; any other file
    must have one box per id and frame.
    Raises MotFormatError with one line naming the file, the line and the expected format.
    """
    path = Path(path)
    need = 8 if person_class is not None else 7 if ground_truth else 6
    rows = []
    for k, line, values in numeric_rows(path, need, MotFormatError, "MOT file", FORMAT_HELP):
        if not all(np.isfinite(values)) or values[0] != int(values[0]) or values[1] != int(values[1]):
            raise MotFormatError(f"{path}:{k}: frame and id must be integers in {line[:60]!r}; {FORMAT_HELP}")
        if values[0] < 1:
            raise MotFormatError(f"{path}:{k}: frame {int(values[0])} < 1; MOTChallenge frames are 1-based")
        if values[4] < 0 or values[5] < 0:
            raise MotFormatError(f"{path}:{k}: negative width or height in {line[:60]!r}; {FORMAT_HELP}")
        rows.append(values)
    if not rows:
        return MotBoxes.empty()
    a = np.asarray(rows, dtype=np.float64)
    keep = np.ones(len(a), bool)
    if ground_truth:
        keep &= a[:, 6] != 0
    if person_class is not None:
        keep &= a[:, 7] == person_class
    a = a[keep]
    boxes = MotBoxes(a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2:6])
    if not (boxes.id == -1).all():  # all -1: a detection file (MOTChallenge det.txt), not tracks
        boxes.check_unique(str(path))
    return boxes


def camera_ground_truth(gt: MotBoxes, start_frame: int = 0, end_frame: int | None = None,
                        roi: tuple[int, int, int, int] | None = None) -> MotBoxes:
    """The ground truth a camera with these settings can see, in source-frame numbering.

    start_frame, end_frame: the camera's 0-based source frame range [start, end) (as in cams.yaml);
        kept MOT frames are ``start_frame + 1 .. end_frame``.
    roi: (x1, y1, x2, y2) source pixels of the camera's crop: keeps boxes whose centre lies inside.
    """
    if start_frame < 0 or (end_frame is not None and end_frame <= start_frame):
        raise ValueError(f"bad camera frame range [{start_frame}, {end_frame}): need 0 <= start < end")
    keep = gt.frame >= start_frame + 1
    if end_frame is not None:
        keep &= gt.frame <= end_frame
    if roi is not None:
        x1, y1, x2, y2 = roi
        cx = gt.xywh[:, 0] + gt.xywh[:, 2] / 2
        cy = gt.xywh[:, 1] + gt.xywh[:, 3] / 2
        keep &= (cx >= x1) & (cx < x2) & (cy >= y1) & (cy < y2)
    return gt[keep]
