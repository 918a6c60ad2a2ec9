"""ImageDataset and loaders on a tiny Market-1501 folder of real JPEG files."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reid_models.data import ImageDataset, ImageReadError, build_test_loaders, build_train_loader
from reid_models.datasets import build_dataset
from reid_models.transforms import build_transforms

SIZE = (32, 16)
OPTIONS = {"size": list(SIZE)}


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """Market-1501 layout: 4 train ids x 3 images, 2 query and 4 gallery images."""
    base = tmp_path_factory.mktemp("data") / "Market-1501-v15.09.15"
    rng = np.random.default_rng(0)
    names = {
        "bounding_box_train": [f"{pid:04d}_c{cam}s1_{100 * cam:06d}_01.jpg"
                               for pid in (2, 7, 9, 11) for cam in (1, 2, 3)],
        "query": ["0003_c1s1_000151_00.jpg", "0005_c4s1_008751_00.jpg"],
        "bounding_box_test": ["0003_c2s1_000376_01.jpg", "0005_c6s1_012451_02.jpg", "0000_c1s1_000151_01.jpg",
                              "0003_c5s1_000222_01.jpg"],
    }
    for folder, files in names.items():
        (base / folder).mkdir(parents=True)
        for name in files:
            Image.fromarray(rng.integers(0, 256, (40, 20, 3), dtype=np.uint8)).save(base / folder / name, quality=90)
    return build_dataset("market1501", base)


def test_image_dataset_item(market):
    dataset = ImageDataset(market.query, build_transforms(OPTIONS, train=False))
    image, pid, camid, path = dataset[1]
    assert image.shape == (3, *SIZE) and image.dtype == torch.float32
    assert (pid, camid, Path(path).name) == (5, 3, "0005_c4s1_008751_00.jpg")
    raw, *_ = ImageDataset(market.query)[0]
    assert isinstance(raw, Image.Image) and raw.size == (20, 40) and raw.mode == "RGB"


def test_train_loader_gives_p_by_k_batches(market):
    torch.manual_seed(0)
    loader = build_train_loader(market, OPTIONS, batch_size=4, num_instances=2, num_workers=0, seed=3)
    batches = list(loader)
    assert len(batches) == len(loader) >= 2
    for images, pids, camids, paths in batches:
        assert images.shape == (4, 3, *SIZE) and images.dtype == torch.float32
        assert pids.dtype == torch.int64 and camids.dtype == torch.int64 and len(paths) == 4
        assert sorted(Counter(pids.tolist()).values()) == [2, 2]
        assert all(0 <= pid < market.num_train_pids for pid in pids.tolist())
    again = build_train_loader(market, OPTIONS, batch_size=4, num_instances=2, seed=3)
    assert [b[3] for b in batches] == [b[3] for b in again]  # same seed, same order


def test_train_loader_with_workers(market):
    loader = build_train_loader(market, OPTIONS, batch_size=6, num_instances=3, num_workers=1, seed=0)
    images, pids, _, _ = next(iter(loader))
    assert images.shape == (6, 3, *SIZE) and sorted(Counter(pids.tolist()).values()) == [3, 3]


def test_test_loaders_keep_order(market):
    query_loader, gallery_loader = build_test_loaders(market, OPTIONS, batch_size=3)
    gallery_paths = [p for _, _, _, paths in gallery_loader for p in paths]
    assert gallery_paths == [p for p, _, _ in market.gallery]
    images, pids, camids, _ = next(iter(query_loader))
    assert images.shape == (2, 3, *SIZE) and pids.tolist() == [3, 5] and camids.tolist() == [0, 3]


def test_corrupt_or_missing_image_is_a_clear_error(market, tmp_path):
    good = Path(market.train[0][0]).read_bytes()
    truncated = tmp_path / "0002_c1s1_000001_01.jpg"
    truncated.write_bytes(good[: len(good) // 2])
    garbage = tmp_path / "0002_c1s1_000002_01.jpg"
    garbage.write_bytes(b"this is not a jpeg at all")
    missing = tmp_path / "0002_c1s1_000003_01.jpg"
    dataset = ImageDataset([(str(truncated), 0, 0), (str(garbage), 0, 0), (str(missing), 0, 0)])
    for index, path in enumerate((truncated, garbage, missing)):
        with pytest.raises(ImageReadError) as excinfo:
            dataset[index]
        message = str(excinfo.value)
        assert str(path) in message and "\n" not in message
    with pytest.raises(ImageReadError, match="corrupt or truncated"):
        dataset[0]
    with pytest.raises(ImageReadError, match="does not exist"):
        dataset[2]
    loader = torch.utils.data.DataLoader(ImageDataset([(str(garbage), 0, 0)], build_transforms(OPTIONS, train=False)),
                                         num_workers=1)
    with pytest.raises(ImageReadError, match=str(garbage)):  # re-raised from the worker with the file name
        next(iter(loader))


def test_test_only_dataset_has_no_train_loader(tmp_path):
    for folder, name in (("Probe", "001.jpg"), ("Gallery", "001.jpg")):
        (tmp_path / "PartialiLIDS" / folder).mkdir(parents=True)
        Image.new("RGB", (8, 16)).save(tmp_path / "PartialiLIDS" / folder / name)
    data = build_dataset("partial_ilids", tmp_path)
    with pytest.raises(ValueError, match="partial_ilids has no training images"):
        build_train_loader(data, OPTIONS, batch_size=4, num_instances=2)
    query_loader, gallery_loader = build_test_loaders(data, OPTIONS)
    assert len(query_loader.dataset) == len(gallery_loader.dataset) == 1
