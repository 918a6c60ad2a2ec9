"""Checkpoint files: one dict, readable without the training code.

Keys: ``model`` (registry name), ``model_kwargs`` (dict passed to create_model),
``num_classes`` (int), ``input_size`` ([H, W] pixels), ``state_dict``, and optional
``epoch``, ``optimizer``, ``scheduler``, ``scaler``, ``metrics``, ``config``, ``dataset``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .common import one_line
from .registry import IMAGENET_MEAN, IMAGENET_STD, create_model, get_model_info


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


class CheckpointError(ValueError):
    """A file that is not a readable reid_models checkpoint (one line naming the file and the fix)."""


REQUIRED_KEYS = {"model": str, "model_kwargs": dict, "num_classes": int, "input_size": (list, tuple),
                 "state_dict": dict}
_FIX = "pass a .pt written by python -m reid_models.train"


def read_checkpoint(path: str | Path) -> dict:
    """Load the checkpoint dict on CPU. A missing file is FileNotFoundError; a file that is not a
    torch file, not a dict, or lacks a key (or has one of the wrong type) is :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (pass the .pt written by reid_models.train)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - corrupt, truncated or not a torch file at all
        raise CheckpointError(f"{path} is not a reid_models checkpoint: torch cannot read it "
                              f"({type(exc).__name__}: {one_line(exc)[:200]}); {_FIX}") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not a reid_models checkpoint: it holds a {type(ckpt).__name__}, "
                              f"not a dict; {_FIX}")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is not a reid_models checkpoint (missing keys {missing}); {_FIX}")
    wrong = [k for k, tp in REQUIRED_KEYS.items() if not isinstance(ckpt[k], tp) or isinstance(ckpt[k], bool)]
    if wrong or len(ckpt["input_size"]) != 2:
        key = wrong[0] if wrong else "input_size"
        raise CheckpointError(f"{path} is not a reid_models checkpoint: {key} is {ckpt[key]!r:.80}; {_FIX}")
    return ckpt


def normalization(info: dict) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per RGB channel on a 0..1 scale that the checkpoint's recipe trained with
    (``info["config"]["input"]``); without a recipe the model's registered defaults (ImageNet's
    for an unknown model)."""
    section = (info.get("config") or {}).get("input", {})
    try:
        defaults = get_model_info(info["model"])
        mean, std = defaults.mean, defaults.std
    except KeyError:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    return tuple(section.get("mean") or mean), tuple(section.get("std") or std)


DEFAULT_CHECKPOINT = "default"  # the generic embedder (reid_models.generic), no file needed


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the network from a checkpoint, in eval mode on ``device``.

    ``path`` may be ``"default"``: the untrained generic embedder (ImageNet MobileNetV2 + colour).
    Returns (model, info) where info is the checkpoint dict without tensors
    (``model``, ``model_kwargs``, ``num_classes``, ``input_size``, ...; ``sha256`` of the weights
    for the default).
    """
    if str(path) == DEFAULT_CHECKPOINT:
        from . import generic

        model = create_model(generic.NAME, num_classes=0)
        info = {"model": generic.NAME, "model_kwargs": {}, "num_classes": 0, "input_size": list(generic.INPUT_SIZE),
                "sha256": generic.file_sha256(generic.mobilenet_weights_path())}
        return model.to(device).eval(), info
    ckpt = read_checkpoint(path)
    kwargs = dict(ckpt["model_kwargs"])
    kwargs.pop("pretrained", None)  # weights come from the checkpoint, never from a download
    try:
        model = create_model(ckpt["model"], num_classes=ckpt["num_classes"], **kwargs)
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:  # unknown model, foreign kwargs, weights that do not fit
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise CheckpointError(f"{path}: cannot rebuild its {ckpt['model']} network ({one_line(text)[:300]}); "
                              f"{_FIX}") from None
    model.to(device).eval()
    info = {k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer", "scheduler", "scaler")}
    return model, info
