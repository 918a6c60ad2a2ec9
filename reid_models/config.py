"""Strict YAML training recipes: one file per network, read once at the entry point.

A recipe has the sections ``model``, ``input``, ``augment``, ``sampler``, ``optimizer``,
``schedule``, ``loss`` and ``eval`` (plus an optional ``paper`` string and ``seed``). Every
section becomes a frozen dataclass; an unknown key, a missing required key or a value of the
wrong type is a :class:`ConfigError` naming the file, the key path and the allowed keys.

    cfg = load_config("configs/reid/bot_r50.yaml")
    cfg.optimizer.lr, cfg.sampler.batch_size, cfg.loss.as_dict()
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A recipe file that does not match the schema (one line: file, key path, fix)."""


class FieldError(ConfigError):
    """A bad value found by a section's ``__post_init__``: ``key`` is relative to the section."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise FieldError(key, message)


def _check_numbers(section: Any, *, probabilities: tuple[str, ...] = ()) -> None:
    """Every int/float field of ``section`` is finite and >= 0; ``probabilities`` lie in [0, 1]."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        _require(math.isfinite(value) and value >= 0, f.name, f"must be a non-negative number, got {value!r}")
        if f.name in probabilities:
            _require(value <= 1, f.name, f"must be a probability in [0, 1], got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """``name``: registry name; ``kwargs``: passed to ``create_model`` (checked by the factory)."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InputConfig:
    """Crop size (H, W) in pixels and the per-channel normalisation (RGB, 0..1 scale).

    A field left out (None) takes the model's registered default (``registry.get_model_info``)
    when the recipe is built; :meth:`resolved` fills them for a model, or with the registry's
    generic defaults (256x128, ImageNet) without one.
    """

    size: tuple[int, int] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.size is not None:
            size = tuple(self.size)
            _require(len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size),
                     "size", f"must be [H, W] with positive ints, got {list(size)}")
            _require(min(size) >= 16, "size", f"{list(size)} is too small (H W in pixels, e.g. [256, 128])")
            object.__setattr__(self, "size", size)
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is not None:
                _require(len(value) == 3, key, f"needs 3 values (RGB), got {list(value)}")
                object.__setattr__(self, key, tuple(float(v) for v in value))
        _require(self.std is None or min(self.std) > 0, "std", "must be > 0")

    def resolved(self, model: str | None = None) -> InputConfig:
        """Copy with every None field set from ``model``'s registered defaults (generic ones for None)."""
        from .registry import DEFAULT_INPUT_SIZE, IMAGENET_MEAN, IMAGENET_STD, get_model_info

        if model is not None:
            info = get_model_info(model)
            size, mean, std = info.input_size, info.mean, info.std
        else:
            size, mean, std = DEFAULT_INPUT_SIZE, IMAGENET_MEAN, IMAGENET_STD
        return InputConfig(size=self.size or size, mean=self.mean or mean, std=self.std or std)


@dataclass(frozen=True)
class AugmentConfig:
    """Train-time augmentation: flip probability, zero padding (px) before the random crop back
    to ``input.size`` (0 = no pad/crop), random-erasing probability (0 = off) and the erased
    pixels' value (``random`` per-pixel normal noise, or a number in normalised units: 0 = the mean colour)."""

    flip: float = 0.5
    pad: int = 10
    random_erasing: float = 0.5
    erasing_value: str | float = "random"

    def __post_init__(self) -> None:
        _check_numbers(self, probabilities=("flip", "random_erasing"))
        if isinstance(self.erasing_value, str):
            _require(self.erasing_value == "random", "erasing_value",
                     f"must be 'random' or a number, got {self.erasing_value!r}")


@dataclass(frozen=True)
class SamplerConfig:
    """P x K batches: ``batch_size`` = P identities x ``num_instances`` (K) images each."""

    batch_size: int = 64
    num_instances: int = 4

    def __post_init__(self) -> None:
        _require(self.num_instances >= 1, "num_instances", "must be >= 1")
        _require(self.batch_size >= 1 and self.batch_size % self.num_instances == 0, "batch_size",
                 f"{self.batch_size} is not a multiple of sampler.num_instances={self.num_instances} (P x K batches)")


@dataclass(frozen=True)
class OptimizerConfig:
    """``name``: sgd | adam | adamw. Per-parameter settings (one optimizer param group each):

    - ``bias_lr_factor`` multiplies the lr of bias parameters;
    - ``backbone_lr_factor`` multiplies the lr of the model's ``backbone`` submodule (the pretrained
      trunk; PCB trains it at 0.1x), the head keeps ``lr``; 1.0 = one lr for all;
    - ``no_decay_norm_bias``: no weight decay on 1-d parameters (norm weights and biases, biases, GeM's
      p, attention gates, layer scales). Off by default: the papers' reference code (BoT, PCB,
      torchreid) decays every parameter, and the recipes follow it.
    """

    name: str
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    bias_lr_factor: float = 1.0
    backbone_lr_factor: float = 1.0
    no_decay_norm_bias: bool = False

    def __post_init__(self) -> None:
        _require(self.name in ("sgd", "adam", "adamw"), "name", f"{self.name!r} is not one of sgd, adam, adamw")
        _check_numbers(self)
        _require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        _require(self.backbone_lr_factor > 0, "backbone_lr_factor",
                 f"must be > 0 (1.0 = the backbone trains at lr), got {self.backbone_lr_factor}")


@dataclass(frozen=True)
class ScheduleConfig:
    """Per-epoch lr schedule: linear warm-up from ``warmup_factor * lr`` over ``warmup_epochs``,
    then ``step`` (x ``gamma`` at each of ``milestones``) or ``cosine`` (down to ``min_lr``)."""

    epochs: int
    warmup_epochs: int = 0
    warmup_factor: float = 0.1
    type: str = "step"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        _require(self.type in ("step", "cosine"), "type", f"{self.type!r} is not one of step, cosine")
        _require(self.epochs >= 1, "epochs", "must be >= 1")
        _check_numbers(self)
        _require(self.warmup_epochs < self.epochs, "warmup_epochs", "must be smaller than schedule.epochs")


@dataclass(frozen=True)
class CETerm:
    """Softmax cross-entropy on linear logits; ``label_smooth`` epsilon (0 = none)."""

    weight: float = 1.0
    label_smooth: float = 0.1

    def __post_init__(self) -> None:
        _check_numbers(self)
        _require(self.label_smooth < 1, "label_smooth", f"must be in [0, 1), got {self.label_smooth}")


@dataclass(frozen=True)
class ArcFaceTerm(CETerm):
    """Additive angular margin on cosine logits: cos(theta + margin) * scale."""

    label_smooth: float = 0.0
    margin: float = 0.5
    scale: float = 64.0


@dataclass(frozen=True)
class CircleTerm(CETerm):
    """Circle-softmax on cosine logits (relaxation ``margin``, scale ``gamma``)."""

    label_smooth: float = 0.0
    margin: float = 0.25
    gamma: float = 64.0


@dataclass(frozen=True)
class TripletTerm:
    """Batch-hard triplet; ``margin: null`` = soft-margin (log(1 + exp(d_ap - d_an)));
    ``normalize``: L2-normalise the features first."""

    weight: float = 1.0
    margin: float | None = 0.3
    normalize: bool = False

    def __post_init__(self) -> None:
        _check_numbers(self)


@dataclass(frozen=True)
class CenterTerm:
    """Center loss; its centres train with their own SGD optimizer at ``lr``."""

    weight: float = 5e-4
    lr: float = 0.5

    def __post_init__(self) -> None:
        _check_numbers(self)


@dataclass(frozen=True)
class GLATerm:
    """MFA's global-local aligned loss; ``detach_stripes``: the stripes guide, get no gradient."""

    weight: float = 1.0
    detach_stripes: bool = True

    def __post_init__(self) -> None:
        _check_numbers(self)


CLASSIFICATION_LOSSES = ("ce", "arcface", "circle")


@dataclass(frozen=True)
class LossConfig:
    """The ``loss`` section: each present term is one loss; absent terms are off. At most one
    classification term (ce, arcface, circle); a recipe needs exactly one."""

    ce: CETerm | None = None
    arcface: ArcFaceTerm | None = None
    circle: CircleTerm | None = None
    triplet: TripletTerm | None = None
    center: CenterTerm | None = None
    gla: GLATerm | None = None

    def __post_init__(self) -> None:
        chosen = [t for t in CLASSIFICATION_LOSSES if getattr(self, t) is not None]
        _require(len(chosen) <= 1, "", f"needs exactly one of ce, arcface, circle (the identity loss): "
                                       f"choose one classification loss, got {', '.join(chosen)}")

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """``{term: {key: value}}`` (absent terms left out)."""
        return {f.name: dataclasses.asdict(getattr(self, f.name))
                for f in dataclasses.fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class EvalConfig:
    """Evaluate every ``every`` epochs (and after the last); ``rerank`` adds k-reciprocal
    re-ranked metrics; ``flip`` averages the embedding of the image and its mirror."""

    every: int = 10
    rerank: bool = True
    flip: bool = False
    batch_size: int = 128

    def __post_init__(self) -> None:
        _require(self.every >= 1, "every", "must be >= 1")
        _require(self.batch_size >= 1, "batch_size", "must be >= 1")


@dataclass(frozen=True)
class TrainConfig:
    """A whole recipe. ``input`` fields left out take the model's registered defaults."""

    model: ModelConfig
    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    loss: LossConfig
    input: InputConfig = InputConfig()
    augment: AugmentConfig = AugmentConfig()
    sampler: SamplerConfig = SamplerConfig()
    eval: EvalConfig = EvalConfig()
    paper: str = ""
    seed: int = 0

    def __post_init__(self) -> None:
        classifiers = [t for t in CLASSIFICATION_LOSSES if getattr(self.loss, t) is not None]
        _require(len(classifiers) == 1, "loss",
                 f"needs exactly one of ce, arcface, circle (the identity loss), got {classifiers}")
        if None in (self.input.size, self.input.mean, self.input.std):
            try:
                resolved = self.input.resolved(self.model.name)
            except KeyError as exc:
                raise FieldError("model.name", exc.args[0]) from None
            object.__setattr__(self, "input", resolved)


def _fail(source: str, path: str, message: str) -> typing.NoReturn:
    raise ConfigError(f"{source}: {path}: {message}")


def _convert(value: Any, tp: Any, source: str, path: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert (lists -> tuples, int -> float)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(tp)):
            return None
        for arg in args[:-1]:  # the first alternative the value fits (e.g. str | float)
            try:
                return _convert(value, arg, source, path)
            except ConfigError:
                pass
        return _convert(value, args[-1], source, path)
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        return _build(tp, value, source, path)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            _fail(source, path, f"expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], source, f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            _fail(source, path, f"expected {len(args)} values, got {len(value)} ({value!r})")
        return tuple(_convert(v, a, source, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            _fail(source, path, f"expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            _fail(source, path, f"expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(source, path, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(source, path, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            _fail(source, path, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} at {path}")  # programming error, not user input


def _build(cls: type, data: Any, source: str, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from mapping ``data``, rejecting unknown and missing keys."""
    where = prefix or "top level"
    if not isinstance(data, dict):
        _fail(source, where, f"expected a mapping with keys {', '.join(f.name for f in dataclasses.fields(cls))}, "
                             f"got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            path = f"{prefix}.{key}" if prefix else str(key)
            _fail(source, path, f"unknown key; allowed keys in {where}: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        path = f"{prefix}.{name}" if prefix else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                _fail(source, path, "missing required key")
            continue
        kwargs[name] = _convert(data[name], hints[name], source, path)
    try:
        return cls(**kwargs)
    except FieldError as exc:  # a section's __post_init__ check: name the file and the key path
        path = ".".join(p for p in (prefix, exc.key) if p) or "top level"
        _fail(source, path, exc.message)


def build_section(cls: type, data: Any, source: str, prefix: str = "") -> Any:
    """Typed, checked config section ``cls`` from a mapping; errors name ``source`` and the key path."""
    return _build(cls, data, source, prefix)


def config_from_dict(data: Any, source: str = "<config>") -> TrainConfig:
    """Build a :class:`TrainConfig` from a parsed YAML mapping; ``source`` names it in errors."""
    return _build(TrainConfig, data, source, "")


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a recipe YAML. Missing file or bad YAML -> ConfigError (one line)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config not found: {path} (pass one of configs/reid/*.yaml)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())
        raise ConfigError(f"{path}: not valid YAML: {first}") from exc
    return config_from_dict(data, str(path))


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain nested dict (lists for tuples, absent losses dropped) that ``config_from_dict`` reads back."""
    def plain(x: Any) -> Any:
        if isinstance(x, (tuple, list)):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x

    data = plain(dataclasses.asdict(cfg))
    data["loss"] = {k: v for k, v in data["loss"].items() if v is not None}
    return data


def override(cfg: TrainConfig, assignments: list[str], source: str = "--set") -> TrainConfig:
    """Copy of ``cfg`` with ``KEY=VALUE`` assignments applied (dotted key paths, YAML values),
    e.g. ``["model.kwargs.rpp=true", "schedule.epochs=10"]``; validated like the file."""
    data = config_to_dict(cfg)
    for text in assignments:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{source}: expected KEY=VALUE such as schedule.epochs=10, got {text!r}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        *parents, leaf = key.strip().split(".")
        node = data
        for depth, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{source}: {'.'.join(parents[:depth + 1])} is a value, not a section ({text!r})")
            node = child
        node[leaf] = value
    return config_from_dict(data, source)
