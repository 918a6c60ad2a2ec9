"""The dataset record every reader returns, its layout error, and helpers shared by the readers.

An item is ``(img_path: str, pid: int, camid: int)``. Train pids are relabelled to 0..N-1 (sorted
by original id); query and gallery keep the dataset's own ids so results can be compared with
the dataset's identity numbers. Camera ids are 0-based.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..common import IMAGE_EXTENSIONS, one_line

Item = tuple[str, int, int]

README_HINT = "see README 'Datasets'"


class DatasetLayoutError(ValueError):
    """A dataset folder or file is missing or not in the published layout (one-line message)."""


def layout_error(dataset: str, message: str) -> DatasetLayoutError:
    """Build the one-line error: ``"<dataset>: <message>; see README 'Datasets'"``."""
    return DatasetLayoutError(f"{dataset}: {one_line(message)}; {README_HINT}")


@dataclass(frozen=True)
class ReIDDataset:
    """Train/query/gallery lists of ``(img_path, pid, camid)`` items.

    num_train_pids: identities in train (train pids are 0..num_train_pids-1).
    num_train_cams: distinct cameras in train.
    name: the reader's name (e.g. ``"market1501"``).
    """

    train: list[Item]
    query: list[Item]
    gallery: list[Item]
    num_train_pids: int
    num_train_cams: int
    name: str = ""

    @property
    def num_query_pids(self) -> int:
        return len({pid for _, pid, _ in self.query})

    @property
    def num_gallery_pids(self) -> int:
        return len({pid for _, pid, _ in self.gallery})

    def summary(self) -> str:
        """A small table: subset | ids | images | cameras."""
        lines = [f"{self.name or 'dataset'}", "  subset   |   ids | images | cameras"]
        for subset, items in (("train", self.train), ("query", self.query), ("gallery", self.gallery)):
            ids = len({pid for _, pid, _ in items})
            cams = len({cam for _, _, cam in items})
            lines.append(f"  {subset:<8} | {ids:5d} | {len(items):6d} | {cams:7d}")
        return "\n".join(lines)


def relabel(items: Iterable[Item]) -> list[Item]:
    """Map pids to 0..N-1 in sorted order of the original ids."""
    items = list(items)
    pid2label = {pid: label for label, pid in enumerate(sorted({pid for _, pid, _ in items}))}
    return [(path, pid2label[pid], camid) for path, pid, camid in items]


def make_dataset(name: str, train: Sequence[Item], query: Sequence[Item], gallery: Sequence[Item]) -> ReIDDataset:
    """Relabel train pids and count train identities and cameras."""
    train = relabel(train)
    return ReIDDataset(
        train=train,
        query=list(query),
        gallery=list(gallery),
        num_train_pids=len({pid for _, pid, _ in train}),
        num_train_cams=len({cam for _, _, cam in train}),
        name=name,
    )


def check_root(dataset: str, root: str | os.PathLike) -> Path:
    """Return ``root`` as an absolute Path; error if it does not exist."""
    path = Path(root).expanduser()
    if not path.exists():
        raise layout_error(dataset, f"data root {path} does not exist")
    return path.resolve()


def find_dataset_dir(
    dataset: str,
    root: Path,
    subdirs: Sequence[str],
    folder_names: Sequence[str],
    example: str,
) -> Path:
    """Find the folder holding all ``subdirs``: ``root`` itself or ``root/<one of folder_names>``.

    ``folder_names`` may hold nested names such as ``"market1501/Market-1501-v15.09.15"``.
    Raises DatasetLayoutError naming the first missing subfolder and the expected file names.
    """
    candidates = [root] + [root / name for name in folder_names]
    for candidate in candidates:
        if all((candidate / sub).is_dir() for sub in subdirs):
            return candidate
    # Report against the candidate that has most of the subfolders (or the conventional one).
    best = max(candidates, key=lambda c: sum((c / s).is_dir() for s in subdirs))
    if not any((best / s).is_dir() for s in subdirs) and folder_names:
        best = root / folder_names[0]
    missing = next(s for s in subdirs if not (best / s).is_dir())
    hint = f" (root = the {Path(folder_names[0]).name} folder or its parent)" if folder_names else ""
    raise layout_error(dataset, f"expected folder {best / missing} with images named {example}{hint}")


def list_images(folder: Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(
        entry for entry in folder.iterdir() if entry.is_file() and entry.suffix.lower() in extensions
    )


def parse_named_folder(
    dataset: str,
    folder: Path,
    pattern: re.Pattern[str],
    example: str,
    num_cams: int | None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    drop_junk: bool = True,
    *,
    camid: int | None = None,
) -> list[Item]:
    """Read a folder of images whose names carry the person id (and camera), e.g. Market's ``<pid>_c<cam>``.

    ``pattern`` must have groups ``pid`` and ``cam`` (1-based), or only ``pid`` when ``camid`` gives
    the 0-based camera of every image (releases without camera ids). pid -1 (junk) is dropped unless
    ``drop_junk`` is False. An empty folder, a file with another name, or a camera outside
    1..num_cams is an error.
    """
    files = list_images(folder, extensions)
    if not files:
        raise layout_error(dataset, f"no images in {folder}; expected files named {example}")
    items: list[Item] = []
    for path in files:
        match = pattern.fullmatch(path.name)
        if match is None:
            raise layout_error(dataset, f"file {path} is not named like {example}")
        pid, cam = int(match["pid"]), camid
        if cam is None:
            cam = int(match["cam"]) - 1
            if cam < 0 or (num_cams is not None and cam >= num_cams):
                cams = f"c1..c{num_cams}" if num_cams else "c1 or higher"
                raise layout_error(dataset, f"file {path} has camera c{cam + 1}, expected {cams}")
        if pid == -1 and drop_junk:
            continue
        items.append((str(path), pid, cam))
    return items
