"""CUHK03 (Li et al., CVPR 2014) under the new protocol of Zhong et al. (CVPR 2017): 767 training
ids, 700 test ids, one query per id and camera; ``variant`` picks the hand-``labeled`` or the
DPM-``detected`` boxes.

Two published layouts are read (root = the folder shown or its parent):

1. The pre-extracted CUHK03-NP release (Market-style)::

       cuhk03-np/{labeled,detected}/{bounding_box_train,query,bounding_box_test}/0001_c1_1.png

   (person id, camera c1/c2, image index). Labeled: 7,368 train / 1,400 query / 5,328 gallery.

2. The raw release plus the protocol files::

       cuhk03/
           cuhk03_new_protocol_config_labeled.mat    (filelist, labels, train_idx, query_idx,
           cuhk03_new_protocol_config_detected.mat    gallery_idx; indices 1-based)
           images_labeled/ images_detected/           1_001_1_01.png = pair_pid_view_image
           cuhk03_release/cuhk-03.mat                 MATLAB v7.3 (HDF5) image cells

   If ``images_<variant>/`` is absent it is extracted once from ``cuhk-03.mat`` (needs the
   optional ``h5py`` package), written to a ``.partial`` folder and renamed when complete.

Camera ids are the view within the camera pair (0 or 1), as in both releases; person ids are
unique across pairs, so the protocol's same-id-same-camera exclusion is unaffected.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .base import (
    Item,
    ReIDDataset,
    check_root,
    find_dataset_dir,
    layout_error,
    make_dataset,
    parse_named_folder,
)

NAME = "CUHK03"
VARIANTS = ("labeled", "detected")
SUBDIRS = ("bounding_box_train", "query", "bounding_box_test")
NP_EXAMPLE = "0001_c1_1.png"
NP_PATTERN = re.compile(r"(?P<pid>\d+)_c(?P<cam>\d)_\d+\.(?:png|jpg)")
NP_FOLDER_NAMES = ("cuhk03-np", "CUHK03-NP", "cuhk03_np", "cuhk03np")
RAW_FOLDER_NAMES = ("cuhk03", "CUHK03")
RAW_EXAMPLE = "1_001_1_01.png"
RAW_PATTERN = re.compile(r"(?P<pair>\d)_(?P<pid>\d+)_(?P<view>[12])_(?P<image>\d+)\.png")
CONFIG_NAME = "cuhk03_new_protocol_config_{}.mat"
RAW_MAT = Path("cuhk03_release") / "cuhk-03.mat"
CONFIG_KEYS = ("filelist", "labels", "train_idx", "query_idx", "gallery_idx")


def read_cuhk03(root: str | os.PathLike, variant: str = "labeled") -> ReIDDataset:
    """Read CUHK03 new protocol, ``variant`` 'labeled' or 'detected', from either layout."""
    if variant not in VARIANTS:
        raise ValueError(f"CUHK03: variant must be one of {VARIANTS}, got {variant!r}")
    root = check_root(NAME, root)
    np_dir = _find_np_dir(root, variant)
    if np_dir is not None:
        return _read_np(np_dir, variant)
    raw_dir = _find_raw_dir(root, variant)
    if raw_dir is not None:
        return _read_raw(raw_dir, variant)
    config = CONFIG_NAME.format(variant)
    raise layout_error(
        NAME,
        f"expected {root / NP_FOLDER_NAMES[0] / variant}/bounding_box_train with images named {NP_EXAMPLE} "
        f"(pre-extracted new protocol), or {root / config} with {root / ('images_' + variant)} "
        f"or {root / RAW_MAT} (raw release)",
    )


def _find_np_dir(root: Path, variant: str) -> Path | None:
    """The ``<cuhk03-np>/<variant>`` folder if root points at it, at cuhk03-np, or at its parent."""
    candidates = [root / variant] + [root / name / variant for name in NP_FOLDER_NAMES]
    if root.name == variant:
        candidates.insert(0, root)
    for candidate in candidates:
        if candidate.is_dir():
            return find_dataset_dir(NAME, candidate, SUBDIRS, (), NP_EXAMPLE)
    return None


def _read_np(folder: Path, variant: str) -> ReIDDataset:
    def read(sub: str) -> list[Item]:
        return parse_named_folder(NAME, folder / sub, NP_PATTERN, NP_EXAMPLE, 2, (".png", ".jpg"))

    return make_dataset(f"cuhk03_{variant}", read("bounding_box_train"), read("query"), read("bounding_box_test"))


def _find_raw_dir(root: Path, variant: str) -> Path | None:
    """The folder holding the protocol .mat files (root or root/cuhk03)."""
    for candidate in [root] + [root / name for name in RAW_FOLDER_NAMES]:
        has_any = any((candidate / CONFIG_NAME.format(v)).is_file() for v in VARIANTS)
        if has_any or (candidate / RAW_MAT).is_file():
            if not (candidate / CONFIG_NAME.format(variant)).is_file():
                raise layout_error(
                    NAME, f"expected {candidate / CONFIG_NAME.format(variant)} (new-protocol split of Zhong et al.)"
                )
            return candidate
    return None


def _cell_str(value: object) -> str:
    """A MATLAB cell string as loaded by scipy (nested 1-element arrays) -> str."""
    while isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size else ""
    return str(value).strip()


def _load_config(path: Path) -> dict[str, np.ndarray]:
    """Load a new-protocol .mat: filelist (names), labels (pids), *_idx (0-based int arrays)."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        mat = loadmat(str(path))
    except (MatReadError, NotImplementedError, ValueError, OSError, TypeError) as exc:
        raise layout_error(NAME, f"cannot read {path} as a MATLAB file ({exc})") from None
    missing = [key for key in CONFIG_KEYS if key not in mat]
    if missing:
        raise layout_error(NAME, f"{path} lacks the field(s) {', '.join(missing)}; expected {', '.join(CONFIG_KEYS)}")
    config = {
        "filelist": np.array([_cell_str(v) for v in mat["filelist"].ravel()], dtype=object),
        "labels": np.asarray(mat["labels"]).ravel().astype(np.int64),
    }
    for key in ("train_idx", "query_idx", "gallery_idx"):
        config[key] = np.asarray(mat[key]).ravel().astype(np.int64) - 1  # MATLAB 1-based
        if config[key].size and (config[key].min() < 0 or config[key].max() >= len(config["filelist"])):
            raise layout_error(NAME, f"{path}: {key} indexes outside filelist (1..{len(config['filelist'])})")
    if len(config["labels"]) != len(config["filelist"]):
        raise layout_error(NAME, f"{path}: labels and filelist differ in length")
    return config


def _read_raw(folder: Path, variant: str) -> ReIDDataset:
    config_path = folder / CONFIG_NAME.format(variant)
    config = _load_config(config_path)
    names = list(config["filelist"])
    for name in names:
        if RAW_PATTERN.fullmatch(name) is None:
            raise layout_error(NAME, f"{config_path} lists {name!r}, expected names like {RAW_EXAMPLE}")
    image_dir = folder / f"images_{variant}"
    if not image_dir.is_dir():
        mat_path = folder / RAW_MAT
        if not mat_path.is_file():
            raise layout_error(
                NAME, f"expected {image_dir} with images named {RAW_EXAMPLE}, or {mat_path} to extract them from"
            )
        extract_images(mat_path, names, image_dir, variant)
    for name in names:
        if not (image_dir / name).is_file():
            raise layout_error(
                NAME, f"{image_dir / name} listed in {config_path.name} is missing; "
                f"delete {image_dir} to extract it again from {RAW_MAT}"
            )

    def subset(key: str) -> list[Item]:
        items = []
        for index in config[key]:
            view = int(RAW_PATTERN.fullmatch(names[index])["view"])
            items.append((str(image_dir / names[index]), int(config["labels"][index]), view - 1))
        return items

    return make_dataset(f"cuhk03_{variant}", subset("train_idx"), subset("query_idx"), subset("gallery_idx"))


def extract_images(mat_path: Path, names: list[str], out_dir: Path, variant: str) -> None:
    """Write the images ``names`` (``pair_pid_view_image.png``) of ``variant`` from cuhk-03.mat as PNG.

    cuhk-03.mat (MATLAB v7.3 / HDF5): ``mat[variant][0][pair]`` -> cell (num_pids, 10) of image
    references; image k (1..10) of a person is from view 1 for k <= 5, view 2 otherwise; each image
    is stored transposed, (3, W, H) uint8 RGB. Written to ``<out_dir>.partial`` then renamed.
    """
    try:
        import h5py
    except ImportError:
        raise layout_error(
            NAME, f"extracting images from {mat_path} (MATLAB v7.3) needs h5py: pip install h5py; "
            f"or use the pre-extracted cuhk03-np folders"
        ) from None
    import cv2
    from tqdm import tqdm

    partial = out_dir.with_name(out_dir.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    try:
        with h5py.File(mat_path, "r") as mat:
            if variant not in mat:
                raise layout_error(NAME, f"{mat_path} has no '{variant}' image cells")
            pair_refs = mat[variant][0]
            pairs: dict[int, np.ndarray] = {}
            for name in tqdm(names, desc=f"CUHK03: extracting {variant} images", unit="img"):
                target = partial / name
                if target.is_file():
                    continue  # left by an interrupted extraction
                match = RAW_PATTERN.fullmatch(name)
                pair, pid, image = int(match["pair"]) - 1, int(match["pid"]) - 1, int(match["image"]) - 1
                if pair not in pairs:
                    pairs[pair] = mat[pair_refs[pair]][()].T  # (num_pids, 10) references
                pixels = mat[pairs[pair][pid, image]][()].T  # (H, W, 3) RGB
                if pixels.ndim != 3 or pixels.size == 0:
                    raise layout_error(NAME, f"{mat_path} holds no {variant} image for {name}")
                writing = partial / f".{name}"  # renamed once complete, so a crash leaves no half file
                if not cv2.imwrite(str(writing), np.ascontiguousarray(pixels[..., ::-1])):
                    raise OSError(f"cannot write {writing}")
                os.replace(writing, target)
    except (KeyError, IndexError, OSError) as exc:
        raise layout_error(NAME, f"cannot extract images from {mat_path} into {out_dir} ({exc})") from None
    partial.rename(out_dir)
