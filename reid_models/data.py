"""Torch dataset and loaders over ReIDDataset items.

A batch is ``(images (B, 3, H, W) float32, pids (B,) int64, camids (B,) int64, paths list[str])``.
The train loader draws P x K batches (RandomIdentitySampler, drop_last); the test loaders keep
the query and gallery order.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from .common import ImageReadError
from .datasets.base import Item, ReIDDataset
from .sampler import RandomIdentitySampler
from .transforms import build_transforms

__all__ = ["ImageDataset", "ImageReadError", "build_test_loaders", "build_train_loader", "read_image"]

TransformLike = Callable[[Image.Image], torch.Tensor] | Mapping[str, object] | None


def read_image(path: str) -> Image.Image:
    """Decode ``path`` fully as an RGB PIL image; ImageReadError naming the file otherwise."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except FileNotFoundError:
        raise ImageReadError(f"image {path} does not exist; check the dataset folder") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, ImportError) as exc:
        # ImportError: once ultralytics is imported it patches PIL.Image.open to retry unknown
        # files with an optional HEIF plugin, which fails with ImportError when that is absent.
        raise ImageReadError(
            f"cannot decode image {path} ({exc}); the file is corrupt or truncated: "
            "replace it or re-extract the dataset"
        ) from None


class ImageDataset(Dataset):
    """``items[i] = (path, pid, camid)`` -> ``(transform(image), pid, camid, path)``.

    Without a transform the item's image is the PIL RGB image.
    """

    def __init__(self, items: Sequence[Item], transform: Callable[[Image.Image], torch.Tensor] | None = None):
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        path, pid, camid = self.items[index]
        image = read_image(path)
        if self.transform is not None:
            image = self.transform(image)
        return image, pid, camid, path


def _as_transform(transforms: TransformLike, train: bool) -> Callable[[Image.Image], torch.Tensor]:
    if transforms is None or isinstance(transforms, Mapping):
        return build_transforms(transforms, train=train)
    return transforms


def build_train_loader(
    dataset: ReIDDataset | Sequence[Item],
    transforms: TransformLike,
    batch_size: int,
    num_instances: int,
    num_workers: int = 0,
    seed: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """P x K train loader (P = batch_size / num_instances); ``transforms`` is a callable or an
    options dict for build_transforms(train=True). ``seed`` fixes the sampling order and the
    worker seeds; augmentation in the main process (num_workers=0) follows torch's global seed.
    Workers are started anew each epoch with seeds drawn from ``loader.generator``: reseeding it per
    epoch (the trainer does) makes an epoch's augmentation independent of the epochs before it.
    """
    items = dataset.train if isinstance(dataset, ReIDDataset) else list(dataset)
    if not items:
        name = getattr(dataset, "name", "") or "the dataset"
        raise ValueError(f"{name} has no training images (it is test-only); train on another dataset")
    sampler = RandomIdentitySampler(items, batch_size, num_instances, seed=seed)
    return DataLoader(
        ImageDataset(items, _as_transform(transforms, train=True)),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=True,
        pin_memory=pin_memory,
        persistent_workers=False,  # persistent workers would carry their RNG streams across epochs
        generator=torch.Generator().manual_seed(seed),
    )


def build_test_loaders(
    dataset: ReIDDataset,
    transforms: TransformLike,
    batch_size: int = 128,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> tuple[DataLoader, DataLoader]:
    """(query_loader, gallery_loader) in dataset order; ``transforms`` is a callable or an
    options dict for build_transforms(train=False)."""
    if not dataset.query or not dataset.gallery:
        raise ValueError(f"{dataset.name or 'the dataset'} has no query or no gallery images to evaluate on")
    transform = _as_transform(transforms, train=False)

    def loader(items: list[Item]) -> DataLoader:
        return DataLoader(
            ImageDataset(items, transform),
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            pin_memory=pin_memory,
        )

    return loader(dataset.query), loader(dataset.gallery)
