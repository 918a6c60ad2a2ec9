"""Value checks behind the config dataclasses' ``__post_init__``: each returns the normalised value
or raises :class:`FieldError` naming the field and the fix in one line.

They know nothing of files: resolving paths from the YAML folder and checking that files exist is
the loader's part (:mod:`pipeline.config.loader`).
"""
from __future__ import annotations

import math
import re
from datetime import date, datetime
from typing import Any, NoReturn

from reid_models.common import parse_time

URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
TIME_EXAMPLE = "'2024-05-01T10:00:00+02:00'"


class ConfigError(ValueError):
    """A bad configuration: the message is one line naming (file,) key path and fix."""


class FieldError(ConfigError):
    """A bad value of one field. ``path`` is the key path inside ``owner`` (like ``fps`` or
    ``transit[0].cameras``); the YAML loader re-prefixes it with the file name and section."""

    def __init__(self, owner: str, path: str, problem: str) -> None:
        self.owner, self.path, self.problem = owner, path, problem
        super().__init__(f"{owner}.{path}: {problem}" if path else f"{owner}: {problem}")


def fail(owner: str, path: str, problem: str) -> NoReturn:
    raise FieldError(owner, path, problem)


def show(v: Any) -> str:
    """A value as the user wrote it in YAML (null, true, 'text', [1, 2]), cut at 60 characters."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    s = repr(list(v) if isinstance(v, tuple) else v)
    return s if len(s) <= 60 else s[:57] + "..."


def _describe(kind: str, lo, hi, lo_open: bool) -> str:
    article = "an" if kind[0] in "aeiou" else "a"
    if lo == 0 and lo_open and hi is None:
        return f"a positive {kind}"
    if lo is not None and hi is not None:
        return f"{article} {kind} from {lo} to {hi}"
    if lo is not None:
        return f"{article} {kind} {'>' if lo_open else '>='} {lo}"
    return f"{article} {kind}"


def number(owner: str, key: str, v: Any, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False, optional: bool = False) -> float | None:
    """A finite number in [lo, hi] (or (lo, hi] with lo_open) as float; None passes when optional."""
    if v is None and optional:
        return None
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or v <= hi)
    if not ok:
        fail(owner, key, f"expected {_describe('number', lo, hi, lo_open)}, got {show(v)}")
    return float(v)


def integer(owner: str, key: str, v: Any, lo: int | None = None, optional: bool = False) -> int | None:
    """An integer >= lo; None passes when optional."""
    if v is None and optional:
        return None
    if not (isinstance(v, int) and not isinstance(v, bool) and (lo is None or v >= lo)):
        fail(owner, key, f"expected {_describe('integer', lo, None, False)}, got {show(v)}")
    return int(v)


def boolean(owner: str, key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        fail(owner, key, f"expected true or false, got {show(v)}")
    return v


def optional_path(owner: str, key: str, v: Any) -> str | None:
    """None or a non-empty path string (a ``PathLike`` becomes its string)."""
    if v is None:
        return None
    v = v.__fspath__() if hasattr(v, "__fspath__") else v
    if not isinstance(v, str) or not v.strip():
        fail(owner, key, f"expected a file path or null, got {show(v)}")
    return v


def camera_id(owner: str, key: str, v: Any) -> str:
    """A camera id: letters, digits, '_', '-' or '.'."""
    if not isinstance(v, str) or not _ID_RE.match(v):
        fail(owner, key, f"expected a name of letters, digits, '_', '-' or '.', got {show(v)}"
             + ("; quote it, e.g. id: 'cam1'" if isinstance(v, int) else ""))
    return v


def url_scheme(s: str) -> str | None:
    """'rtsp' for 'rtsp://host/x', None for a path."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", s)
    return m.group(1).lower() if m else None


def source(owner: str, key: str, value: Any) -> str | int:
    """A camera source: webcam index >= 0, a URL of a supported scheme or a non-empty path."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        fail(owner, key, f"expected a video file, image folder, rtsp/http URL or webcam index, got {show(value)}")
    if isinstance(value, int):
        if value < 0:
            fail(owner, key, f"webcam index must be >= 0, got {value}")
        return value
    if not value.strip():
        fail(owner, key, "is empty; give a video file, image folder, rtsp/http URL or webcam index")
    scheme = url_scheme(value)
    if scheme and scheme not in URL_SCHEMES:
        fail(owner, key, f"unsupported URL scheme '{scheme}://'; use one of "
             + ", ".join(s + "://" for s in URL_SCHEMES))
    return value


def timestamp(owner: str, key: str, value: Any) -> float | None:
    """None, epoch seconds >= 0, or an ISO-8601 string / datetime / date (no offset = UTC) -> epoch seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return number(owner, key, value, lo=0)
    if isinstance(value, (str, datetime, date)):
        try:
            return parse_time(value)
        except ValueError:
            pass
    fail(owner, key, f"expected an ISO-8601 time like {TIME_EXAMPLE} or epoch seconds, got {show(value)}")


def roi(owner: str, key: str, value: Any) -> tuple[int, int, int, int] | None:
    """None or [x1, y1, x2, y2] integer pixels >= 0 with x1 < x2 and y1 < y2, as a tuple."""
    if value is None:
        return None
    ok = (isinstance(value, (list, tuple)) and len(value) == 4
          and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value))
    if not ok or not (value[0] < value[2] and value[1] < value[3]):
        fail(owner, key, f"expected [x1, y1, x2, y2] integer pixels >= 0 with x1 < x2 and y1 < y2, got {show(value)}")
    return tuple(value)  # type: ignore[return-value]
