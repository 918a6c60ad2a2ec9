"""Small helpers shared by ``reid_models`` and ``pipeline``: time parsing, image I/O, L2
normalisation and one-line error text.

This is the single home of each of them; neither package re-implements them. It imports no
torch, so light commands (query, export, eval) can use it cheaply.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "ImageReadError", "UserError", "atomic_output", "decode_image", "encode_jpeg",
           "iso_time", "l2_normalize",
           "one_line", "parse_time", "quiet_native_logs", "read_image_bgr"]

#: File endings read as images (image-folder cameras, re-ID dataset folders, query photos).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

TIME_HELP = "use ISO-8601 such as 2024-05-01T10:00:30Z (no offset = UTC) or epoch seconds"


# ----------------------------------------------------------------------------- errors
class UserError(ValueError):
    """A problem with the user's input that no more specific error class names (commands exit 2)."""


def one_line(exc: BaseException | str) -> str:
    """The text of an exception (or string) with all white space folded into single spaces."""
    text = " ".join(str(exc).split())
    if not text and isinstance(exc, BaseException):
        return type(exc).__name__
    return text


# ----------------------------------------------------------------------------- time
def parse_time(value: float | int | str | datetime | date) -> float:
    """Epoch seconds (UTC) from a number, a datetime/date or an ISO-8601 / epoch string.

    Naive times are UTC; a trailing ``Z`` is accepted. Raises ValueError naming the value.
    """
    if isinstance(value, bool):
        raise ValueError(f"bad time {value!r}: {TIME_HELP}")
    if isinstance(value, (int, float)):
        return float(value)
    dt = value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"bad time {value!r}: {TIME_HELP}") from None
    elif isinstance(value, date) and not isinstance(value, datetime):
        dt = datetime(value.year, value.month, value.day)
    if not isinstance(dt, datetime):
        raise ValueError(f"bad time {value!r}: {TIME_HELP}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def iso_time(t: float) -> str:
    """Epoch seconds -> ``2024-05-01T12:00:03.250Z`` (UTC, milliseconds)."""
    s = datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")
    return s.replace("+00:00", "Z")


# ----------------------------------------------------------------------------- vectors
def l2_normalize(x: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """``x / ||x||`` along ``axis`` as float32 (zero vectors stay zero). x: (..., D) -> (..., D)."""
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), eps)


# ----------------------------------------------------------------------------- files
def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- images
class ImageReadError(ValueError):
    """An image file is missing, empty or not a decodable image (the message names the file)."""


def _cv2():
    import cv2

    return cv2


def decode_image(data: bytes | np.ndarray, what: str = "image") -> np.ndarray:
    """Encoded bytes (JPEG/PNG/...) -> BGR uint8 (H, W, 3). ImageReadError naming ``what`` otherwise."""
    buf = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else np.asarray(data)
    if buf.size == 0:
        raise ImageReadError(f"cannot read {what}: it is empty")
    image = _cv2().imdecode(buf, _cv2().IMREAD_COLOR)
    if image is None:
        raise ImageReadError(f"cannot read {what}: not a decodable image (JPEG, PNG, BMP, TIFF or WebP)")
    return image


def read_image_bgr(path: str | Path, what: str = "image") -> np.ndarray:
    """Decode an image file as BGR uint8 (H, W, 3) with a one-line ImageReadError naming the file.

    What the native decoders print about a broken file (libpng, libjpeg, OpenCV's log) is held
    back (:func:`quiet_native_logs`): the error names the file in one line."""
    path = Path(path)
    label = f"{what} {path}"
    if not path.is_file():
        raise ImageReadError(f"cannot read {label}: no such file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"cannot read {label}: file is empty")
    data = np.fromfile(str(path), np.uint8)
    with quiet_native_logs():
        return decode_image(data, label)


# Lines native decoders write to stderr: libpng/libjpeg/libtiff messages, OpenCV's and FFmpeg's logs.
_NATIVE_LOG = re.compile(rb"^(libpng (warning|error)|Corrupt JPEG|Premature end of JPEG|Invalid SOS|JPEG datastream|"
                         rb"TIFF\w*:|\[ ?(WARN|ERROR|INFO|DEBUG):|\[\w+ @ 0x[0-9a-f]+\])")
_quiet_lock = threading.Lock()
_quiet_state: dict = {"depth": 0, "saved": -1, "capture": None}


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Hold back what C libraries write to file descriptor 2 while the body runs (decoder warnings
    that would precede our one-line error); other lines written meanwhile (other threads) are passed
    on afterwards. Re-entrant across threads: the first to enter redirects, the last to leave restores."""
    with _quiet_lock:
        active = _quiet_state["depth"] > 0
        if not active:
            try:
                if sys.stderr is not None:
                    sys.stderr.flush()
                capture = tempfile.TemporaryFile()
                saved = os.dup(2)
                os.dup2(capture.fileno(), 2)
                _quiet_state.update(saved=saved, capture=capture)
                active = True
            except (OSError, ValueError):  # no usable fd 2: nothing to silence
                pass
        if active:
            _quiet_state["depth"] += 1
    try:
        yield
    finally:
        if active:
            _release_quiet()


def _release_quiet() -> None:
    with _quiet_lock:
        _quiet_state["depth"] -= 1
        if _quiet_state["depth"]:
            return
        saved, capture = _quiet_state["saved"], _quiet_state["capture"]
        os.dup2(saved, 2)
        os.close(saved)
        capture.seek(0)
        kept = b"".join(line for line in capture.read().splitlines(keepends=True) if not _NATIVE_LOG.match(line))
        capture.close()
        if kept:
            os.write(2, kept)


def encode_jpeg(image: np.ndarray, quality: int = 85, height: int | None = None) -> bytes:
    """JPEG bytes of a BGR image, first resized to ``height`` pixels (aspect kept) when given."""
    cv2 = _cv2()
    if height is not None:
        h, w = image.shape[:2]
        width = max(1, round(w * height / max(h, 1)))
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if h > height else cv2.INTER_LINEAR)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("cannot JPEG-encode an image")
    return buf.tobytes()


# ----------------------------------------------------------------------------- files
@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Write a file or folder all at once: yields a temporary path beside ``path`` to create it at.

    On success the result is renamed to ``path`` (an existing file or folder there is replaced);
    on any error nothing is left behind: neither the temporary folder nor parent folders made here.
    """
    path = Path(path)
    made = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        result = workdir / path.name
        yield result
        if not result.exists():
            raise RuntimeError(f"nothing was written for {path}")
        if path.is_dir() and not path.is_symlink():
            old = workdir / ".replaced"
            path.rename(old)
            result.rename(path)
        else:
            os.replace(result, path)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        for folder in made:  # innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    shutil.rmtree(workdir, ignore_errors=True)
