"""``python -m pipeline bench``: frames/s and per-stage milliseconds for 1, 2 and 4 cameras.

Each setting runs the whole pipeline (detector, trackers, sampler, embedder, store, association)
on the demo clip played as N cameras, each starting at a different point of the clip so the
cameras see different people, into a temporary store. Model loading and a warm-up batch are
excluded from the timings (the runner warms up before its frame loop). Prints a table:

    cameras  frames  seconds  frames/s  per camera  read  detect  track  embed  store  associate
"""
from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from pipeline.config import config_from_dict
from pipeline.runner import STAGES, RunSummary, run_pipeline

STREAMS = Path(__file__).resolve().parent.parent / "streams"
DEMO_CLIP = STREAMS / "vtest.avi"
DEMO_YAML = STREAMS / "demo.yaml"
CLIP_FRAMES = 795  # frames of vtest.avi


def bench_config(n_cameras: int, frames: int, clip: str | Path = DEMO_CLIP, imgsz: int = 640,
                 clip_frames: int = CLIP_FRAMES, settings: str | Path = DEMO_YAML):
    """A PipelineConfig playing ``clip`` as ``n_cameras`` cameras of ``frames`` frames each, spread over
    the clip, with the stage settings of ``settings`` (default streams/demo.yaml; minus its cameras and
    camera-specific transit rules)."""
    import yaml

    clip = Path(clip).resolve()
    settings = Path(settings)
    data = yaml.safe_load(settings.read_text()) if settings.is_file() else {}
    step = max(0, (clip_frames - frames) // max(n_cameras - 1, 1))
    cams = []
    for k in range(n_cameras):
        start = min(k * step, max(clip_frames - frames, 0))
        cams.append({"id": f"cam{k + 1}", "source": str(clip), "start_time": 1714557600.0,
                     "start_frame": start, "end_frame": start + frames})
    data["cameras"] = cams
    data.setdefault("detector", {})["imgsz"] = imgsz
    data.setdefault("association", {}).pop("transit", None)
    data.pop("store", None)
    return config_from_dict(data, base_dir=clip.parent, name="bench")


def format_table(rows: Sequence[tuple[int, RunSummary]]) -> str:
    """One line per camera count: frames, seconds, frames/s overall and per camera, ms per frame per stage."""
    head = (f"{'cameras':>7} {'frames':>6} {'seconds':>8} {'frames/s':>9} {'per cam':>8}  "
            + " ".join(f"{s:>9}" for s in STAGES) + "   (ms per frame)")
    lines = [head, "-" * len(head)]
    for n, s in rows:
        lines.append(f"{n:>7} {s.frames:>6} {s.seconds:>8.1f} {s.fps:>9.2f} {s.fps / n:>8.2f}  "
                     + " ".join(f"{s.stage_ms.get(k, 0.0):>9.1f}" for k in STAGES))
    return "\n".join(lines)


def run_bench(frames: int = 30, cameras: Sequence[int] = (1, 2, 4), device: str = "auto", imgsz: int = 640,
              clip: str | Path | None = None, progress: bool = True) -> str:
    """Run the pipeline for each camera count and return the table (see module docstring)."""
    clip = Path(clip) if clip is not None else DEMO_CLIP
    if not clip.is_file():
        raise FileNotFoundError(f"benchmark clip not found: {clip}; pass --clip PATH to a video file")
    import cv2

    cap = cv2.VideoCapture(str(clip))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    cap.release()
    if total < 1:
        raise ValueError(f"cannot read {clip} as a video: pass --clip PATH to a playable video file")
    rows = []
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        for n in cameras:
            cfg = bench_config(n, frames, clip, imgsz, total)
            summary = run_pipeline(cfg, db_path=Path(tmp) / f"bench{n}.db", device=device, progress=progress)
            rows.append((n, summary))
    import torch

    from reid_models.runtime import resolve_device

    dev = resolve_device(device)
    title = (f"pipeline bench: {clip.name}, {frames} frames per camera, detector imgsz {imgsz}, device {dev}, "
             f"torch threads {torch.get_num_threads()}")
    return title + "\n" + format_table(rows)
