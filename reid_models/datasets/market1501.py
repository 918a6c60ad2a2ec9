"""Market-1501 (Zheng et al., ICCV 2015) from its published folder layout.

Layout (root = the dataset folder or its parent)::

    Market-1501-v15.09.15/
        bounding_box_train/   12,936 images of 751 ids
        query/                 3,368 images of 750 ids
        bounding_box_test/    19,732 images (15,913 once the 3,819 junk -1 images are dropped;
                          2,793 of those left are 0000 distractors)

File names ``0002_c1s1_000451_03.jpg``: person id, camera c1..c6 and sequence s1..s6, frame,
box index. Person id ``-1`` marks junk boxes (dropped: the protocol ignores them) and ``0000``
distractors (kept in the gallery as true negatives). Cameras become camid 0..5.
"""
from __future__ import annotations

import os
import re

from .base import Item, ReIDDataset, check_root, find_dataset_dir, make_dataset, parse_named_folder

NAME = "Market-1501"
EXAMPLE = "0002_c1s1_000451_03.jpg"
PATTERN = re.compile(r"(?P<pid>-?\d+)_c(?P<cam>\d)s\d+_\d+_\d+\.jpg")
FOLDER_NAMES = ("Market-1501-v15.09.15", "market1501/Market-1501-v15.09.15", "market1501", "Market-1501")
SUBDIRS = ("bounding_box_train", "query", "bounding_box_test")


def read_market1501(root: str | os.PathLike, keep_junk: bool = False) -> ReIDDataset:
    """Read Market-1501; ``keep_junk=True`` keeps the pid -1 gallery boxes (the protocol ignores them)."""
    base = find_dataset_dir(NAME, check_root(NAME, root), SUBDIRS, FOLDER_NAMES, EXAMPLE)

    def read(sub: str, drop_junk: bool) -> list[Item]:
        return parse_named_folder(NAME, base / sub, PATTERN, EXAMPLE, 6, (".jpg",), drop_junk)

    train = [item for item in read("bounding_box_train", True) if item[1] > 0]  # no junk/background in train
    query = read("query", True)
    gallery = read("bounding_box_test", not keep_junk)
    return make_dataset("market1501", train, query, gallery)
