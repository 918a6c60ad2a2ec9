"""timm-style model registry: ``@register_model`` on a factory, ``create_model(name, ...)``."""
from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a factory ``fn(num_classes, **kwargs) -> nn.Module`` under its function name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def _ensure_loaded() -> None:
    from . import models  # noqa: F401  (importing registers every network)


def list_models() -> list[str]:
    """Sorted registry names."""
    _ensure_loaded()
    return sorted(_MODELS)


def create_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Build a registered network. Unknown names are a clear error listing the choices."""
    _ensure_loaded()
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; choose one of {', '.join(sorted(_MODELS))}")
    return _MODELS[name](num_classes=num_classes, **kwargs)
