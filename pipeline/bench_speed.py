"""``python -m pipeline bench --speed``: frames/s of the whole pipeline against ultralytics ``model.track``,
same detector weights, imgsz, clip, machine and torch threads, measured A B A B.

Each measurement runs in a fresh process (``python -m pipeline.bench_speed --child ours|ultralytics``), so
neither inherits the other's thread settings or warm caches, and the two alternate, so a change in the
machine's load hits both. ``ours`` is the pipeline with the demo settings (streams/demo.yaml) as one camera
on the first N frames of the clip: detect, track, embed, store and associate, frames/s of its frame loop
(models loaded and warmed up before). ``ultralytics`` is ``YOLO.track(persist=True, classes=[0])`` with the
bundled weights and its ByteTrack, frames/s after its first frame (which pays for its set-up). Ultralytics
sets torch to ``cpu_count - 1`` threads when its predictor starts; the child sets the asked-for count
back after that first frame, so both run at the same thread count.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.bench import CLIP_FRAMES, DEMO_CLIP, write_bench_json

SYSTEMS = ("ours", "ultralytics")


@dataclass(frozen=True)
class SpeedRun:
    """One measurement: ``system`` at ``threads`` torch threads, frames/s over ``frames`` frames.
    detector_frames: frames the detector ran on (ours; None for ultralytics, which runs it on every frame);
    load: the machine's 1-minute load average when it started."""

    system: str
    threads: int
    repeat: int
    fps: float
    frames: int
    detector_frames: int | None
    load: float


def _child_ours(frames: int, imgsz: int, clip: Path) -> tuple[float, int, int | None]:
    from pipeline.bench import bench_config
    from pipeline.runner import run_pipeline

    cfg = bench_config(1, frames, clip, imgsz, CLIP_FRAMES)
    with tempfile.TemporaryDirectory(prefix="pipeline-speed-") as tmp:
        s = run_pipeline(cfg, db_path=Path(tmp) / "speed.db", device="cpu", progress=False)
    return s.fps, s.frames, s.detector_frames


def _child_ultralytics(frames: int, imgsz: int, clip: Path, threads: int) -> tuple[float, int, int | None]:
    import torch
    from ultralytics import YOLO

    from pipeline.bench_accuracy import _frames
    from pipeline.stages.detect import ensure_yolo_config_dir, resolve_weights

    ensure_yolo_config_dir()
    model = YOLO(resolve_weights(None), task="detect")
    n, t0 = 0, time.perf_counter()
    for k, image in enumerate(_frames(clip, frames)):
        model.track(image, persist=True, tracker="bytetrack.yaml", classes=[0], imgsz=imgsz, device="cpu",
                    verbose=False)
        if k == 0:  # set-up done: its predictor pinned torch to cpu_count - 1 threads
            torch.set_num_threads(threads)
            n, t0 = 0, time.perf_counter()
        else:
            n += 1
    return n / max(time.perf_counter() - t0, 1e-9), n, None


def measure(system: str, threads: int, frames: int, imgsz: int, clip: Path) -> tuple[float, int, int | None]:
    """(frames/s, frames timed, detector frames) of one fresh child process."""
    cmd = [sys.executable, "-m", "pipeline.bench_speed", "--child", system, "--threads", str(threads),
           "--frames", str(frames), "--imgsz", str(imgsz), "--clip", str(clip)]
    env = dict(os.environ, YOLO_OFFLINE="1", OMP_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"speed bench child {system} (threads {threads}) failed: {tail[0]}")
    fps, n, det = json.loads(out.stdout.strip().splitlines()[-1])
    return float(fps), int(n), det


def format_table(runs: Sequence[SpeedRun], title: str) -> str:
    lines = [title, f"{'threads':>7} {'repeat':>6} {'system':<12} {'frames/s':>9} {'detector frames':>16} {'load':>5}"]
    for r in runs:
        det = "all" if r.detector_frames is None else f"{r.detector_frames}/{r.frames}"
        lines.append(f"{r.threads:>7} {r.repeat:>6} {r.system:<12} {r.fps:>9.2f} {det:>16} {r.load:>5.1f}")
    for threads in sorted({r.threads for r in runs}):
        ratios = ratio_by_repeat(runs, threads)
        if ratios:
            lines.append(f"threads {threads}: ours / ultralytics per A B pair "
                         + ", ".join(f"{x:.2f}" for x in ratios) + f"; median {statistics.median(ratios):.2f}")
    return "\n".join(lines)


def ratio_by_repeat(runs: Sequence[SpeedRun], threads: int) -> list[float]:
    """ours / ultralytics frames/s of each repeat (one A B pair) at ``threads``."""
    out = []
    for rep in sorted({r.repeat for r in runs if r.threads == threads}):
        pair = {r.system: r.fps for r in runs if r.threads == threads and r.repeat == rep}
        if len(pair) == 2 and pair["ultralytics"] > 0:
            out.append(pair["ours"] / pair["ultralytics"])
    return out


def run_speed_bench(frames: int = 200, threads: Sequence[int] = (1, 2), repeats: int = 2, imgsz: int = 960,
                    clip: str | Path | None = None, out_dir: str | Path = "runs/bench",
                    progress: bool = True) -> tuple[str, Path]:
    """A B A B at each thread count (see the module docstring); returns (table, path of speed_vs_ultralytics.json)."""
    clip = Path(clip) if clip is not None else DEMO_CLIP
    if not clip.is_file():
        raise FileNotFoundError(f"benchmark clip not found: {clip}; pass --clip PATH")
    frames = min(frames, CLIP_FRAMES)
    plan = [(t, rep, system) for t in threads for rep in range(1, repeats + 1) for system in SYSTEMS]
    runs: list[SpeedRun] = []
    from tqdm import tqdm

    for t, rep, system in tqdm(plan, desc="speed", unit="run", disable=not progress, file=sys.stderr):
        load = os.getloadavg()[0]
        fps, n, det = measure(system, t, frames, imgsz, clip)
        runs.append(SpeedRun(system, t, rep, fps, n, det, load))
    title = (f"speed bench: {clip.name}, first {frames} frames, detector imgsz {imgsz}, CPU, "
             f"{os.cpu_count()} cores; each run a fresh process, A B A B")
    path = write_bench_json(out_dir, "speed_vs_ultralytics.json",
                            {"title": title, "frames": frames, "imgsz": imgsz, "clip": str(clip),
                             "runs": [asdict(r) for r in runs],
                             "ratios": {str(t): ratio_by_repeat(runs, t) for t in threads}})
    return format_table(runs, title), path


def _child_main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m pipeline.bench_speed", description="one speed-bench measurement")
    p.add_argument("--child", choices=SYSTEMS, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--imgsz", type=int, required=True)
    p.add_argument("--clip", type=Path, required=True)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.child == "ours":
        result = _child_ours(args.frames, args.imgsz, args.clip)
    else:
        result = _child_ultralytics(args.frames, args.imgsz, args.clip, args.threads)
    print(json.dumps(list(result)))


if __name__ == "__main__":
    _child_main()
