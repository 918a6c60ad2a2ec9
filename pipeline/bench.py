"""``python -m pipeline bench``: frames/s, CPU% and per-stage milliseconds for 1, 4 and 16 cameras.

Each setting runs the whole pipeline (detector, trackers, sampler, embedder, store, association)
on the demo clip played as N cameras, each starting at a different point of the clip so the
cameras see different people, into a temporary store; ``workers`` > 1 splits the cameras into that
many process groups (``run --workers``; at most one group per camera). Model loading and a warm-up
batch are excluded from the timings (the runner warms up before its frame loop). Prints a table:

    cameras  workers  frames  seconds  frames/s  per cam  CPU%  GPU%  read  detect  track  embed  store  associate

frames/s counts the frames of all cameras; per cam is that over the cameras. CPU% is the CPU time of
the frame loop in every process over its wall time (100 = one core busy). GPU% is the mean of
``nvidia-smi``'s utilisation sampled every 0.5 s during the run, on CUDA only. Stage columns are ms
per frame (with worker groups, summed over the groups). ``out``: also writes ``speed.json``.
"""
from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import config_from_dict
from pipeline.runner import STAGES, RunSummary, run_pipeline

STREAMS = Path(__file__).resolve().parent.parent / "streams"
DEMO_CLIP = STREAMS / "vtest.avi"
DEMO_YAML = STREAMS / "demo.yaml"
CLIP_FRAMES = 795  # frames of vtest.avi


def write_bench_json(out_dir: str | Path, name: str, payload: dict) -> Path:
    """Write ``payload`` as indented JSON to ``out_dir/name`` (the folder is made if needed); returns the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


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


@dataclass(frozen=True)
class BenchRow:
    """One setting: cameras, worker groups, the run's summary and the mean GPU utilisation (None: not CUDA)."""

    cameras: int
    workers: int
    summary: RunSummary
    gpu_percent: float | None = None

    def as_dict(self) -> dict:
        s = self.summary
        return {"cameras": self.cameras, "workers": self.workers, "frames": s.frames, "seconds": round(s.seconds, 3),
                "frames_per_s": round(s.fps, 3), "frames_per_s_per_camera": round(s.fps / self.cameras, 3),
                "cpu_percent": round(s.cpu_percent, 1),
                "gpu_percent": None if self.gpu_percent is None else round(self.gpu_percent, 1),
                "stage_ms": {k: round(v, 2) for k, v in s.stage_ms.items()}, "tracks": s.tracks,
                "worker_errors": s.worker_errors}


class GpuUtilisation:
    """Samples ``nvidia-smi``'s GPU utilisation (%) every ``period`` s on a thread while in the ``with`` block;
    :attr:`mean` is their mean, None when nothing could be sampled (no nvidia-smi)."""

    def __init__(self, gpu_index: int = 0, period: float = 0.5) -> None:
        self.gpu_index, self.period = gpu_index, period
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="gpu-utilisation")

    def _sample(self) -> float | None:
        try:
            out = subprocess.run(["nvidia-smi", f"--id={self.gpu_index}", "--query-gpu=utilization.gpu",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5)
            return float(out.stdout.strip().splitlines()[0]) if out.returncode == 0 else None
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self._sample()
            if value is None:
                return
            self.samples.append(value)
            self._stop.wait(self.period)

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None

    def __enter__(self) -> GpuUtilisation:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)


def format_table(rows: Sequence[BenchRow]) -> str:
    """One line per setting: frames, seconds, frames/s overall and per camera, CPU%, GPU%, ms per frame per stage."""
    head = (f"{'cameras':>7} {'workers':>7} {'frames':>6} {'seconds':>8} {'frames/s':>9} {'per-cam':>8} {'CPU%':>6} "
            f"{'GPU%':>5}  " + " ".join(f"{s:>9}" for s in STAGES) + "   (ms per frame)")
    lines = [head, "-" * len(head)]
    for row in rows:
        s = row.summary
        gpu = "n/a" if row.gpu_percent is None else f"{row.gpu_percent:.0f}"
        lines.append(f"{row.cameras:>7} {row.workers:>7} {s.frames:>6} {s.seconds:>8.1f} {s.fps:>9.2f} "
                     f"{s.fps / row.cameras:>8.2f} {s.cpu_percent:>6.0f} {gpu:>5}  "
                     + " ".join(f"{s.stage_ms.get(k, 0.0):>9.1f}" for k in STAGES))
    return "\n".join(lines)


def run_bench(frames: int = 30, cameras: Sequence[int] = (1, 4, 16), device: str = "auto", imgsz: int = 640,
              clip: str | Path | None = None, progress: bool = True, workers: int = 1,
              out: str | Path | None = None) -> str:
    """Run the pipeline for each camera count (with ``min(workers, cameras)`` process groups) and return the
    table (see module docstring); ``out``: folder that also gets ``speed.json``."""
    clip = Path(clip) if clip is not None else DEMO_CLIP
    if not clip.is_file():
        raise FileNotFoundError(f"benchmark clip not found: {clip}; pass --clip PATH to a video file")
    import cv2

    cap = cv2.VideoCapture(str(clip))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    cap.release()
    if total < 1:
        raise ValueError(f"cannot read {clip} as a video: pass --clip PATH to a playable video file")
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"--out {out} is a file; pass a folder")
    import torch

    from reid_models.runtime import resolve_device

    dev = str(resolve_device(device))
    cuda = dev.startswith("cuda")
    rows = []
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        for n in cameras:
            cfg = bench_config(n, frames, clip, imgsz, total)
            groups = min(workers, n)
            with GpuUtilisation(int(dev.partition(":")[2] or 0)) if cuda else contextlib.nullcontext() as gpu:
                summary = run_pipeline(cfg, db_path=Path(tmp) / f"bench{n}.db", device=device, progress=progress,
                                       workers=groups)
            rows.append(BenchRow(n, groups, summary, None if gpu is None else gpu.mean))
    title = (f"pipeline bench: {clip.name}, {frames} frames per camera, detector imgsz {imgsz}, device {dev}, "
             f"torch threads {torch.get_num_threads()}"
             + (f" (shared out between worker groups: {workers} at most)" if workers > 1 else ""))
    table = title + "\n" + format_table(rows)
    if out is not None:
        path = write_bench_json(out, "speed.json", {"clip": clip.name, "frames_per_camera": frames, "imgsz": imgsz,
                                                    "device": dev, "torch_threads": torch.get_num_threads(),
                                                    "rows": [r.as_dict() for r in rows]})
        table += f"\nwrote {path}"
    return table
