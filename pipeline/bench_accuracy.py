"""``python -m pipeline bench --accuracy``: the pipeline against peer trackers on the demo clip's ground truth.

The demo clip streams/vtest.avi is MOTChallenge PETS09-S2L1; its ground truth and public detections are
read from ``../shared/data/mot15/PETS09-S2L1`` beside the repository (CC BY-NC-SA, never copied into it).
On the first N frames, with the same detector weights, imgsz and machine, it scores (HOTA, MOTA, IDF1,
IDSW, frames/s):

- ``pipeline``: the whole pipeline (detector, tracker, embedder, store, association) with the shipped
  settings of streams/demo.yaml, the clip as one camera, scored from its store by ``eval``'s code;
- ``ultralytics bytetrack`` / ``ultralytics botsort``: ``YOLO.track`` (persist=True, class 0, the
  trackers' shipped ``bytetrack.yaml`` / ``botsort.yaml``, their default confidence);
- public detections (det.txt, the same boxes for every row): ``pipeline tracker`` (our ByteTracker with
  the demo's tracker settings) and, where the ``boxmot`` package is importable, BoxMOT's ByteTrack and
  OC-SORT with their defaults. frames/s of these rows is the tracker alone (no decoding, no detector).

frames/s of the detector rows counts decoding and detection; the pipeline row also embeds and stores.
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.bench import CLIP_FRAMES, DEMO_CLIP, bench_config, write_bench_json
from pipeline.config.detections import read_detection_file
from pipeline.evaluation import MotBoxes, camera_ground_truth, read_mot, score_camera
from pipeline.runner import run_pipeline
from pipeline.score_store import evaluate_store

REPO = Path(__file__).resolve().parent.parent
PETS = REPO.parent / "shared" / "data" / "mot15" / "PETS09-S2L1"
ROW_KEYS = ("MOTA", "IDF1", "HOTA", "IDSW", "fps")


@dataclass(frozen=True)
class BenchRow:
    """One tracker's figures; scores None (and ``note`` set) when it could not run."""

    name: str
    detections: str  # "detector" or "det.txt"
    MOTA: float | None = None
    IDF1: float | None = None
    HOTA: float | None = None
    IDSW: int | None = None
    fps: float | None = None
    note: str = ""


def dataset_files(root: Path = PETS) -> tuple[Path, Path]:
    """(gt.txt, det.txt) of PETS09-S2L1; FileNotFoundError (one line) when absent."""
    gt, det = root / "gt" / "gt.txt", root / "det" / "det.txt"
    for path in (gt, det):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: bench --accuracy needs MOTChallenge PETS09-S2L1 "
                                    f"(gt/gt.txt and det/det.txt) at {root}, beside the repository")
    return gt, det


def _row(name: str, source: str, scores: dict, fps: float, note: str = "") -> BenchRow:
    return BenchRow(name, source, scores["MOTA"], scores["IDF1"], scores["HOTA"], scores["IDSW"], fps, note)


def _frames(clip: Path, n: int) -> Iterator[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(clip))
    try:
        for _ in range(n):
            ok, image = cap.read()
            if not ok:
                return
            yield image
    finally:
        cap.release()


def pipeline_row(clip: Path, frames: int, imgsz: int, device: str, gt_path: Path, tmp: Path) -> BenchRow:
    """The whole pipeline with the shipped settings, one camera, scored by ``eval``'s code path."""
    cfg = bench_config(1, frames, clip, imgsz, frames)
    db = tmp / "pipeline.db"
    summary = run_pipeline(cfg, db_path=db, device=device, progress=False)
    report = evaluate_store(db, {cfg.cameras[0].id: gt_path})
    return _row("pipeline (demo settings)", "detector", report["cameras"][cfg.cameras[0].id], summary.fps,
                "whole pipeline: detect, track, embed, store, associate")


def ultralytics_row(tracker: str, clip: Path, frames: int, imgsz: int, device: str, gt: MotBoxes) -> BenchRow:
    """``YOLO.track`` with the bundled detector weights and ultralytics' ``tracker`` cfg (class 0)."""
    from ultralytics import YOLO

    from pipeline.stages.detect import ensure_yolo_config_dir, resolve_weights
    from reid_models.runtime import resolve_device

    ensure_yolo_config_dir()
    model = YOLO(resolve_weights(None), task="detect")
    dev = resolve_device(device)
    rows: list[tuple[int, int, np.ndarray]] = []
    n = 0
    t0 = time.perf_counter()
    for k, image in enumerate(_frames(clip, frames)):
        if k == 1:  # the first frame pays for set-up
            t0, n = time.perf_counter(), 0
        r = model.track(image, persist=True, tracker=tracker, classes=[0], imgsz=imgsz, device=dev, verbose=False)[0]
        n += 1
        if r.boxes is not None and r.boxes.id is not None:
            for box, tid in zip(r.boxes.xyxy.cpu().numpy(), r.boxes.id.cpu().numpy().astype(np.int64)):
                rows.append((k + 1, int(tid), box))
    fps = n / max(time.perf_counter() - t0, 1e-9)
    pred = _boxes(rows)
    return _row(f"ultralytics {tracker.removesuffix('.yaml')}", "detector", score_camera(gt, pred, num_frames=frames),
                fps, "YOLO.track, class 0, persist=True")


def _boxes(rows: list[tuple[int, int, np.ndarray]]) -> MotBoxes:
    if not rows:
        return MotBoxes.empty()
    return MotBoxes.from_xyxy(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
                              np.stack([r[2] for r in rows]))


def _public_row(name: str, det_path: Path, frames: int, gt: MotBoxes,
                step: Callable[[int, np.ndarray, np.ndarray], list[tuple[int, int, np.ndarray]]],
                note: str) -> BenchRow:
    """Feed det.txt frame by frame to ``step(frame, xyxy (N, 4), score (N,)) -> [(frame, id, xyxy)]``."""
    det = read_detection_file(det_path)
    rows: list = []
    seconds = 0.0
    for f in range(1, frames + 1):
        sl = det.rows_of(f - 1)
        xyxy, score = det.xyxy[sl], det.score[sl]
        t0 = time.perf_counter()
        out = step(f, xyxy, score)
        seconds += time.perf_counter() - t0
        rows += out
    return _row(name, "det.txt", score_camera(gt, _boxes(rows), num_frames=frames), frames / max(seconds, 1e-9), note)


def project_tracker_row(det_path: Path, frames: int, gt: MotBoxes, fps: float) -> BenchRow:
    from pipeline.stages.track import ByteTracker
    from pipeline.types import Detections

    tracker = ByteTracker(bench_config(1, frames).tracker, frame_rate=fps)

    def step(f, xyxy, score):
        t = tracker.update(Detections.from_arrays(xyxy, score))
        return [(f, int(i), b) for i, b in zip(t.track_id, t.xyxy)]
    return _public_row("pipeline tracker", det_path, frames, gt, step, "ByteTracker, demo tracker settings")


def boxmot_rows(det_path: Path, frames: int, gt: MotBoxes, fps: float, shape: tuple[int, int]) -> list[BenchRow]:
    """BoxMOT ByteTrack and OC-SORT on det.txt, or rows with a note when boxmot is not importable."""
    names = ("boxmot bytetrack", "boxmot ocsort")
    try:
        from boxmot import ByteTrack, OcSort
    except Exception as exc:  # noqa: BLE001 - any import failure means: skip with a note
        note = f"skipped: boxmot not importable ({type(exc).__name__}); pip install boxmot"
        return [BenchRow(n, "det.txt", note=note) for n in names]
    logging.getLogger("boxmot").setLevel(logging.WARNING)  # one INFO block per tracker otherwise
    image = np.zeros((*shape, 3), np.uint8)  # these trackers only read the image's size
    out = []
    for name, make in zip(names, (lambda: ByteTrack(frame_rate=int(round(fps))), lambda: OcSort())):
        tracker = make()

        def step(f, xyxy, score, tracker=tracker):
            dets = np.concatenate([xyxy, score[:, None], np.zeros((len(score), 1))], axis=1).astype(np.float32)
            res = tracker.update(dets.reshape(-1, 6), image)
            return [(f, int(r[4]), r[:4]) for r in np.asarray(res).reshape(-1, 8)]
        out.append(_public_row(name, det_path, frames, gt, step, "defaults"))
    return out


def format_table(rows: list[BenchRow], title: str) -> str:
    head = f"{'tracker':<26} {'boxes':<9} " + " ".join(f"{k:>7}" for k in ROW_KEYS) + "  note"
    lines = [title, head, "-" * len(head)]
    for r in rows:
        vals = []
        for k in ROW_KEYS:
            v = getattr(r, k)
            text = "-" if v is None else f"{v:.1f}" if k == "fps" else f"{v:.3f}" if isinstance(v, float) else str(v)
            vals.append(f"{text:>7}")
        lines.append(f"{r.name:<26} {r.detections:<9} " + " ".join(vals) + f"  {r.note}")
    return "\n".join(lines)


def run_accuracy_bench(frames: int | None = None, device: str = "auto", imgsz: int = 640,
                       clip: str | Path | None = None, out_dir: str | Path = "runs/bench",
                       data_root: Path = PETS) -> tuple[str, Path]:
    """Run every row (see module docstring) on the first ``frames`` frames (default: the whole clip);
    returns (the table, path of bench.json)."""
    clip = Path(clip) if clip is not None else DEMO_CLIP
    if not clip.is_file():
        raise FileNotFoundError(f"benchmark clip not found: {clip}; pass --clip PATH (the PETS09-S2L1 video)")
    gt_path, det_path = dataset_files(data_root)
    frames = min(frames or CLIP_FRAMES, CLIP_FRAMES)
    import cv2

    cap = cv2.VideoCapture(str(clip))
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 10.0)
    shape = (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
    cap.release()
    gt = camera_ground_truth(read_mot(gt_path, ground_truth=True), 0, frames)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="pipeline-accuracy-") as tmp:
        rows = [pipeline_row(clip, frames, imgsz, device, gt_path, Path(tmp))]
    rows += [ultralytics_row(t, clip, frames, imgsz, device, gt) for t in ("bytetrack.yaml", "botsort.yaml")]
    rows.append(project_tracker_row(det_path, frames, gt, fps))
    rows += boxmot_rows(det_path, frames, gt, fps, shape)
    import torch

    from reid_models.runtime import resolve_device

    title = (f"accuracy bench: {clip.name} (PETS09-S2L1), first {frames} frames, detector imgsz {imgsz}, "
             f"device {resolve_device(device)}, torch threads {torch.get_num_threads()}")
    path = write_bench_json(out_dir, "bench.json", {"title": title, "frames": frames, "imgsz": imgsz,
                                                    "clip": str(clip), "rows": [asdict(r) for r in rows]})
    return format_table(rows, title), path
