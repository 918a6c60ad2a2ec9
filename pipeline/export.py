"""Export a store as MOTChallenge, AI City Challenge MTMC or Market-1501-style re-ID data.

Formats (``out_dir``, new or empty, appears whole or not at all; frames are written 1-based as those
formats expect):

- ``mot``: one ``<camera>.txt`` per camera (MOTChallenge results), lines
  ``frame,id,x,y,w,h,conf,-1,-1,-1`` with (x, y) the top-left corner. ``id`` is the camera-local
  track renumbered 1..K per camera in (run, local id) order, so tracks of different runs never share
  an id; ``mot_ids.csv`` maps it back to the store (track pk, run, local id, global id). Frames of
  different runs of one camera share one numbering: pass ``run_id`` to export a single run.
- ``mtmc``: one ``mtmc.txt`` in the AI City Challenge multi-camera format
  ``camera_id obj_id frame x y w h -1 -1`` (integers), ``obj_id`` = global identity.
  ``cameras.txt`` maps the integer camera ids (1-based, cameras sorted by id) to the store's
  camera ids. Tracks without a global identity (still open, or with too few samples to be
  associated) are skipped: the format is about identities across cameras.
- Boxes of ``mot`` and ``mtmc`` are cut to the camera's frame (its width and height in the cameras
  table); a box left with no area is dropped. :func:`camera_boxes` is that box list, for scoring.
- ``reid``: a Market-1501 folder (``bounding_box_train/``, ``query/``, ``bounding_box_test/``) of
  the samples' thumbnails named ``{pid:04d}_c{cam}s1_{frame:06d}_{k:02d}.jpg`` with pid = global
  identity and cam = 1-based camera index (``cameras.txt``). Market names hold one camera digit, so
  at most 9 cameras can be exported (choose them with ``cameras=``). Identities seen on >= 2
  cameras are split by identity between train and test (``test_fraction``); identities seen on
  one camera go to train. For each test identity one sample per camera with >= 2 samples becomes
  a query (at least one query per identity), the rest is the gallery, so every query has a
  same-identity gallery image from another camera. ``python -m reid_models.train --dataset custom
  --data-root OUT`` reads the folder as is (so does ``--dataset market1501`` for <= 6 cameras).
"""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.store import StoreReader
from reid_models.common import UserError, atomic_output

FORMATS = ("mot", "mtmc", "reid")
MARKET_SPLITS = ("bounding_box_train", "query", "bounding_box_test")


def _safe_name(camera_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", camera_id) or "camera"


@dataclass(frozen=True)
class CameraBoxes:
    """The N boxes of one camera as ``mot`` / ``mtmc`` write them, ordered by (frame, track).

    frame: (N,) int64 1-based (source frame + 1). track: (N,) int64 store track ids (primary keys).
    xywh: (N, 4) float64 top-left x, y, width, height in source-frame pixels, cut to the frame.
    confidence: (N,) float32.
    """

    frame: np.ndarray
    track: np.ndarray
    xywh: np.ndarray
    confidence: np.ndarray


def _frame_sizes(store: StoreReader) -> dict[str, tuple[float, float]]:
    """camera id -> (width, height) pixels, for cameras whose size is known."""
    out = {}
    for cam, _, meta in store.cameras():
        if meta.get("width") and meta.get("height"):
            out[cam] = (float(meta["width"]), float(meta["height"]))
    return out


def camera_boxes(store: StoreReader, tracks) -> dict[str, CameraBoxes]:
    """The boxes of ``tracks`` (TrackRecords) per camera, clipped to the camera's frame (see module docstring)."""
    sizes = _frame_sizes(store)
    by_cam: dict[str, list[int]] = defaultdict(list)
    for t in tracks:
        by_cam[t.camera_id].append(t.id)
    out = {}
    for cam in sorted(by_cam):
        b = store.boxes(by_cam[cam])
        xyxy = b.xyxy.astype(np.float64)
        if cam in sizes:
            w, h = sizes[cam]
            xyxy = np.clip(xyxy, 0.0, np.array([w, h, w, h]))
        wh = xyxy[:, 2:] - xyxy[:, :2]
        keep = (wh > 0).all(axis=1)
        order = np.flatnonzero(keep)[np.lexsort((b.track_id[keep], b.frame[keep]))]
        out[cam] = CameraBoxes(b.frame[order] + 1, b.track_id[order],
                               np.concatenate([xyxy[order, :2], wh[order]], axis=1).reshape(-1, 4),
                               b.confidence[order])
    return out


def export_store(store: StoreReader, fmt: str, out_dir: str | Path, run_id: int | None = None,
                 cameras: Sequence[str] | None = None, test_fraction: float = 0.5, seed: int = 0) -> dict[str, int]:
    """Write the store (optionally one run, some cameras) in ``fmt``; returns counts of what was written.

    ``out_dir`` must be a new or empty folder (else UserError, as for an unknown run or camera). The
    export is written into a temporary folder beside it and renamed at the end, so a failed export
    leaves nothing behind.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    out = Path(out_dir)
    if out.is_symlink():
        out = out.resolve()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out} is not empty: export to a new or empty folder")
    store.check_run(run_id)
    store.check_cameras(cameras)
    tracks = store.tracks(camera=cameras, run_id=run_id)
    with atomic_output(out) as tmp:
        tmp.mkdir()
        if fmt == "mot":
            return _export_mot(store, tracks, tmp)
        if fmt == "mtmc":
            return _export_mtmc(store, [t for t in tracks if t.global_id is not None], tmp)
        return _export_reid(store, [t for t in tracks if t.global_id is not None and t.n_samples > 0], tmp,
                            test_fraction, seed)


def _camera_index(tracks, out: Path, limit: int | None = None) -> dict[str, int]:
    cams = sorted({t.camera_id for t in tracks})
    if limit is not None and len(cams) > limit:
        raise ValueError(f"Market-1501 names hold one camera digit, so reid export takes at most {limit} cameras; "
                         f"this export has {len(cams)}: pass fewer cameras (--camera)")
    index = {c: k + 1 for k, c in enumerate(cams)}
    (out / "cameras.txt").write_text("".join(f"{k} {c}\n" for c, k in index.items()))
    return index


def _export_mot(store: StoreReader, tracks, out: Path) -> dict[str, int]:
    by_cam: dict[str, list] = defaultdict(list)
    for t in tracks:
        by_cam[t.camera_id].append(t)
    n_lines = 0
    mapping = ["camera_id,mot_id,track_pk,run_id,local_id,global_id"]
    names: set[str] = set()
    for cam in sorted(by_cam):
        cam_tracks = sorted(by_cam[cam], key=lambda t: (t.run_id, t.local_id))
        mot_id = {t.id: k + 1 for k, t in enumerate(cam_tracks)}
        for t in cam_tracks:
            mapping.append(f"{cam},{mot_id[t.id]},{t.id},{t.run_id},{t.local_id},"
                           f"{'' if t.global_id is None else t.global_id}")
        b = camera_boxes(store, cam_tracks).get(cam)
        lines = [] if b is None else [
            f"{b.frame[k]},{mot_id[int(b.track[k])]},{b.xywh[k, 0]:.2f},{b.xywh[k, 1]:.2f},{b.xywh[k, 2]:.2f},"
            f"{b.xywh[k, 3]:.2f},{b.confidence[k]:.4f},-1,-1,-1\n" for k in range(len(b.frame))]
        name = _safe_name(cam)
        while name in names:  # two ids that sanitise alike
            name += "_"
        names.add(name)
        (out / f"{name}.txt").write_text("".join(lines))
        n_lines += len(lines)
    (out / "mot_ids.csv").write_text("\n".join(mapping) + "\n")
    return {"cameras": len(by_cam), "tracks": len(tracks), "boxes": n_lines}


def _export_mtmc(store: StoreReader, tracks, out: Path) -> dict[str, int]:
    index = _camera_index(tracks, out)
    gid_of = {t.id: t.global_id for t in tracks}
    rows, xywh = [np.zeros((0, 3), np.int64)], [np.zeros((0, 4), np.int64)]
    for cam, b in camera_boxes(store, tracks).items():
        gids = np.array([gid_of[int(t)] for t in b.track], np.int64)
        rows.append(np.stack([np.full(len(gids), index[cam], np.int64), gids, b.frame], axis=1))
        xywh.append(np.rint(b.xywh).astype(np.int64))
    rows, xywh = np.concatenate(rows), np.concatenate(xywh)
    order = np.lexsort((rows[:, 1], rows[:, 2], rows[:, 0]))  # camera, frame, identity
    lines = [f"{rows[k, 0]} {rows[k, 1]} {rows[k, 2]} {xywh[k, 0]} {xywh[k, 1]} {xywh[k, 2]} {xywh[k, 3]} -1 -1\n"
             for k in order]
    (out / "mtmc.txt").write_text("".join(lines))
    return {"cameras": len(index), "identities": len({t.global_id for t in tracks}), "tracks": len(tracks),
            "boxes": len(lines)}


def _export_reid(store: StoreReader, tracks, out: Path, test_fraction: float, seed: int) -> dict[str, int]:
    for split in MARKET_SPLITS:
        folder = out / split
        if folder.is_dir() and any(folder.iterdir()):
            raise ValueError(f"{folder} is not empty: export to an empty --out folder")
    if not tracks:
        raise ValueError("the store has no tracks with a global identity and samples: run association first "
                         "(python -m pipeline run ends with it)")
    index = _camera_index(tracks, out, limit=9)
    cam_of = {t.id: index[t.camera_id] for t in tracks}
    gid_of = {t.id: t.global_id for t in tracks}
    s = store.samples_of([t.id for t in tracks], thumbnails=True)
    # identity -> camera -> sample positions (with a thumbnail)
    by_id: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for k, tid in enumerate(s.track_id):
        if s.thumbnails[k]:
            by_id[gid_of[int(tid)]][cam_of[int(tid)]].append(k)

    multi = sorted(g for g, cams in by_id.items() if len(cams) >= 2)
    rng = np.random.default_rng(seed)
    multi = [multi[i] for i in rng.permutation(len(multi))]
    n_test = 0 if not multi else min(max(1, round(len(multi) * test_fraction)), max(1, len(multi) - 1))
    test = set(multi[:n_test])

    split_of: dict[int, str] = {}
    for g, cams in by_id.items():
        if g not in test:
            for ks in cams.values():
                split_of.update((k, "bounding_box_train") for k in ks)
            continue
        queries = [ks[len(ks) // 2] for _, ks in sorted(cams.items()) if len(ks) >= 2]
        if not queries:
            queries = [next(iter(sorted(cams.items())))[1][0]]
        for ks in cams.values():
            split_of.update((k, "bounding_box_test") for k in ks)
        split_of.update((k, "query") for k in queries)

    for split in MARKET_SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)
    counts = dict.fromkeys(MARKET_SPLITS, 0)
    used: dict[str, int] = defaultdict(int)
    for k in sorted(split_of):
        tid = int(s.track_id[k])
        stem = f"{gid_of[tid]:04d}_c{cam_of[tid]}s1_{int(s.frame[k]):06d}"
        name = f"{stem}_{used[stem]:02d}.jpg"
        used[stem] += 1
        (out / split_of[k] / name).write_bytes(s.thumbnails[k])
        counts[split_of[k]] += 1
    counts.update(identities=len(by_id), test_identities=len(test), cameras=len(index))
    return counts
