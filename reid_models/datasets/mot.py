"""Re-ID evaluation on annotated video: MOTChallenge ground truth turned into query/gallery crops.

Protocol (fixed, so every embedder is measured the same way on real footage):

- every ``step``-th video frame (0-based index divisible by ``step``), crop every ground-truth
  person whose box lies fully inside the image and is at least ``min_height`` pixels tall;
- each ``window``-frame span of the video counts as one camera (camid = frame // window);
- one query per (person, window): its middle crop in time; the gallery is all crops;
- standard Market-1501 ranking then excludes gallery crops of the same person AND window.

``root`` holds the video (``*.avi``/``*.mp4``/... or MOTChallenge's ``img1/`` frame folder) and
``gt/gt.txt`` (``frame,id,x,y,w,h,flag,...`` with 1-based frames: GT frame f is video frame f-1).
``video=`` points at a video elsewhere. Crops are written once as JPEGs into a cache folder
(``cache=``, default ``~/.cache/camreid/mot/<root name>-<settings>``) and reused.

MOTChallenge ground truth gives a person who leaves and comes back a new id (PETS09-S2L1's 19 ids are
about 10 people walking circuits), so the protocol above counts a correct match of a re-entered
person as wrong. ``same_person`` (groups of ids that are one person, e.g. ``"2=13,3=11"``, found by
looking at ``identities.png`` of an evaluation) gives each group one label before the queries are
chosen; the protocol is otherwise unchanged.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..common import IMAGE_EXTENSIONS, encode_jpeg, read_image_bgr
from .base import ReIDDataset, check_root, layout_error, make_dataset

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".webm")
DATASET = "mot"


def read_mot_gt(path: str | os.PathLike) -> np.ndarray:
    """MOTChallenge ground truth -> (N, 6) float64 rows ``frame, id, x, y, w, h`` (1-based frames).

    Rows whose flag (7th column) is 0 are ignored, as the benchmark does; where the 8th column is a
    MOT16+ class id (integers 1..12) only pedestrians (class 1) are kept. Raises a DatasetLayoutError
    naming the file on a malformed line.
    """
    path = Path(path)
    rows = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.replace(" ", "").rstrip(",\n").split(",")
            try:
                values = [float(v) for v in parts]
            except ValueError:
                values = []
            if len(values) < 6:
                shown = line.strip()[:60]
                raise layout_error(DATASET, f"{path} line {lineno} is not 'frame,id,x,y,w,h,...': {shown!r}")
            rows.append(values[:8] + [np.nan] * (8 - len(values[:8])))
    if not rows:
        raise layout_error(DATASET, f"{path} holds no boxes")
    table = np.asarray(rows, np.float64)
    keep = ~(table[:, 6] == 0)
    cls = table[:, 7]
    if np.all(np.isfinite(cls)) and np.all(cls == np.round(cls)) and cls.min() >= 1 and cls.max() <= 12:
        keep &= cls == 1
    return table[keep, :6]


def _find_video(root: Path) -> Path:
    if (root / "img1").is_dir():
        return root / "img1"
    videos = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if len(videos) != 1:
        found = "no video" if not videos else f"{len(videos)} videos"
        raise layout_error(DATASET, f"{root} has {found}; expected one video file ({', '.join(VIDEO_EXTENSIONS)}) "
                                    "or an img1/ frame folder beside gt/gt.txt, or pass video=PATH")
    return videos[0]


def _frames(video: Path, wanted: set[int]):
    """Yield ``(index, BGR image)`` for the wanted 0-based frame indices of a video or frame folder."""
    if video.is_dir():
        files = sorted(p for p in video.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        for index in sorted(wanted):
            if index < len(files):
                yield index, read_image_bgr(files[index], "frame")
        return
    import cv2

    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise layout_error(DATASET, f"cannot open video {video}")
    try:
        last = max(wanted) if wanted else -1
        index = 0
        while index <= last:
            ok, image = cap.read()
            if not ok:
                break
            if index in wanted:
                yield index, image
            index += 1
    finally:
        cap.release()


def parse_same_person(spec: str | Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """Groups of ground-truth ids that are one person: ``"2=13,8=14=15"`` (or already a sequence of id
    sequences) -> ``[(2, 13), (8, 14, 15)]``, each sorted. Raises ValueError (one line) on a malformed
    group, a group of one id, or an id in two groups."""
    if isinstance(spec, str):
        groups = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            try:
                groups.append(tuple(int(v) for v in part.split("=")))
            except ValueError:
                raise ValueError(f"same person group {part!r} is not ids joined by '=', e.g. 2=13") from None
    else:
        groups = [tuple(int(v) for v in g) for g in spec]
    seen: set[int] = set()
    out = []
    for g in groups:
        if len(set(g)) < 2:
            raise ValueError(f"same person group {'='.join(map(str, g))} needs two or more different ids")
        twice = seen.intersection(g)
        if twice:
            raise ValueError(f"id {min(twice)} is in two same person groups; join them into one (e.g. 8=14=15)")
        seen.update(g)
        out.append(tuple(sorted(set(g))))
    return out


def read_mot(root: str | os.PathLike, video: str | os.PathLike | None = None, step: int = 5, window: int = 50,
             min_height: int = 40, cache: str | os.PathLike | None = None,
             same_person: str | Sequence[Sequence[int]] = ()) -> ReIDDataset:
    """Query/gallery crops of a MOTChallenge-annotated video (protocol in the module docstring).

    The dataset has no train split. Items are ``(crop path, person label, window index)``: the GT id,
    or with ``same_person`` the smallest id of its group (see the module docstring).
    """
    if step < 1 or window < 1 or min_height < 1:
        raise ValueError(f"step, window and min_height must be >= 1, got {step}, {window}, {min_height}")
    groups = parse_same_person(same_person)
    root = check_root(DATASET, root)
    gt_path = root / "gt" / "gt.txt"
    if not gt_path.is_file():
        raise layout_error(DATASET, f"expected ground truth {gt_path} (MOTChallenge frame,id,x,y,w,h,...)")
    video_path = Path(video).expanduser().resolve() if video is not None else _find_video(root)
    if not video_path.exists():
        raise layout_error(DATASET, f"video {video_path} does not exist")
    gt = read_mot_gt(gt_path)
    known = set(gt[:, 1].astype(int).tolist())
    label = {}
    for g in groups:
        missing = [i for i in g if i not in known]
        if missing:
            raise ValueError(f"same person id {missing[0]} is not an id of {gt_path} (ids {min(known)}..{max(known)})")
        label.update({i: g[0] for i in g})
    settings = f"s{step}-w{window}-h{min_height}"
    key = hashlib.sha1(f"{video_path}|{gt_path.stat().st_mtime_ns}|{settings}".encode()).hexdigest()[:10]
    out = Path(cache) if cache is not None else Path.home() / ".cache" / "camreid" / "mot" / f"{root.name}-{key}"

    frames = (gt[:, 0] - 1).astype(int)
    rows = np.flatnonzero((frames % step == 0) & (gt[:, 5] >= min_height))
    items: list[tuple[str, int, int]] = []
    done_marker = out / ".complete"
    if done_marker.is_file():
        for path in sorted(out.glob("*.jpg")):
            pid, cam, _ = path.stem.split("_")
            items.append((str(path), int(pid), int(cam[1:])))
    else:
        out.mkdir(parents=True, exist_ok=True)
        by_frame: dict[int, list[int]] = {}
        for r in rows:
            by_frame.setdefault(int(frames[r]), []).append(int(r))
        for index, image in _frames(video_path, set(by_frame)):
            h, w = image.shape[:2]
            for r in by_frame[index]:
                x, y, bw, bh = gt[r, 2:6]
                x1, y1, x2, y2 = int(round(x)), int(round(y)), int(round(x + bw)), int(round(y + bh))
                if x1 < 0 or y1 < 0 or x2 > w or y2 > h:
                    continue  # only boxes fully inside the image
                pid, cam = int(gt[r, 1]), index // window
                path = out / f"{pid:04d}_c{cam:03d}_f{index:06d}.jpg"
                path.write_bytes(encode_jpeg(image[y1:y2, x1:x2], quality=95))
                items.append((str(path), pid, cam))
        done_marker.write_text(settings)
    if not items:
        raise layout_error(DATASET, f"no ground-truth box in {gt_path} is fully inside the video frames and at least "
                                    f"{min_height} px tall")
    items = sorted((path, label.get(pid, pid), cam) for path, pid, cam in items)
    query = []
    by_key: dict[tuple[int, int], list[tuple[str, int, int]]] = {}
    for item in items:
        by_key.setdefault((item[1], item[2]), []).append(item)
    for key_items in by_key.values():  # the middle crop in time (a group's ids may share a window)
        key_items.sort(key=lambda item: Path(item[0]).stem.split("_f")[-1])
        query.append(key_items[len(key_items) // 2])
    return make_dataset(DATASET, [], sorted(query), items)
