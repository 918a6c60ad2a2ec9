"""``python -m pipeline bench --store``: how fast the store writes, on each backend (rows/s).

A writer records ``frames`` frames of ``tracks`` people each (one box per person per frame) and a
sample of each person every ``sample_every`` frames (a 1536-d vector, the default embedder's size,
and a JPEG thumbnail of a real crop from the demo clip), committing every ``store.commit_interval``
(1 s), as a run does; then closes (the final commit). Timed: the writer calls and commits, not the
setup. Into a temporary SQLite file, and into each ``--db`` given: a file, or a PostgreSQL URL,
where it writes into a fresh schema ``camreid_bench_<pid>`` that it drops afterwards (the user
needs CREATE on the database). Prints one line per store:

    backend     boxes  samples  seconds  boxes/s  samples/s  rows/s
"""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.config import StoreConfig
from pipeline.store import TrackStore, is_url, open_backend
from pipeline.types import Detections, Frame

CLIP = Path(__file__).resolve().parent.parent / "streams" / "vtest.avi"
DIM = 1536
BOX = (250, 218, 285, 308)  # a person in the clip's first frame


def _first_frame() -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(CLIP))
    ok, image = cap.read()
    cap.release()
    if not ok:
        raise FileNotFoundError(f"cannot read the demo clip {CLIP}")
    return image


def write_rows(db: str | Path, frames: int, tracks: int, sample_every: int) -> dict[str, float]:
    """Write the benchmark's rows into a new store at ``db``; returns boxes, samples, seconds."""
    image = _first_frame()
    x1, y1, x2, y2 = BOX
    crop = image[y1:y2, x1:x2]
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((tracks, DIM)).astype(np.float32)
    boxes = np.array([[x1 + 40 * k, y1, x2 + 40 * k, y2] for k in range(tracks)], np.float32)
    store = TrackStore(StoreConfig(path=str(db)), "bench-unit-vectors", DIM, {})
    store.start_run({"bench": "store"})
    store.add_camera("bench", str(CLIP))
    n_samples = 0
    t0 = time.perf_counter()
    for f in range(frames):
        frame = Frame("bench", f, 1_700_000_000.0 + f / 10, image)
        ids = [(f // 200) * tracks + k for k in range(tracks)]  # people change every 200 frames
        dets = Detections.from_arrays(boxes, [0.9] * tracks, track_id=ids, embedding=emb)
        store.record_frame(frame, dets)
        if f % sample_every == 0:
            store.add_samples(frame, dets, np.arange(tracks), [crop] * tracks)
            n_samples += tracks
        if f % 200 == 199:
            store.end_tracks("bench", ids)
        store.maybe_commit()
    store.close()
    seconds = time.perf_counter() - t0
    return {"boxes": frames * tracks, "samples": n_samples, "seconds": seconds}


def _bench_schema_url(url: str) -> tuple[str, str]:
    name = f"camreid_bench_{os.getpid()}"
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{name}", name


def run_store_bench(dbs: Sequence[str] = (), frames: int = 2000, tracks: int = 8, sample_every: int = 10) -> str:
    """The table of module docstring: a temporary SQLite file, then each of ``dbs``."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        targets: list[tuple[str, str]] = [("sqlite (tmp file)", str(Path(tmp) / "bench.db"))]
        for db in dbs:
            targets.append(("postgresql" if is_url(db) else "sqlite", db))
        for label, db in targets:
            if is_url(db):
                backend = open_backend(db)
                url, schema_name = _bench_schema_url(db)
                con = backend.connect(readonly=False, purpose="bench")  # StoreError if unreachable
                try:
                    con.execute(f"CREATE SCHEMA {schema_name}")
                    try:
                        result = write_rows(url, frames, tracks, sample_every)
                    finally:
                        con.execute(f"DROP SCHEMA {schema_name} CASCADE")
                finally:
                    con.close()
                label = "postgresql"
            else:
                if Path(db).exists():
                    raise FileExistsError(f"bench --store writes a new store: {db} exists; pass a new file path")
                result = write_rows(db, frames, tracks, sample_every)
            rows.append((label, result))
    head = f"{'backend':<40} {'boxes':>7} {'samples':>7} {'seconds':>8} {'boxes/s':>9} {'samples/s':>9} {'rows/s':>9}"
    lines = [f"store writes: {frames} frames x {tracks} tracks, a {DIM}-d sample + thumbnail every {sample_every} "
             f"frames, commit every {StoreConfig().commit_interval:g} s", head, "-" * len(head)]
    for label, r in rows:
        s = max(r["seconds"], 1e-9)
        lines.append(f"{label[:40]:<40} {r['boxes']:>7} {r['samples']:>7} {r['seconds']:>8.2f} {r['boxes'] / s:>9.0f} "
                     f"{r['samples'] / s:>9.0f} {(r['boxes'] + r['samples']) / s:>9.0f}")
    return "\n".join(lines)
