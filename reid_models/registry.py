"""timm-style model registry with per-model default settings.

    @register_model(input_size=(256, 128), embedding_dim=2048)
    def bot_r50(num_classes, pretrained=None, **kwargs) -> nn.Module: ...

    create_model("bot_r50", num_classes=751)   # input_size defaults to the registered one
    get_model_info("bot_r50").input_size       # (256, 128); model_defaults(name) -> plain dict

The registered settings (input size, normalisation, embedding size with the factory's default
options) are the one source of those defaults: recipes that leave ``input`` out and checkpoints
without a recipe take them from here. Importing this module does not import torch.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ModelInfo", "create_model", "get_model_info", "list_models",
           "model_defaults", "register_model"]

#: ImageNet RGB statistics (0..1 scale), the normalisation of every ImageNet-initialised trunk.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_INPUT_SIZE = (256, 128)  # H, W pixels: the re-ID papers' person crop


@dataclass(frozen=True)
class ModelInfo:
    """A registered network's defaults: crop ``input_size`` (H, W) px, RGB ``mean``/``std`` (0..1 scale)
    and ``embedding_dim`` D of the eval-mode embedding with the factory's default options."""

    name: str
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    embedding_dim: int = 2048

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.input_size) != 2 or min(self.input_size) < 16:
            raise ValueError(f"model {self.name}: input_size must be (H, W) >= 16 px, got {self.input_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"model {self.name}: mean and std need 3 values (RGB), std > 0")
        if self.embedding_dim < 1:
            raise ValueError(f"model {self.name}: embedding_dim must be >= 1, got {self.embedding_dim}")


_MODELS: dict[str, Callable[..., nn.Module]] = {}
_INFO: dict[str, ModelInfo] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, **defaults: Any):
    """Register a factory ``fn(num_classes, **kwargs) -> nn.Module`` under its function name.

    Use bare (``@register_model``: the default ModelInfo) or with settings
    (``@register_model(input_size=(256, 128), embedding_dim=2048)``; keys of :class:`ModelInfo`).
    """
    def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = factory.__name__
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _INFO[name] = ModelInfo(name, **defaults)
        _MODELS[name] = factory
        return factory

    return add(fn) if fn is not None else add


_LIGHT_HOMES = {"generic_mnv2_hsv": "generic"}
"""Models whose module registers them without the zoo: asking for one of these by name imports only
its module (no torchvision), so a query with the default embedder stays light."""


def _ensure_loaded(name: str | None = None) -> None:
    """Register ``name`` (its own module if light, else every network); None: every network."""
    if name is not None and name in _MODELS:
        return
    if name in _LIGHT_HOMES:
        import importlib

        importlib.import_module(f".{_LIGHT_HOMES[name]}", __package__)
        if name in _MODELS:
            return
    from . import models  # noqa: F401  (importing registers every network)


def list_models() -> list[str]:
    """Sorted registry names."""
    _ensure_loaded()
    return sorted(_MODELS)


def _check_name(name: str) -> None:
    _ensure_loaded(name)
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; choose one of {', '.join(sorted(_MODELS))}")


def get_model_info(name: str) -> ModelInfo:
    """The registered defaults of model ``name``; unknown names are a KeyError listing the choices."""
    _check_name(name)
    return _INFO[name]


def model_defaults(name: str) -> dict[str, Any]:
    """``{"input_size", "mean", "std", "embedding_dim"}`` of model ``name`` as a plain dict."""
    info = dataclasses.asdict(get_model_info(name))
    del info["name"]
    return info


def create_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Build a registered network (``input_size`` defaults to the registered one). Unknown names are
    a clear KeyError listing the choices."""
    _check_name(name)
    kwargs.setdefault("input_size", _INFO[name].input_size)
    return _MODELS[name](num_classes=num_classes, **kwargs)
