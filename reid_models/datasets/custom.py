"""A user's own dataset, e.g. person crops from their cameras, in one of two forms.

1. A Market-style folder (root = that folder)::

       bounding_box_train/  query/  bounding_box_test/
       file names <pid>_c<camera>..., e.g. 0001_c1_f000123.jpg or 0002_c3s1_000451_03.png

   Cameras are numbered from 1 (c1 -> camid 0). pid -1 marks junk (skipped). Train alone, or
   query + gallery alone, is allowed.

2. A CSV file (root = the .csv, or a folder holding exactly one .csv) with the header
   ``path,pid,camid,split``: image path relative to the CSV's folder (or absolute), integer
   person id (-1 = junk, skipped), integer camera id (>= 0, used as is), and split
   ``train``, ``query`` or ``gallery``.
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from ..common import IMAGE_EXTENSIONS
from .base import Item, ReIDDataset, check_root, layout_error, make_dataset, parse_named_folder

NAME = "custom"
EXAMPLE = "0001_c1_f000123.jpg"
PATTERN = re.compile(r"(?P<pid>-?\d+)_c(?P<cam>\d+)(?:\D.*)?\.\w+")
SUBDIRS = ("bounding_box_train", "query", "bounding_box_test")
CSV_COLUMNS = ("path", "pid", "camid", "split")
SPLITS = ("train", "query", "gallery")


def read_custom(root: str | os.PathLike) -> ReIDDataset:
    """Read a Market-style folder or a ``path,pid,camid,split`` CSV (see the module docstring)."""
    root = check_root(NAME, root)
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise layout_error(NAME, f"{root} is a file but not a .csv with header {','.join(CSV_COLUMNS)}")
        return read_csv(root)
    present = [sub for sub in SUBDIRS if (root / sub).is_dir()]
    if present:
        return _read_folder(root, present)
    csv_files = sorted(root.glob("*.csv"))
    if len(csv_files) == 1:
        return read_csv(csv_files[0])
    if len(csv_files) > 1:
        names = ", ".join(path.name for path in csv_files)
        raise layout_error(NAME, f"{root} holds several CSV files ({names}); pass the one to use as the data root")
    raise layout_error(
        NAME,
        f"expected {root}/bounding_box_train and/or {root}/query + {root}/bounding_box_test with images named "
        f"{EXAMPLE}, or a CSV file with header {','.join(CSV_COLUMNS)}",
    )


def _read_folder(root: Path, present: list[str]) -> ReIDDataset:
    has_test = "query" in present and "bounding_box_test" in present
    if ("query" in present or "bounding_box_test" in present) and not has_test:
        missing = "query" if "query" not in present else "bounding_box_test"
        raise layout_error(NAME, f"expected folder {root / missing} next to {root / present[-1]}")

    def read(sub: str) -> list[Item]:
        if sub not in present:
            return []
        return parse_named_folder(NAME, root / sub, PATTERN, EXAMPLE, None, IMAGE_EXTENSIONS)

    return make_dataset("custom", read("bounding_box_train"), read("query"), read("bounding_box_test"))


def read_csv(csv_path: Path) -> ReIDDataset:
    """Read a ``path,pid,camid,split`` CSV; paths relative to the CSV's folder."""
    splits: dict[str, list[Item]] = {split: [] for split in SPLITS}
    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        header = tuple(name.strip() for name in (reader.fieldnames or ()))
        if sorted(header) != sorted(CSV_COLUMNS):
            raise layout_error(
                NAME, f"{csv_path} has header {','.join(header) or '(none)'}; expected {','.join(CSV_COLUMNS)}"
            )
        for number, row in enumerate(reader, start=2):
            row = {key.strip(): (value or "").strip() for key, value in row.items() if key is not None}
            where = f"{csv_path}:{number}"
            split = row["split"]
            if split not in SPLITS:
                raise layout_error(NAME, f"{where}: split {split!r} is not one of {', '.join(SPLITS)}")
            try:
                pid, camid = int(row["pid"]), int(row["camid"])
            except ValueError:
                message = f"{where}: pid {row['pid']!r} and camid {row['camid']!r} must be integers"
                raise layout_error(NAME, message) from None
            if camid < 0:
                raise layout_error(NAME, f"{where}: camid {camid} must be >= 0")
            path = Path(row["path"]).expanduser()
            path = path if path.is_absolute() else csv_path.parent / path
            if not path.is_file():
                raise layout_error(NAME, f"{where}: image {path} is missing (paths are relative to the CSV's folder)")
            if pid == -1:
                continue
            if pid < 0:
                raise layout_error(NAME, f"{where}: pid {pid} must be >= 0 (or -1 for junk)")
            splits[split].append((str(path.resolve()), pid, camid))
    if not any(splits.values()):
        raise layout_error(NAME, f"{csv_path} lists no images; expected rows like 'crops/0001_a.jpg,1,0,train'")
    if bool(splits["query"]) != bool(splits["gallery"]):
        empty = "query" if not splits["query"] else "gallery"
        raise layout_error(NAME, f"{csv_path} has no {empty} rows; evaluation needs both query and gallery rows")
    return make_dataset("custom", splits["train"], splits["query"], splits["gallery"])
