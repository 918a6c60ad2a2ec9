"""DukeMTMC-reID (Zheng et al., ICCV 2017) from its published folder layout.

Layout (root = the dataset folder or its parent)::

    DukeMTMC-reID/
        bounding_box_train/   16,522 images of 702 ids
        query/                 2,228 images of 702 ids
        bounding_box_test/    17,661 images of 1,110 ids (702 test ids + 408 distractors)

File names ``0001_c2_f0046182.jpg``: person id, camera c1..c8, frame. Cameras become camid 0..7.
"""
from __future__ import annotations

import os
import re

from .base import Item, ReIDDataset, check_root, find_dataset_dir, make_dataset, parse_named_folder

NAME = "DukeMTMC-reID"
EXAMPLE = "0001_c2_f0046182.jpg"
PATTERN = re.compile(r"(?P<pid>-?\d+)_c(?P<cam>\d)_f\d+\.jpg")
FOLDER_NAMES = ("DukeMTMC-reID", "dukemtmc-reid/DukeMTMC-reID", "dukemtmcreid/DukeMTMC-reID", "dukemtmc-reid")
SUBDIRS = ("bounding_box_train", "query", "bounding_box_test")


def read_dukemtmc(root: str | os.PathLike) -> ReIDDataset:
    """Read DukeMTMC-reID."""
    base = find_dataset_dir(NAME, check_root(NAME, root), SUBDIRS, FOLDER_NAMES, EXAMPLE)

    def read(sub: str) -> list[Item]:
        return parse_named_folder(NAME, base / sub, PATTERN, EXAMPLE, 8, (".jpg",))

    return make_dataset("dukemtmc", read("bounding_box_train"), read("query"), read("bounding_box_test"))
