"""Train and test image transforms for person crops (PIL RGB image -> float tensor (3, H, W)).

Train (the BoT / torchreid recipe): resize to (H, W), random horizontal flip, zero-pad by
``padding`` pixels and random-crop back to (H, W), to tensor, ImageNet normalisation, then
random erasing (Zhong et al. 2020) with probability ``random_erasing``.
Test: resize to (H, W), to tensor, normalisation.

Options (a dict, e.g. the ``transforms`` section of a recipe; an unknown key is an error):
    size: [H, W] (default [256, 128]); flip_p: 0.5; padding: 10 (0 = no pad/crop);
    random_erasing: probability, 0 = off (default 0.5); erasing_value: 'random' (per-pixel
    normal noise) or a number (in normalised units, 0 = the ImageNet mean colour);
    normalize: true; mean / std: ImageNet RGB statistics.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULTS: dict[str, object] = {
    "size": (256, 128),
    "flip_p": 0.5,
    "padding": 10,
    "random_erasing": 0.5,
    "erasing_value": "random",
    "normalize": True,
    "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD,
}
TEST_KEYS = ("size", "normalize", "mean", "std")

Transform = Callable[[object], torch.Tensor]


def build_transforms(options: Mapping[str, object] | None = None, *, train: bool) -> Transform:
    """Build the train or test transform from ``options`` (keys of DEFAULTS; others are an error).

    The same dict serves both: the test transform uses only size, normalize, mean and std.
    """
    options = dict(options or {})
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown transform option {unknown[0]!r}; allowed: {', '.join(DEFAULTS)}")
    merged = {**DEFAULTS, **options}
    if train:
        return build_train_transforms(**merged)
    return build_test_transforms(**{key: merged[key] for key in TEST_KEYS})


def _size(size: Sequence[int]) -> tuple[int, int]:
    if len(size) != 2 or any(int(s) <= 0 for s in size):
        raise ValueError(f"transform size must be [H, W] with positive ints, got {list(size)}")
    return int(size[0]), int(size[1])


def _finish(steps: list, normalize: bool, mean: Sequence[float], std: Sequence[float]) -> list:
    steps.append(T.ToTensor())
    if normalize:
        steps.append(T.Normalize(mean=list(mean), std=list(std)))
    return steps


def build_train_transforms(
    size: Sequence[int] = (256, 128),
    flip_p: float = 0.5,
    padding: int = 10,
    random_erasing: float = 0.5,
    erasing_value: str | float = "random",
    normalize: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Transform:
    """Resize, flip, pad + random crop, to tensor, normalise, random erasing -> (3, H, W)."""
    height, width = _size(size)
    if not 0.0 <= float(flip_p) <= 1.0 or not 0.0 <= float(random_erasing) <= 1.0:
        raise ValueError(f"flip_p ({flip_p}) and random_erasing ({random_erasing}) must be probabilities in [0, 1]")
    steps: list = [T.Resize((height, width), antialias=True)]
    if flip_p > 0:
        steps.append(T.RandomHorizontalFlip(p=float(flip_p)))
    if padding > 0:
        steps += [T.Pad(int(padding)), T.RandomCrop((height, width))]
    _finish(steps, normalize, mean, std)
    if random_erasing > 0:
        value = erasing_value if erasing_value == "random" else float(erasing_value)
        steps.append(T.RandomErasing(p=float(random_erasing), scale=(0.02, 0.4), ratio=(0.3, 3.33), value=value))
    return T.Compose(steps)


def build_test_transforms(
    size: Sequence[int] = (256, 128),
    normalize: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Transform:
    """Resize, to tensor, normalise -> (3, H, W)."""
    height, width = _size(size)
    return T.Compose(_finish([T.Resize((height, width), antialias=True)], normalize, mean, std))
