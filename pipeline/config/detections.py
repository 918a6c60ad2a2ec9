"""MOTChallenge public-detection files (``det.txt``) for cameras that skip the detector.

Lines are ``frame,id,x,y,w,h,score[,...]`` (comma- or space-separated) with 1-based frames (MOT frame
``f`` = source frame ``f - 1``), ``id`` ignored (``-1`` in MOTChallenge), (x, y) the top-left corner and
w, h the size in full source-frame pixels. The file is read when the config is checked, so a malformed
one stops the run before anything is loaded.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DetectionFile", "DetectionFileError", "numeric_rows", "read_detection_file"]

_SPLIT = re.compile(r"[,\s]+")
FORMAT_HELP = "expected MOTChallenge det.txt lines 'frame,-1,x,y,w,h,score' with 1-based integer frames"


class DetectionFileError(ValueError):
    """A det.txt that cannot be used; the message is one line naming the file, the line and the format."""


@dataclass(frozen=True)
class DetectionFile:
    """The N boxes of a det.txt, sorted by frame.

    frame: (N,) int64 1-based MOT frames (source frame + 1).
    xyxy: (N, 4) float32 x1, y1, x2, y2 in full source-frame pixels.
    score: (N,) float32 detector scores as given (not rescaled).
    """

    path: str
    frame: np.ndarray
    xyxy: np.ndarray
    score: np.ndarray

    def rows_of(self, source_frame: int) -> slice:
        """The rows of 0-based ``source_frame`` (a slice, since rows are sorted by frame)."""
        lo, hi = np.searchsorted(self.frame, [source_frame + 1, source_frame + 2])
        return slice(int(lo), int(hi))


def numeric_rows(path: Path, need: int, error: type[ValueError], what: str,
                 help_text: str) -> Iterator[tuple[int, str, list[float]]]:
    """The non-blank lines of a MOTChallenge text file (comma- or space-separated) as ``(line number,
    line, first ``need`` values as floats)``; ``error`` with one line naming the file (``what`` it is),
    the line and ``help_text`` when it cannot be read, a line is short or a value is not a number."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {what} {path}: {type(exc).__name__}: {exc}") from None
    for k, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        fields = [f for f in _SPLIT.split(line) if f]
        if len(fields) < need:
            raise error(f"{path}:{k}: {len(fields)} columns, need at least {need}; {help_text}")
        try:
            values = [float(f) for f in fields[:need]]
        except ValueError:
            raise error(f"{path}:{k}: non-numeric value in {line[:60]!r}; {help_text}") from None
        yield k, line, values


def _parse(path: Path) -> DetectionFile:
    rows = []
    for k, line, values in numeric_rows(path, 7, DetectionFileError, "detections file", FORMAT_HELP):
        if not np.isfinite(values).all() or values[0] != int(values[0]) or values[0] < 1:
            raise DetectionFileError(f"{path}:{k}: frame must be an integer >= 1 in {line[:60]!r}; {FORMAT_HELP}")
        if values[4] <= 0 or values[5] <= 0:
            raise DetectionFileError(f"{path}:{k}: width and height must be > 0 in {line[:60]!r}; {FORMAT_HELP}")
        rows.append(values)
    if not rows:
        raise DetectionFileError(f"{path}: no detections in the file; {FORMAT_HELP}")
    a = np.asarray(rows, np.float64)
    a = a[np.argsort(a[:, 0], kind="stable")]
    xyxy = np.concatenate([a[:, 2:4], a[:, 2:4] + a[:, 4:6]], axis=1)
    return DetectionFile(str(path), a[:, 0].astype(np.int64), xyxy.astype(np.float32), a[:, 6].astype(np.float32))


@functools.lru_cache(maxsize=16)
def _cached(path: str, mtime_ns: int, size: int) -> DetectionFile:
    return _parse(Path(path))


def read_detection_file(path: str | Path) -> DetectionFile:
    """Read (and cache, keyed by path, mtime and size) a det.txt; DetectionFileError on any problem."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        raise DetectionFileError(f"detections file not found: {path}") from None
    if not path.is_file():
        raise DetectionFileError(f"detections path {path} is not a file: give a MOTChallenge det.txt")
    return _cached(str(path.resolve()), st.st_mtime_ns, st.st_size)
