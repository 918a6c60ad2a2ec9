"""Train and test image transforms for person crops (PIL RGB image -> float tensor (3, H, W)).

Train (the BoT / torchreid recipe): resize to (H, W), random horizontal flip, zero-pad by
``pad`` pixels and random-crop back to (H, W), to tensor, normalisation, then random erasing
(Zhong et al. 2020) with probability ``random_erasing``. Test: resize, to tensor, normalisation.

The settings and their defaults are the recipe's sections :class:`~reid_models.config.InputConfig`
(size, mean, std) and :class:`~reid_models.config.AugmentConfig` (flip, pad, random_erasing,
erasing_value); ``build_transforms`` also takes them as one flat options dict of those keys plus
``normalize`` (default true). An unknown key is an error.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import torch
from torchvision import transforms as T

from .config import AugmentConfig, FieldError, InputConfig
from .registry import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Transform", "build_test_transforms", "build_train_transforms",
           "build_transforms", "transform_configs"]

Transform = Callable[[object], torch.Tensor]
_INPUT_KEYS = tuple(f.name for f in dataclasses.fields(InputConfig))
_AUGMENT_KEYS = tuple(f.name for f in dataclasses.fields(AugmentConfig))
OPTION_KEYS = (*_INPUT_KEYS, *_AUGMENT_KEYS, "normalize")


def transform_configs(options: Mapping[str, object] | None = None) -> tuple[InputConfig, AugmentConfig, bool]:
    """Flat options -> (InputConfig resolved with the generic defaults, AugmentConfig, normalize).

    Unknown keys or bad values raise ValueError naming them."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise ValueError(f"unknown transform option {unknown[0]!r}; allowed: {', '.join(OPTION_KEYS)}")
    try:
        input_cfg = InputConfig(**{k: options[k] for k in _INPUT_KEYS if k in options}).resolved()
        augment = AugmentConfig(**{k: options[k] for k in _AUGMENT_KEYS if k in options})
    except FieldError as exc:
        raise ValueError(f"transform {exc.key} {exc.message}") from None
    return input_cfg, augment, bool(options.get("normalize", True))


def build_transforms(options: Mapping[str, object] | None = None, *, train: bool) -> Transform:
    """The train or test transform from flat ``options`` (see the module docstring).

    The same dict serves both: the test transform uses only size, mean, std and normalize.
    """
    input_cfg, augment, normalize = transform_configs(options)
    if train:
        return build_train_transforms(input_cfg, augment, normalize=normalize)
    return build_test_transforms(input_cfg, normalize=normalize)


def _finish(steps: list, input_cfg: InputConfig, normalize: bool) -> list:
    steps.append(T.ToTensor())
    if normalize:
        steps.append(T.Normalize(mean=list(input_cfg.mean), std=list(input_cfg.std)))
    return steps


def build_train_transforms(input_cfg: InputConfig, augment: AugmentConfig = AugmentConfig(), *,
                           normalize: bool = True) -> Transform:
    """Resize, flip, pad + random crop, to tensor, normalise, random erasing -> (3, H, W)."""
    input_cfg = input_cfg.resolved()
    height, width = input_cfg.size
    steps: list = [T.Resize((height, width), antialias=True)]
    if augment.flip > 0:
        steps.append(T.RandomHorizontalFlip(p=float(augment.flip)))
    if augment.pad > 0:
        steps += [T.Pad(int(augment.pad)), T.RandomCrop((height, width))]
    _finish(steps, input_cfg, normalize)
    if augment.random_erasing > 0:
        value = augment.erasing_value if augment.erasing_value == "random" else float(augment.erasing_value)
        steps.append(T.RandomErasing(p=float(augment.random_erasing), scale=(0.02, 0.4), ratio=(0.3, 3.33),
                                     value=value))
    return T.Compose(steps)


def build_test_transforms(input_cfg: InputConfig, *, normalize: bool = True) -> Transform:
    """Resize, to tensor, normalise -> (3, H, W)."""
    input_cfg = input_cfg.resolved()
    return T.Compose(_finish([T.Resize(input_cfg.size, antialias=True)], input_cfg, normalize))
