"""Re-reading chosen frames of a recorded camera source (a video file or an image folder), e.g. to cut
crops of stored boxes again after the run (``pipeline.adapt``, ``pipeline.reembed``).

``read_frames(source, indices)`` yields ``(index, BGR image)`` in ascending index order. A video is
opened once, seeked to the first wanted frame and then read sequentially: frames between two wanted
ones are grabbed (demuxed, not converted); a gap longer than ``SEEK_GAP`` frames is crossed by seeking
instead. Live sources (URLs, webcams) cannot be re-read: :class:`IngestError`.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from reid_models.common import ImageReadError, read_image_bgr

from .sources import IngestError, list_images, seek_frame

SEEK_GAP = 250
"""Frames between two wanted frames above which the reader seeks rather than grabbing through them."""


def source_readable(source: str) -> bool:
    """True if ``source`` is a video file or an image folder that exists here."""
    path = Path(str(source))
    return bool(str(source)) and (path.is_file() or path.is_dir())


def read_frames(source: str | Path, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, image)`` for each wanted 0-based frame index of ``source`` that it holds, ascending.

    IngestError (one line) if the source is gone, live, or not a video/folder OpenCV can read.
    Indices past the end are skipped silently (the caller sees which came back).
    """
    wanted = sorted({int(i) for i in indices if int(i) >= 0})
    text = str(source)
    path = Path(text)
    if not wanted:
        return
    if "://" in text or text.isdigit():
        raise IngestError(f"source {text} is a live stream: its past frames cannot be read again")
    if path.is_dir():
        files = list_images(path)
        for index in wanted:
            if index >= len(files):
                return
            try:
                yield index, read_image_bgr(files[index], "frame")
            except ImageReadError as e:
                raise IngestError(f"cannot re-read frame {index} of {path}: {e}") from None
        return
    if not path.is_file():
        raise IngestError(f"source video {text} is not there any more: restore it to re-read its frames")
    cap = cv2.VideoCapture(text)
    if not cap.isOpened():
        raise IngestError(f"cannot open video {text} with OpenCV: check that it is a playable video")
    try:
        cap = seek_frame(cap, wanted[0], lambda: cv2.VideoCapture(text))
        pos = wanted[0]
        for index in wanted:
            if index - pos > SEEK_GAP:
                cap = seek_frame(cap, index, lambda: cv2.VideoCapture(text))
                pos = index
            while pos < index:
                if not cap.grab():
                    return
                pos += 1
            ok, image = cap.read()
            pos += 1
            if not ok or image is None:
                return
            yield index, image
    finally:
        cap.release()
