"""Strict loader for ``cams.yaml`` into :class:`~pipeline.config.schema.PipelineConfig`.

Every mistake is a :class:`ConfigError` with a one-line message naming the file, the key path and
the fix, e.g. ``cams.yaml: cameras[1].fps: expected a positive number, got 'ten'``. Unknown keys
are errors (with a "did you mean" suggestion and the allowed keys), duplicate keys too. Relative
paths are resolved from the YAML file's folder and must exist. Value ranges are checked by the
dataclasses themselves; this module adds what needs the file: YAML syntax, key names, paths.
"""
from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any, NoReturn

import yaml

from reid_models.common import IMAGE_EXTENSIONS, one_line

from . import checks, schema
from .checks import ConfigError, FieldError, show

__all__ = ["config_from_dict", "config_to_dict", "did_you_mean", "load_config"]

SECTIONS = ("cameras", "detector", "tracker", "embedder", "association", "store", "retention")


def did_you_mean(key: Any, allowed) -> str:
    """' (did you mean 'fps'?)' for a near miss of one of ``allowed`` (difflib, or a prefix), else ''."""
    key = str(key)
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    if not close:
        close = [a for a in allowed if len(key) >= 3 and a.startswith(key)][:1]
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Ctx:
    """Where a value came from (file name, YAML folder) and one-line failures naming its key path."""

    def __init__(self, name: str, base_dir: Path) -> None:
        self.name, self.base_dir = name, base_dir

    def fail(self, p: str, msg: str) -> NoReturn:
        raise ConfigError(f"{self.name}: {p + ': ' if p else ''}{msg}")

    def mapping(self, p: str, value: Any, allowed) -> dict:
        """A YAML mapping whose keys are all in ``allowed``; an empty optional section is {}."""
        if value is None and p:
            return {}
        if not isinstance(value, dict):
            self.fail(p, f"expected a mapping of keys ({', '.join(allowed)}), got {show(value)}")
        for key in value:
            if key not in allowed:
                self.fail(f"{p}.{key}" if p else str(key),
                          f"unknown key{did_you_mean(key, allowed)}; allowed keys: {', '.join(allowed)}")
        return value

    def build(self, p: str, cls, kwargs: dict):
        """``cls(**kwargs)`` with a FieldError re-worded as ``<file>: <p>.<field>: <problem>``."""
        try:
            return cls(**kwargs)
        except FieldError as e:
            self.fail(f"{p}.{e.path}" if p and e.path else (p or e.path), e.problem)

    def resolve(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def file(self, p: str, v: Any) -> str | None:
        """An optional existing file, resolved from the YAML folder."""
        if v is None:
            return None
        if not isinstance(v, str) or not v.strip():
            self.fail(p, f"expected a file path or null, got {show(v)}")
        path = self.resolve(v)
        if not path.is_file():
            self.fail(p, f"file not found: {path} (relative paths are resolved from {self.base_dir}; "
                         "use null for the default)")
        return str(path.resolve())

    def source(self, p: str, value: Any) -> Any:
        """A camera source as the dataclass wants it: URL / webcam index as is, paths resolved and checked."""
        try:
            value = checks.source("", "", value)
        except FieldError as e:
            self.fail(p, e.problem)
        if isinstance(value, int) or checks.url_scheme(value):
            return value
        path = self.resolve(value)
        if not path.exists():
            if value.isdigit():
                return int(value)
            self.fail(p, f"no such video file or image folder: {path} "
                         f"(relative paths are resolved from {self.base_dir})")
        if path.is_dir() and not any(f.suffix.lower() in IMAGE_EXTENSIONS for f in path.iterdir()):
            self.fail(p, f"folder {path} has no image files ({', '.join(IMAGE_EXTENSIONS)}); "
                         "point it at a video file or a folder of frames")
        return str(path.resolve())


def _fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name != "source_path"]


def _yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(e, "problem", None) or one_line(e)
    return f"{where}invalid YAML ({one_line(problem)}); fix the syntax (indent with spaces, 'key: value')"


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
# public functions
# ---------------------------------------------------------------------------------------

def load_config(path: str | Path) -> schema.PipelineConfig:
    """Read and validate a cams.yaml file. Raises ConfigError (one line) on any problem."""
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise ConfigError(f"{name}: config file not found; check the path (working folder is {Path.cwd()})")
    if not path.is_file():
        raise ConfigError(f"{name}: is a folder, not a YAML file; pass the path of cams.yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{name}: cannot read the file ({one_line(e)}); it must be a UTF-8 YAML text file") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - SafeLoader subclass
    except _DuplicateKey as e:
        raise ConfigError(f"{name}: line {e.line}: duplicate key '{e.key}'; keep only one of them") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{name}: {_yaml_problem(e)}") from None
    cfg = config_from_dict(data, base_dir=path.resolve().parent, name=name)
    return dataclasses.replace(cfg, source_path=str(path.resolve()))


def config_from_dict(data: Any, base_dir: str | Path = ".", name: str = "config") -> schema.PipelineConfig:
    """Validate an already-parsed mapping (as from YAML); ``name`` prefixes error messages."""
    ctx = _Ctx(name, Path(base_dir).resolve())
    if data is None:
        ctx.fail("", "file is empty; it needs at least 'cameras:' with one camera")
    top = ctx.mapping("", data, SECTIONS)
    if "cameras" not in top:
        ctx.fail("", "missing required key 'cameras' (a list of cameras with id and source)")
    cameras = top["cameras"]
    if isinstance(cameras, list):
        cameras = [_camera(ctx, f"cameras[{i}]", item) for i, item in enumerate(cameras)]
    return ctx.build("", schema.PipelineConfig, dict(
        cameras=cameras,
        detector=_detector(ctx, top.get("detector")),
        tracker=ctx.build("tracker", schema.TrackerConfig,
                          ctx.mapping("tracker", top.get("tracker"), _fields(schema.TrackerConfig))),
        embedder=_embedder(ctx, top.get("embedder")),
        association=_association(ctx, top.get("association")),
        store=_store(ctx, top.get("store")),
        retention=ctx.build("retention", schema.RetentionConfig,
                            ctx.mapping("retention", top.get("retention"), _fields(schema.RetentionConfig))),
    ))


def config_to_dict(cfg: schema.PipelineConfig) -> dict:
    """A JSON-able snapshot of the config (tuples become lists), for storing with a run."""
    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return plain(dataclasses.asdict(cfg))


# ---------------------------------------------------------------------------------------
# sections: key names and paths here, values in the dataclasses
# ---------------------------------------------------------------------------------------

def _camera(ctx: _Ctx, p: str, item: Any) -> schema.CameraConfig:
    m = dict(ctx.mapping(p, item, _fields(schema.CameraConfig)))
    for key in ("id", "source"):
        if key not in m:
            ctx.fail(p, f"missing required key '{key}'"
                     + ("" if key == "id" else " (video file, image folder, rtsp/http URL or webcam index)"))
    try:  # the id first, so that a bad id is reported before a bad source
        checks.camera_id("", "", m["id"])
    except FieldError as e:
        ctx.fail(f"{p}.id", e.problem)
    m["source"] = ctx.source(f"{p}.source", m["source"])
    if m.get("detections") is not None:
        m["detections"] = ctx.file(f"{p}.detections", m["detections"])
    return ctx.build(p, schema.CameraConfig, m)


def _detector(ctx: _Ctx, value: Any) -> schema.DetectorConfig:
    m = dict(ctx.mapping("detector", value, _fields(schema.DetectorConfig)))
    m["weights"] = ctx.file("detector.weights", m.get("weights"))
    return ctx.build("detector", schema.DetectorConfig, m)


def _embedder(ctx: _Ctx, value: Any) -> schema.EmbedderConfig:
    m = dict(ctx.mapping("embedder", value, _fields(schema.EmbedderConfig)))
    m["checkpoint"] = ctx.file("embedder.checkpoint", m.get("checkpoint"))
    return ctx.build("embedder", schema.EmbedderConfig, m)


def _association(ctx: _Ctx, value: Any) -> schema.AssociationConfig:
    m = dict(ctx.mapping("association", value, _fields(schema.AssociationConfig)))
    transit = m.get("transit") or []
    if not isinstance(transit, list):
        ctx.fail("association.transit", f"expected a list of rules (- cameras: [a, b], min_seconds: ..., "
                                        f"max_seconds: ...), got {show(transit)}")
    m["transit"] = tuple(ctx.build(f"association.transit[{i}]", schema.TransitRule,
                                   {"cameras": None, **ctx.mapping(f"association.transit[{i}]", item,
                                                                   _fields(schema.TransitRule))})
                         for i, item in enumerate(transit))
    return ctx.build("association", schema.AssociationConfig, m)


def _store(ctx: _Ctx, value: Any) -> schema.StoreConfig:
    m = dict(ctx.mapping("store", value, _fields(schema.StoreConfig)))
    raw = m.get("path", schema.StoreConfig.path)
    if not isinstance(raw, str) or not raw.strip():
        ctx.fail("store.path", f"expected a file path like runs/store.db, got {show(raw)}")
    path = ctx.resolve(raw)
    if path.is_dir():
        ctx.fail("store.path", f"{path} is a folder; give a database file path like runs/store.db")
    m["path"] = str(path.resolve())
    return ctx.build("store", schema.StoreConfig, m)
