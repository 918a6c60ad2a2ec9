"""Partial person re-ID test sets (no training split: models are trained on Market-1501).

Partial-REID (Zheng et al., ICCV 2015), 60 ids, 5 partial + 5 whole-body images each::

    Partial_REID/partial_body_images/001_01.jpg     query  (person id _ image index)
    Partial_REID/whole_body_images/001_01.jpg       gallery

Partial-iLIDS (He et al., CVPR 2018, from iLIDS), 119 ids, one probe and one gallery image each::

    PartialiLIDS/Probe/001.jpg                      query  (person id)
    PartialiLIDS/Gallery/001.jpg                    gallery

Root = the folder shown or its parent. The releases carry no camera ids; as in the usual
evaluation code, queries get camid 0 and gallery images camid 1, so no gallery image is
excluded by the Market-1501 same-camera rule.
"""
from __future__ import annotations

import os
import re

from .base import ReIDDataset, check_root, find_dataset_dir, make_dataset, parse_named_folder

REID_NAME = "Partial-REID"
REID_FOLDERS = ("Partial_REID", "Partial-REID_Dataset", "PartialREID", "partial_reid")
REID_SUBDIRS = ("partial_body_images", "whole_body_images")
REID_EXAMPLE = "001_01.jpg"
REID_PATTERN = re.compile(r"(?P<pid>\d+)_\d+\.\w+")

ILIDS_NAME = "Partial-iLIDS"
ILIDS_FOLDERS = ("PartialiLIDS", "Partial_iLIDS", "Partial-iLIDS", "partial_ilids")
ILIDS_SUBDIRS = ("Probe", "Gallery")
ILIDS_EXAMPLE = "001.jpg"
ILIDS_PATTERN = re.compile(r"(?P<pid>\d+)\.\w+")


def read_partial_reid(root: str | os.PathLike) -> ReIDDataset:
    """Read Partial-REID: partial-body queries against whole-body gallery; train is empty."""
    base = find_dataset_dir(REID_NAME, check_root(REID_NAME, root), REID_SUBDIRS, REID_FOLDERS, REID_EXAMPLE)
    query = parse_named_folder(REID_NAME, base / "partial_body_images", REID_PATTERN, REID_EXAMPLE, None, camid=0)
    gallery = parse_named_folder(REID_NAME, base / "whole_body_images", REID_PATTERN, REID_EXAMPLE, None, camid=1)
    return make_dataset("partial_reid", [], query, gallery)


def read_partial_ilids(root: str | os.PathLike) -> ReIDDataset:
    """Read Partial-iLIDS: Probe (occluded) queries against Gallery; train is empty."""
    base = find_dataset_dir(ILIDS_NAME, check_root(ILIDS_NAME, root), ILIDS_SUBDIRS, ILIDS_FOLDERS, ILIDS_EXAMPLE)
    query = parse_named_folder(ILIDS_NAME, base / "Probe", ILIDS_PATTERN, ILIDS_EXAMPLE, None, camid=0)
    gallery = parse_named_folder(ILIDS_NAME, base / "Gallery", ILIDS_PATTERN, ILIDS_EXAMPLE, None, camid=1)
    return make_dataset("partial_ilids", [], query, gallery)

