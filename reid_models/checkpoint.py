"""Checkpoint files: one dict, readable without the training code.

Keys: ``model`` (registry name), ``model_kwargs`` (dict passed to create_model),
``num_classes`` (int), ``input_size`` ([H, W] pixels), ``state_dict``, and optional
``epoch``, ``optimizer``, ``scheduler``, ``scaler``, ``metrics``, ``config``, ``dataset``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .registry import create_model


def save_checkpoint(path: str | Path, model: torch.nn.Module, *, model_name: str,
                    model_kwargs: dict, num_classes: int, input_size: tuple[int, int],
                    **extra: Any) -> Path:
    """Write a checkpoint atomically (temp file + rename) so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": model_name, "model_kwargs": dict(model_kwargs), "num_classes": int(num_classes),
             "input_size": [int(input_size[0]), int(input_size[1])],
             "state_dict": model.state_dict(), **extra}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


def read_checkpoint(path: str | Path) -> dict:
    """Load the checkpoint dict on CPU; a missing or foreign file is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (pass the .pt written by reid_models.train)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # corrupt or not a torch file
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from exc
    missing = [k for k in ("model", "model_kwargs", "num_classes", "input_size", "state_dict") if k not in ckpt]
    if not isinstance(ckpt, dict) or missing:
        raise ValueError(f"{path} is not a reid_models checkpoint (missing keys {missing}); "
                         "train one with python -m reid_models.train")
    return ckpt


def normalization(info: dict) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per RGB channel on a 0..1 scale that the checkpoint's recipe trained with
    (``info["config"]["input"]``), ImageNet's where the checkpoint carries no recipe."""
    from .transforms import IMAGENET_MEAN, IMAGENET_STD

    section = (info.get("config") or {}).get("input", {})
    return tuple(section.get("mean", IMAGENET_MEAN)), tuple(section.get("std", IMAGENET_STD))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the network from a checkpoint, in eval mode on ``device``.

    Returns (model, info) where info is the checkpoint dict without tensors
    (``model``, ``model_kwargs``, ``num_classes``, ``input_size``, ...).
    """
    ckpt = read_checkpoint(path)
    kwargs = dict(ckpt["model_kwargs"])
    kwargs.pop("pretrained", None)  # weights come from the checkpoint, never from a download
    model = create_model(ckpt["model"], num_classes=ckpt["num_classes"], **kwargs)
    model.load_state_dict(ckpt["state_dict"])
    model.to(device).eval()
    info = {k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer", "scheduler", "scaler")}
    return model, info
