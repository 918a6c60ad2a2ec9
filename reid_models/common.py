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
           "one_line", "parse_time", "quiet_native_stderr", "read_image_bgr"]

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


#: Lines the native image/video libraries print on their own (libpng, libjpeg, FFmpeg, OpenCV's logger).
NATIVE_NOISE = re.compile(r"^(libpng (error|warning)|Premature end of JPEG|Corrupt JPEG data|Invalid SOS|"
                          r"Not a JPEG file|\[[\w,]+ @ 0x[0-9a-fA-F]+\]|\[ ?(WARN|ERROR|INFO):)")


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Hide what native libraries (libpng, libjpeg, FFmpeg) print to file descriptor 2 inside the block.

    They write straight to the descriptor, around Python's logging, so their lines would come before
    our one-line errors. Descriptor 2 goes to a temporary file for the block; afterwards every line
    that is not such library noise (:data:`NATIVE_NOISE`: our own warnings, other threads' output)
    is written to stderr again, so nothing else is lost. Use it around short calls (opening a
    source, decoding one image); nested or concurrent blocks (other threads) simply do not capture.
    """
    if not _QUIET_LOCK.acquire(blocking=False):
        yield
        return
    try:
        with _quiet_fd2():
            yield
    finally:
        _QUIET_LOCK.release()


_QUIET_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_fd2() -> Iterator[None]:
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real descriptor 2 (embedded, pytest capture off)
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not NATIVE_NOISE.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def decode_image(data: bytes | np.ndarray, what: str = "image") -> np.ndarray:
    """Encoded bytes (JPEG/PNG/...) -> BGR uint8 (H, W, 3). ImageReadError naming ``what`` otherwise."""
    buf = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else np.asarray(data)
    if buf.size == 0:
        raise ImageReadError(f"cannot read {what}: it is empty")
    cv2 = _cv2()
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageReadError(f"cannot read {what}: not a decodable image (JPEG, PNG, BMP, TIFF or WebP)")
    return image


def read_image_bgr(path: str | Path, what: str = "image") -> np.ndarray:
    """Decode an image file as BGR uint8 (H, W, 3) with a one-line ImageReadError naming the file."""
    path = Path(path)
    label = f"{what} {path}"
    if not path.is_file():
        raise ImageReadError(f"cannot read {label}: no such file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"cannot read {label}: file is empty")
    return decode_image(np.fromfile(str(path), np.uint8), label)


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
