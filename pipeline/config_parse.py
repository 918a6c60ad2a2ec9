"""Value checkers behind :mod:`pipeline.config`: typed getters with one-line errors, camera
source / time / ROI values, and a YAML loader that rejects duplicate keys.

Each checker takes the key path ``p`` (like ``cameras[1].fps``) and fails with a
:class:`ConfigError` naming the file, the key path and the fix.
"""
from __future__ import annotations

import math
import re
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import yaml

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")


class ConfigError(ValueError):
    """A bad cams.yaml: the message is one line naming file, key path and fix."""


# ---------------------------------------------------------------------------------------
# typed getters and YAML loading
# ---------------------------------------------------------------------------------------

class _Ctx:
    """Error reporting and typed getters; ``p`` is the key path like ``cameras[1].fps``."""

    def __init__(self, name: str, base_dir: Path) -> None:
        self.name, self.base_dir = name, base_dir

    def fail(self, p: str, msg: str) -> NoReturn:
        raise ConfigError(f"{self.name}: {p + ': ' if p else ''}{msg}")

    def mapping(self, p: str, value: Any, allowed) -> dict:
        if value is None and p:          # an empty optional section = all defaults
            return {}
        if not isinstance(value, dict):
            self.fail(p, f"expected a mapping of keys ({', '.join(allowed)}), got {_show(value)}")
        for key in value:
            if key not in allowed:
                self.fail(f"{p}.{key}" if p else str(key),
                          f"unknown key; allowed keys: {', '.join(allowed)}")
        return value

    def number(self, p: str, v: Any, lo: float | None = None, hi: float | None = None,
               lo_open: bool = False, optional: bool = False) -> float | None:
        if v is None and optional:
            return None
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ok = ok and (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or v <= hi)
        if not ok:
            self.fail(p, f"expected {_describe('number', lo, hi, lo_open)}, got {_show(v)}")
        return float(v)

    def integer(self, p: str, v: Any, lo: int | None = None, optional: bool = False) -> int | None:
        if v is None and optional:
            return None
        if not (isinstance(v, int) and not isinstance(v, bool) and (lo is None or v >= lo)):
            self.fail(p, f"expected {_describe('integer', lo, None, False)}, got {_show(v)}")
        return int(v)

    def boolean(self, p: str, v: Any) -> bool:
        if not isinstance(v, bool):
            self.fail(p, f"expected true or false, got {_show(v)}")
        return v

    def file(self, p: str, v: Any) -> str | None:
        """An optional existing file, resolved from the YAML folder."""
        if v is None:
            return None
        if not isinstance(v, str) or not v.strip():
            self.fail(p, f"expected a file path or null, got {_show(v)}")
        path = Path(v).expanduser()
        path = path if path.is_absolute() else self.base_dir / path
        if not path.is_file():
            self.fail(p, f"file not found: {path} (relative paths are resolved from {self.base_dir}; "
                         "use null for the default)")
        return str(path.resolve())


def _describe(kind: str, lo, hi, lo_open: bool) -> str:
    article = "an" if kind[0] in "aeiou" else "a"
    if lo == 0 and lo_open and hi is None:
        return f"a positive {kind}"
    if lo is not None and hi is not None:
        return f"{article} {kind} from {lo} to {hi}"
    if lo is not None:
        return f"{article} {kind} {'>' if lo_open else '>='} {lo}"
    return f"{article} {kind}"


def _show(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _url_scheme(s: str) -> str | None:
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", s)
    return m.group(1).lower() if m else None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(e, "problem", None) or _one_line(e)
    return f"{where}invalid YAML ({_one_line(problem)}); fix the syntax (indent with spaces, 'key: value')"


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(key)
        self.key, self.line = key, line


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise _DuplicateKey(key, key_node.start_mark.line + 1)
                seen.add(key)
            except TypeError:  # unhashable key: let SafeLoader report it
                pass
        return super().construct_mapping(node, deep=deep)


# ---------------------------------------------------------------------------------------
# camera values
# ---------------------------------------------------------------------------------------

def _source(ctx: _Ctx, p: str, value: Any) -> str | int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        ctx.fail(p, f"expected a video file, image folder, rtsp/http URL or webcam index, got {_show(value)}")
    if isinstance(value, int):
        if value < 0:
            ctx.fail(p, f"webcam index must be >= 0, got {value}")
        return value
    if not value.strip():
        ctx.fail(p, "is empty; give a video file, image folder, rtsp/http URL or webcam index")
    scheme = _url_scheme(value)
    if scheme:
        if scheme not in URL_SCHEMES:
            ctx.fail(p, f"unsupported URL scheme '{scheme}://'; use one of "
                        + ", ".join(s + "://" for s in URL_SCHEMES))
        return value
    path = Path(value).expanduser()
    path = path if path.is_absolute() else ctx.base_dir / path
    if not path.exists():
        if value.isdigit():
            return int(value)
        ctx.fail(p, f"no such video file or image folder: {path} "
                    f"(relative paths are resolved from {ctx.base_dir})")
    if path.is_dir() and not any(f.suffix.lower() in IMAGE_EXTENSIONS for f in path.iterdir()):
        ctx.fail(p, f"folder {path} has no image files ({', '.join(IMAGE_EXTENSIONS)}); "
                    "point it at a video file or a folder of frames")
    return str(path.resolve())


def _timestamp(ctx: _Ctx, p: str, value: Any) -> float | None:
    """ISO-8601 string / YAML timestamp (no offset = UTC) or epoch seconds -> epoch seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return ctx.number(p, value, lo=0)
    dt = value
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            dt = None
    elif isinstance(value, date) and not isinstance(value, datetime):
        dt = datetime(value.year, value.month, value.day)
    if not isinstance(dt, datetime):
        ctx.fail(p, f"expected an ISO-8601 time like '2024-05-01T10:00:00+02:00' or epoch seconds, "
                    f"got {_show(value)}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _roi(ctx: _Ctx, p: str, value: Any) -> tuple[int, int, int, int] | None:
    if value is None:
        return None
    ok = (isinstance(value, list) and len(value) == 4
          and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value))
    if not ok or not (value[0] < value[2] and value[1] < value[3]):
        ctx.fail(p, f"expected [x1, y1, x2, y2] integer pixels >= 0 with x1 < x2 and y1 < y2, "
                    f"got {_show(value)}")
    return tuple(value)  # type: ignore[return-value]
