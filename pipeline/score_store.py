"""``python -m pipeline eval``: a store's tracks scored against MOTChallenge ground truth.

Predicted boxes are the MOT export's (:func:`pipeline.export.camera_boxes`: 1-based source frames,
full-frame pixels cut to the frame). Each camera is scored in source-frame numbering against the
ground truth it could see (:func:`pipeline.evaluation.camera_ground_truth`: its start_frame/end_frame,
stride and roi, taken from the run's stored config): HOTA, DetA, AssA, MOTA, IDF1, IDSW, precision,
recall with its local track ids. Across cameras, ground-truth ids name the same person in every
camera (the AI City Challenge MTMC way) and predictions carry global identities; a track without one
counts as an identity of its own. One ground-truth file may serve several cameras (the demo splits
one clip into north and south).
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.evaluation import MotBoxes, camera_ground_truth, plot_cameras, read_mot, score_camera, score_global
from pipeline.export import camera_boxes
from pipeline.store import StoreReader

__all__ = ["CameraWindow", "EvalError", "camera_windows", "evaluate_store", "format_report", "predicted_boxes",
           "restrict_ground_truth"]

CAMERA_KEYS = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW", "precision", "recall")
GLOBAL_KEYS = ("IDF1", "IDP", "IDR", "HOTA")


class EvalError(ValueError):
    """Bad input to ``eval`` (unknown camera or run, unreadable ground truth); the message is one line."""


@dataclass(frozen=True)
class CameraWindow:
    """The source frames a camera of a run saw: [start_frame, end_frame) every ``stride``-th, cropped to roi."""

    start_frame: int = 0
    end_frame: int | None = None
    stride: int = 1
    roi: tuple[int, int, int, int] | None = None

    def frame_count(self, last_frame: int) -> int:
        """Frames the camera saw: its window's, or up to ``last_frame`` (1-based) where the end is unknown."""
        end = self.end_frame if self.end_frame is not None else max(int(last_frame), self.start_frame)
        return len(range(self.start_frame, end, self.stride))


def _pick_run(store: StoreReader, run_id: int | None) -> tuple[int, dict]:
    runs = store.runs()
    if not runs:
        raise EvalError(f"store {store.path} has no runs: run `python -m pipeline run` first")
    by_id = {r[0]: r[3] for r in runs}
    if run_id is None:
        run_id = runs[-1][0]
    if run_id not in by_id:
        raise EvalError(f"no run {run_id} in store {store.path}; its runs are {', '.join(map(str, by_id))}")
    return run_id, by_id[run_id]


def _runs_of_cameras(store: StoreReader, cameras, run_id: int | None) -> dict[str, tuple[int, dict]]:
    """camera -> (run id, its stored config) to score: run ``run_id`` for every camera, or by default
    the last run that had the camera (one worker per camera group writes a PostgreSQL store: each
    camera's last run is another run), else the last run."""
    if run_id is not None:
        picked = _pick_run(store, run_id)
        return {cam: picked for cam in cameras}
    runs = store.runs()
    if not runs:
        raise EvalError(f"store {store.path} has no runs: run `python -m pipeline run` first")
    out = {}
    for cam in cameras:
        having = [r for r in runs if any(isinstance(c, dict) and c.get("id") == cam for c in r[3].get("cameras", []))]
        rid, _, _, config = having[-1] if having else runs[-1]
        out[cam] = (rid, config)
    return out


def camera_windows(store: StoreReader, run_config: dict) -> dict[str, CameraWindow]:
    """camera id -> what it saw in the run whose stored config is ``run_config`` (cameras of the store
    missing from it: the whole source)."""
    meta = {cam: m for cam, _, m in store.cameras()}
    cams = {c["id"]: c for c in run_config.get("cameras", []) if isinstance(c, dict) and "id" in c}
    max_frames = run_config.get("max_frames")
    out = {}
    for cam in meta:
        c = cams.get(cam, {})
        start, stride = int(c.get("start_frame") or 0), int(c.get("stride") or 1)
        end = c.get("end_frame")
        total = meta[cam].get("frame_count")
        if total:
            end = int(total) if end is None else min(int(end), int(total))
        if max_frames:
            end = start + int(max_frames) * stride if end is None else min(end, start + int(max_frames) * stride)
        roi = tuple(int(v) for v in c["roi"]) if c.get("roi") else None
        out[cam] = CameraWindow(start, None if end is None else int(end), stride, roi)  # type: ignore[arg-type]
    return out


def restrict_ground_truth(gt: MotBoxes, window: CameraWindow) -> MotBoxes:
    """The ground truth of the frames and roi a camera saw (stride-skipped frames dropped)."""
    part = camera_ground_truth(gt, window.start_frame, window.end_frame, window.roi)
    if window.stride > 1:
        part = part[(part.frame - 1 - window.start_frame) % window.stride == 0]
    return part


def predicted_boxes(store: StoreReader, run_id: int,
                    top: int | None = None) -> tuple[dict[str, MotBoxes], dict[str, MotBoxes]]:
    """(per camera boxes with local track ids, per camera boxes with global identities) of one run.

    A track without a global identity gets an identity of its own (``top`` + its track id; default
    top: above every global id of the run). Where two tracks of one identity overlap in a frame of one
    camera, the box of the longer track is kept.
    """
    tracks = store.tracks(run_id=run_id)
    boxes = camera_boxes(store, tracks)
    local_of = {t.id: t.local_id for t in tracks}
    n_boxes = {t.id: t.n_boxes for t in tracks}
    if top is None:
        top = max([t.global_id for t in tracks if t.global_id is not None], default=0) + 1
    ident = {t.id: t.global_id if t.global_id is not None else top + t.id for t in tracks}
    local, global_ = {}, {}
    for cam, b in boxes.items():
        local[cam] = MotBoxes(b.frame, np.array([local_of[int(t)] for t in b.track], np.int64), b.xywh)
        gid = np.array([ident[int(t)] for t in b.track], np.int64)
        length = np.array([n_boxes[int(t)] for t in b.track], np.int64)
        order = np.lexsort((-length, gid, b.frame))
        key = np.stack([b.frame[order], gid[order]], axis=1)
        first = np.sort(order[np.r_[True, (key[1:] != key[:-1]).any(axis=1)]]) if len(order) else order
        global_[cam] = MotBoxes(b.frame[first], gid[first], b.xywh[first])
    return local, global_


def _read_gt(path: str | Path) -> MotBoxes:
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"ground-truth file not found: {path}; pass --gt CAMERA=PATH to a MOTChallenge gt.txt")
    return read_mot(path, ground_truth=True)


def _clean(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def evaluate_store(db: str | Path, gt_files: Mapping[str, str | Path], run_id: int | None = None,
                   out_dir: str | Path | None = None) -> dict:
    """Score run ``run_id`` (default: each camera's last run, see :func:`_runs_of_cameras`) of the store
    at ``db`` against ``gt_files`` (camera id -> MOTChallenge gt.txt). Returns the report (also
    ``out_dir/metrics.json`` and ``out_dir/<camera>_identity.png`` when ``out_dir`` is given): run
    (an id, or the sorted ids where cameras come from several runs), runs {camera: run id}, cameras
    {camera: scores, window, gt}, global {scores}."""
    if not gt_files:
        raise EvalError("no ground truth given: pass --gt CAMERA=PATH (once per camera)")
    with StoreReader(db) as store:
        known = [c for c, _, _ in store.cameras()]
        unknown = [c for c in gt_files if c not in known]
        if unknown:
            raise EvalError(f"unknown camera {unknown[0]!r} in --gt: the store's cameras are "
                            f"{', '.join(known) or '(none)'}")
        picked = _runs_of_cameras(store, gt_files, run_id)
        windows = {cam: camera_windows(store, config)[cam] for cam, (_, config) in picked.items()}
        top = max([t.global_id for t in store.tracks(linked=True)], default=0) + 1
        boxes = {rid: predicted_boxes(store, rid, top) for rid in sorted({rid for rid, _ in picked.values()})}
        local = {cam: boxes[rid][0][cam] for cam, (rid, _) in picked.items() if cam in boxes[rid][0]}
        global_ = {cam: boxes[rid][1][cam] for cam, (rid, _) in picked.items() if cam in boxes[rid][1]}
        shown = str(store.path)  # a PostgreSQL URL without its password
    files = {cam: str(Path(p)) for cam, p in gt_files.items()}
    parsed = {p: _read_gt(p) for p in sorted(set(files.values()))}
    gt = {cam: restrict_ground_truth(parsed[files[cam]], windows[cam]) for cam in files}
    pred = {cam: local.get(cam, MotBoxes.empty()) for cam in files}
    run_ids = sorted({rid for rid, _ in picked.values()})
    report: dict = {"db": shown, "run": run_ids[0] if len(run_ids) == 1 else run_ids,
                    "runs": {cam: rid for cam, (rid, _) in picked.items()}, "cameras": {}, "global": {}}
    for cam in files:
        w = windows[cam]
        frames = w.end_frame if w.end_frame is not None and w.end_frame >= max(gt[cam].last_frame,
                                                                                 pred[cam].last_frame) else None
        scores = score_camera(gt[cam], pred[cam], num_frames=frames)
        # TrackEval numbers timesteps by source frame (frames before start_frame are empty and change no
        # metric): report the number of frames the camera saw instead
        scores["frames"] = w.frame_count(max(gt[cam].last_frame, pred[cam].last_frame))
        report["cameras"][cam] = _clean(scores) | {
            "gt": files[cam], "start_frame": w.start_frame, "end_frame": w.end_frame, "stride": w.stride,
            "roi": list(w.roi) if w.roi else None}
    scores = score_global(gt, {cam: global_.get(cam, MotBoxes.empty()) for cam in files})
    report["global"] = _clean(scores)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        pngs = plot_cameras(gt, pred, out)
        report["plots"] = {cam: str(p) for cam, p in pngs.items()}
        (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def format_report(report: dict) -> str:
    """A table: one row per camera (local ids), then 'all' with the cross-camera identity scores."""
    head = f"{'camera':<12} " + " ".join(f"{k:>9}" for k in CAMERA_KEYS) + f" {'frames':>7}"
    lines = [f"run {report['run']} of {report['db']}", head, "-" * len(head)]
    for cam, s in report["cameras"].items():
        lines.append(f"{cam:<12} " + " ".join(f"{_fmt(s.get(k)):>9}" for k in CAMERA_KEYS) + f" {s['frames']:>7}")
    g = report["global"]
    lines.append("")
    lines.append(f"all cameras, global identities ({g['cameras']} cameras, {g['gt_ids']} people, "
                 f"{g['pred_ids']} predicted identities): " + "  ".join(f"{k} {_fmt(g.get(k))}" for k in GLOBAL_KEYS))
    return "\n".join(lines)
