"""Person re-identification networks of five papers, their losses, datasets and metrics.

The names below load lazily, so ``import reid_models.common`` (used by light commands such as
``pipeline query``) does not import torch.
"""
from __future__ import annotations

import importlib

__all__ = ["create_model", "get_model_info", "list_models", "model_defaults", "register_model", "ReIDOutput",
           "load_model", "save_checkpoint"]

_HOMES = {"create_model": "registry", "get_model_info": "registry", "list_models": "registry",
          "model_defaults": "registry", "register_model": "registry",
          "ReIDOutput": "output", "load_model": "checkpoint", "save_checkpoint": "checkpoint"}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
