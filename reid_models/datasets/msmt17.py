"""MSMT17 (Wei et al., CVPR 2018), V1 and V2 (faces blurred), from the published list files.

Layout (root = the version folder or its parent)::

    MSMT17_V1/                         MSMT17_V2/
        train/  test/                      mask_train_v2/  mask_test_v2/
        list_train.txt  list_val.txt       list_train.txt  list_val.txt
        list_query.txt  list_gallery.txt   list_query.txt  list_gallery.txt

Each list line is ``<path relative to train|test folder> <pid>``, e.g.
``0000/0000_000_01_0303morning_0015_0.jpg 0``; the file name's third field is the camera
(01..15 -> camid 0..14). Train: list_train (30,248 images of 1,041 ids); the official split also
counts list_val (2,373 images of the same ids) as training data, but the common re-ID
convention (torchreid, fast-reid) trains on list_train only: ``include_val=True`` adds it.
Query 11,659 and gallery 82,161 images of 3,060 test ids (their own pid numbering).
"""
from __future__ import annotations

import os
from pathlib import Path

from .base import Item, ReIDDataset, check_root, layout_error, make_dataset

NAME = "MSMT17"
VERSIONS = {"v1": ("MSMT17_V1", "train", "test"), "v2": ("MSMT17_V2", "mask_train_v2", "mask_test_v2")}
LISTS = ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")
EXAMPLE_LINE = "0000/0000_000_01_0303morning_0015_0.jpg 0"
NUM_CAMS = 15


def read_msmt17(root: str | os.PathLike, version: str = "auto", include_val: bool = False) -> ReIDDataset:
    """Read MSMT17 ``version`` 'v1', 'v2' or 'auto' (whichever folder is found, V1 first)."""
    if version not in ("auto", *VERSIONS):
        raise ValueError(f"MSMT17: version must be 'auto', 'v1' or 'v2', got {version!r}")
    root = check_root(NAME, root)
    found = _find_version_dir(root, list(VERSIONS) if version == "auto" else [version])
    if found is None:
        wanted = [VERSIONS[v] for v in (VERSIONS if version == "auto" else [version])]
        expected = " or ".join(
            f"{root / folder} (with {train}/, {test}/, {', '.join(LISTS)})" for folder, train, test in wanted
        )
        raise layout_error(NAME, f"expected {expected}")
    base, (_, train_name, test_name) = found
    for needed in (train_name, test_name):
        if not (base / needed).is_dir():
            raise layout_error(NAME, f"expected image folder {base / needed}")
    for list_name in LISTS:
        if not (base / list_name).is_file():
            raise layout_error(NAME, f"expected list file {base / list_name} with lines like '{EXAMPLE_LINE}'")
    train = _read_list(base / "list_train.txt", base / train_name)
    if include_val:
        train += _read_list(base / "list_val.txt", base / train_name)
    query = _read_list(base / "list_query.txt", base / test_name)
    gallery = _read_list(base / "list_gallery.txt", base / test_name)
    return make_dataset("msmt17", train, query, gallery)


def _find_version_dir(root: Path, versions: list[str]) -> tuple[Path, tuple[str, str, str]] | None:
    for version in versions:
        folder, train_name, _ = VERSIONS[version]
        candidates = [root / folder, root / "msmt17" / folder, root / "MSMT17" / folder]
        if root.name == folder or (root / train_name).is_dir():
            candidates.insert(0, root)
        for candidate in candidates:
            if candidate.is_dir():
                return candidate, VERSIONS[version]
    return None


def _read_list(list_path: Path, image_dir: Path) -> list[Item]:
    """Parse ``<relative path> <pid>`` lines; camera from the file name's third field."""
    items: list[Item] = []
    for number, line in enumerate(list_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        where = f"{list_path}:{number}"
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            raise layout_error(NAME, f"{where}: {line.strip()!r} is not '<path> <pid>' like '{EXAMPLE_LINE}'")
        rel_path, pid = fields[0], int(fields[1])
        name_fields = Path(rel_path).name.split("_")
        if len(name_fields) < 3 or not name_fields[2].isdigit() or not 1 <= int(name_fields[2]) <= NUM_CAMS:
            raise layout_error(
                NAME, f"{where}: file name {Path(rel_path).name} has no camera 01..{NUM_CAMS} in its third field "
                f"(expected like 0000_000_01_0303morning_0015_0.jpg)"
            )
        path = image_dir / rel_path
        if not path.is_file():
            raise layout_error(NAME, f"{where}: image {path} is missing")
        items.append((str(path), pid, int(name_fields[2]) - 1))
    if not items:
        raise layout_error(NAME, f"{list_path} lists no images; expected lines like '{EXAMPLE_LINE}'")
    return items
