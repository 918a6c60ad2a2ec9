"""Shared fixtures for the reid_models training/evaluation/export tests.

The real re-ID datasets cannot exist on this machine, so ``market_root`` writes a tiny dataset in
the real Market-1501 layout and file-name convention (``Market-1501-v15.09.15/
{bounding_box_train,query,bounding_box_test}/0002_c1s1_000451_03.jpg``). Each identity is a
generated "person" with its own shirt and trouser colours and build, drawn at slightly
different positions, sizes and brightness per image, so a network can learn to tell them apart.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("YOLO_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Each reid_models test module runs torch on one thread, restored afterwards: the tiny tensors and
    64x32 networks here gain nothing from a second thread on a shared 2-core box, where it only spins."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TRAIN_PIDS = (2, 7, 9, 11, 15, 20)   # 6 identities x 2 cameras x 2 images
TEST_PIDS = (31, 34, 38, 42)         # query: 1 image in camera 1; gallery: 2 in camera 2 + 1 in camera 1
CROP_HW = (128, 64)                  # Market-1501 crops are 128 x 64


def person_image(pid: int, index: int, size: tuple[int, int] = CROP_HW) -> np.ndarray:
    """(H, W, 3) uint8 crop of generated person ``pid``, variation ``index``."""
    ident = np.random.default_rng(pid)
    shirt, trousers, skin = ident.integers(20, 236, (3, 3))
    background = ident.integers(60, 200, 3)
    width_frac = ident.uniform(0.35, 0.6)
    rng = np.random.default_rng(1000 * pid + index)
    h, w = size
    img = np.empty((h, w, 3), dtype=np.float32)
    img[:] = background
    dx, dy = rng.integers(-4, 5, 2)
    half = int(w * width_frac / 2)
    cx, top = w // 2 + dx, 8 + dy
    head = slice(max(0, top), top + h // 8)
    img[head, cx - half // 2: cx + half // 2] = skin
    img[top + h // 8: top + h // 2, cx - half: cx + half] = shirt
    img[top + h // 2: h - 4 + dy, cx - half + 2: cx + half - 2] = trousers
    img *= rng.uniform(0.8, 1.2)
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_market(base: Path) -> Path:
    """Write the tiny dataset under ``base/Market-1501-v15.09.15``; returns ``base``."""
    root = base / "Market-1501-v15.09.15"
    frame = 100

    def save(folder: str, pid: int, cam: int, index: int) -> None:
        nonlocal frame
        frame += 25
        name = "-1" if pid == -1 else f"{pid:04d}"
        path = root / folder / f"{name}_c{cam}s1_{frame:06d}_{index:02d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = person_image(pid, cam * 10 + index) if pid > 0 else person_image(900 + frame, 0)
        Image.fromarray(pixels).save(path, quality=92)

    for pid in TRAIN_PIDS:
        for cam in (1, 2):
            for index in (1, 2):
                save("bounding_box_train", pid, cam, index)
    for pid in TEST_PIDS:
        save("query", pid, 1, 0)
        save("bounding_box_test", pid, 1, 3)  # same camera as the query: excluded by the protocol
        save("bounding_box_test", pid, 2, 1)
        save("bounding_box_test", pid, 2, 2)
    save("bounding_box_test", 0, 3, 1)   # Market "distractor" id 0000
    save("bounding_box_test", -1, 3, 1)  # Market "junk" id -1 (ignored)
    return base


@pytest.fixture(scope="session")
def market_root(tmp_path_factory) -> Path:
    """Data root holding a tiny Market-1501 (24 train, 4 query, 14 gallery images)."""
    return write_market(tmp_path_factory.mktemp("market"))


def train_args(data_root: Path, output: Path, *extra: str, config: str = "configs/reid/bot_r50.yaml") -> list[str]:
    """Command-line arguments for a tiny CPU training run of ``config`` on ``data_root``."""
    return ["--config", str(REPO / config), "--data-root", str(data_root), "--dataset", "market1501",
            "--device", "cpu", "--output", str(output), "--pretrained", "none", "--epochs", "1",
            "--input-size", "64", "32", "--batch-size", "8", "--num-instances", "2", "--num-workers", "0",
            "--max-iters", "2", *extra]


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def trained_run(market_root, tmp_path_factory) -> Path:
    """One epoch (2 iterations) of bot_r50 at 64x32 on the tiny dataset; returns the run folder."""
    from reid_models import train

    out = tmp_path_factory.mktemp("run")
    train.main(train.get_args_parser().parse_args(train_args(market_root, out)))
    return out
