"""``python -m pipeline bench --query``: how search scales, on a synthetic store built through the store's
own write path.

The store: ``cameras`` cameras, each with ``per_camera`` people in view at every 1 s step; a track is
``track_samples`` consecutive samples (one per step) of one person on one camera, and a person is seen
by about three tracks on different cameras, linked into one global identity with the writer's
``assign_identity``. Vectors are synthetic but shaped like re-ID embeddings, which are clustered (similar
clothes look alike, and half of the default embedder is a colour histogram): each identity's centre is a
component shared by everyone, plus one of ``identities / 100`` appearance groups, plus its own part;
each track adds an offset (pose, light) and each sample noise. Sample cosines: same track ~0.85, same
person on another track ~0.64, another person of the same group ~0.5, anyone else ~0.2. Rows go
through ``TrackStore.record_frame`` / ``add_samples`` / ``end_tracks`` (no thumbnails) with a commit
every ``commit_every`` steps; then ``pipeline index``'s :func:`~pipeline.search.index.update_index`
builds the index.

Queries are new views of stored people (a fresh track offset and noise). Figures: build seconds (store,
index), cold first query in a fresh ``python -m pipeline query --vector`` process (wall seconds end to
end and its peak RSS), warm p50/p99 latency of :func:`~pipeline.search.search_tracks` unfiltered and with
a camera+time filter keeping ~1% of the samples, and recall@10: the share of the exact search's top-10
identities (brute force over every sample) that the default search also returns in its top 10.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pipeline.config import StoreConfig
from pipeline.search import search_tracks
from pipeline.search.index import index_dir, update_index
from pipeline.store import StoreReader, TrackStore
from pipeline.types import Detections, Frame
from reid_models.common import atomic_output, l2_normalize

T0 = 1714557600.0  # 2024-05-01T10:00:00Z, the demo's clock
SHARED = 0.8  # weight of the component every identity shares
TRACK_OFFSET = 0.6  # a track's own offset from its identity's centre
SAMPLE_NOISE = 0.45  # a sample's noise around its track
GROUP = 0.9  # weight of an identity's appearance group
OWN = 0.6  # weight of an identity's own part
PER_GROUP = 100  # identities per appearance group


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    return l2_normalize(rng.standard_normal((n, d), dtype=np.float32))


def build_store(db: Path, samples: int, dim: int, cameras: int = 10, per_camera: int = 10, track_samples: int = 16,
                commit_every: int = 100, seed: int = 0, progress: bool = True) -> dict:
    """Write the synthetic store (module docstring) at ``db`` (must not exist); returns its layout:
    steps, tracks, identities, camera ids, time span, and seconds taken."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    shared = _unit(rng, 1, dim)[0]
    groups = _unit(rng, max(1, round(samples / (3 * track_samples * PER_GROUP))), dim)
    steps = -(-samples // (cameras * per_camera))
    cams = [f"cam{k:02d}" for k in range(cameras)]
    idents: list[np.ndarray] = []  # identity centres
    recent: list[int] = []  # identities seen lately, picked up again by other cameras
    track_ident: list[int] = []  # identity of each track, in creation (= track id) order
    slots_local = np.full((cameras, per_camera), -1, np.int64)
    slots_left = np.zeros((cameras, per_camera), np.int64)
    slots_base = np.zeros((cameras, per_camera, dim), np.float32)
    next_local = [0] * cameras
    boxes = np.tile(np.array([[100, 50, 160, 230]], np.float32), (per_camera, 1))
    boxes[:, 0::2] += (np.arange(per_camera, dtype=np.float32) * 60)[:, None]
    image = np.zeros((1, 1, 3), np.uint8)
    written = 0
    spec = {"embedder_id": f"synthetic-{dim}", "model": "synthetic", "dim": dim}
    bar = tqdm(total=samples, desc="build store", unit="sample", dynamic_ncols=True, disable=not progress)
    with TrackStore(StoreConfig(path=str(db), commit_interval=1e9), f"synthetic-{dim}", dim, spec) as store:
        store.start_run({"synthetic": {"samples": samples, "dim": dim, "cameras": cameras, "seed": seed}})
        for cam in cams:
            store.add_camera(cam, "synthetic", {"fps": 1.0})
        for step in range(steps):
            for c, cam in enumerate(cams):
                n = min(per_camera, samples - written)
                if n <= 0:
                    break
                new = np.flatnonzero(slots_left[c, :n] <= 0)
                for s in new:  # a new person enters this slot: someone seen elsewhere lately, or a stranger
                    if recent and rng.random() < 0.67:
                        ident = recent.pop(int(rng.integers(len(recent))))
                    else:
                        ident = len(idents)
                        group = groups[int(rng.integers(len(groups)))]
                        idents.append(l2_normalize(SHARED * shared + GROUP * group + OWN * _unit(rng, 1, dim)[0]))
                        recent.append(ident)
                    if len(recent) > 4 * cameras * per_camera:
                        recent.pop(0)
                    track_ident.append(ident)
                    slots_local[c, s] = next_local[c]
                    next_local[c] += 1
                    slots_left[c, s] = track_samples
                    slots_base[c, s] = idents[ident] + TRACK_OFFSET * _unit(rng, 1, dim)[0]
                emb = l2_normalize(slots_base[c, :n] + SAMPLE_NOISE * _unit(rng, n, dim))
                dets = Detections(boxes[:n], np.full(n, 0.9, np.float32), np.zeros(n, np.int64),
                                  slots_local[c, :n].copy(), emb)
                frame = Frame(cam, step, T0 + step, image)
                store.record_frame(frame, dets)
                store.add_samples(frame, dets, np.arange(n), [None] * n)
                slots_left[c, :n] -= 1
                done = np.flatnonzero(slots_left[c, :n] == 0)
                if len(done):
                    store.end_tracks(cam, slots_local[c, done].tolist())
                written += n
                bar.update(n)
            if step % commit_every == commit_every - 1:
                store.commit()
        store.commit()
        # identities: the writer's own calls; tracks were created in track_ident's order
        pks = [t.id for t in store.reader.tracks(run_id=store.run_id)]
        gid: dict[int, int] = {}
        for k, (pk, ident) in enumerate(zip(pks, track_ident)):
            if ident not in gid:
                gid[ident] = store.new_identity()
            store.assign_identity(pk, gid[ident], None, "synthetic")
            if k % 10000 == 9999:
                store.commit()
    bar.close()
    return {"steps": steps, "tracks": len(track_ident), "identities": len(idents), "cameras": cams,
            "span_s": float(steps), "seconds": time.perf_counter() - t0, "seed": seed,
            "centres": np.stack(idents), "shared": shared}


def make_queries(layout: dict, n: int, seed: int = 1) -> np.ndarray:
    """(n, D) new views of stored identities."""
    rng = np.random.default_rng(seed)
    centres = layout["centres"]
    picks = rng.choice(len(centres), size=n, replace=len(centres) < n)
    base = centres[picks] + TRACK_OFFSET * _unit(rng, n, centres.shape[1])
    return l2_normalize(base + SAMPLE_NOISE * _unit(rng, n, centres.shape[1]))


def _keys(hits) -> list:
    """Identity keys (global id, or -track id) of the ranked identities, in rank order."""
    out: list = []
    for h in hits:
        k = h.global_id if h.global_id is not None else -h.track_id
        if k not in out:
            out.append(k)
    return out


def _latency(store: StoreReader, queries: np.ndarray, **filters) -> tuple[list[float], list, list[str]]:
    times, results, methods = [], [], []
    for q in queries:
        info: dict = {}
        t = time.perf_counter()
        hits = search_tracks(store, q, top=10, info=info, **filters)
        times.append((time.perf_counter() - t) * 1000)
        results.append(_keys(hits))
        methods.append(info["method"])
    return times, results, methods


def _recall(got: list, want: list) -> float:
    scores = [len(set(g[:10]) & set(w[:10])) / max(min(10, len(w)), 1) for g, w in zip(got, want)]
    return float(np.mean(scores)) if scores else float("nan")


_COLD = """import sys
from pipeline.cli import main
code = main(sys.argv[1:])
hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")]
print("peak_rss_kib", hwm[0] if hwm else -1, file=sys.stderr)
sys.exit(code)
"""


def cold_query(db: Path, vector: Path, out: Path, extra: tuple[str, ...] = ()) -> dict:
    """A fresh ``python -m pipeline query --vector`` process: wall seconds end to end and its peak RSS (MiB,
    the process's own VmHWM: ``ru_maxrss`` of a child counts the parent's pages it was forked with)."""
    args = ["query", "--db", str(db), "--vector", str(vector), "--out", str(out), *extra]
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _COLD, *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"cold query failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    kib = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("peak_rss_kib")]
    return {"seconds": wall, "rss_mib": kib[-1] / 1024 if kib and kib[-1] >= 0 else float("nan"),
            "command": " ".join([sys.executable, "-m", "pipeline", *args])}


def _pg_schema_size_mib(url: str) -> float:
    """MiB the tables of the URL's schema take on the server (indexes and TOAST included)."""
    from pipeline.store import open_backend

    con = open_backend(url).connect(readonly=True)
    try:
        n = con.execute("SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN "
                        "pg_namespace s ON s.oid=c.relnamespace WHERE s.nspname=current_schema() "
                        "AND c.relkind='r'").fetchone()[0]
    finally:
        con.close()
    return float(n) / 2**20


def run_query_bench(samples: int, dim: int, out_dir: str | Path = "runs/bench-query", queries: int = 50,
                    json_path: str | Path | None = None, progress: bool = True, reuse: bool = False,
                    url: str | None = None) -> dict:
    """Build (or with ``reuse``, keep) the synthetic store in ``out_dir`` and measure it (module docstring).
    ``url``: a PostgreSQL server instead: the store goes into a temporary schema ``camreid_bench_query_<pid>``
    (dropped after) and its local index into ``out_dir/index`` ($CAMREID_INDEX_DIR for the bench).
    Returns the figures; also written to ``json_path`` when given."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if url is None:
        return _run_query_bench(out / f"query-{samples}x{dim}.db", samples, dim, out, queries, json_path, progress,
                                reuse)
    import shutil

    from pipeline.store import open_backend

    if reuse:
        from reid_models.common import UserError

        raise UserError("bench --query --reuse keeps a store file: without --db")
    name = f"camreid_bench_query_{os.getpid()}"
    schema_url = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{name}"
    os.environ["CAMREID_INDEX_DIR"] = str((out / "index").resolve())
    con = open_backend(url).connect(readonly=False, purpose="bench")
    try:
        con.execute(f"CREATE SCHEMA {name}")
        try:
            figures = _run_query_bench(schema_url, samples, dim, out, queries, None, progress, False)
        finally:
            con.execute(f"DROP SCHEMA {name} CASCADE")
            shutil.rmtree(index_dir(schema_url).parent, ignore_errors=True)
    finally:
        con.close()
    figures["store"] = f"{open_backend(url).display} (schema {name}, dropped)"
    if json_path is not None:
        with atomic_output(Path(json_path)) as tmp:
            Path(tmp).write_text(json.dumps(figures, indent=2))
    return figures


def _read_through(folder: Path) -> None:
    """Read the index's ANN file once (into the page cache, not this process): every unfiltered query
    probes different lists of it, so without this a "warm" figure measures disk reads of whatever the
    build or earlier benchmark steps evicted. The float32 vectors (re-scored rows) are not pre-read."""
    for f in folder.glob("ann-*.faiss"):
        with open(f, "rb", buffering=0) as fh:
            while fh.read(1 << 24):
                pass


def _run_query_bench(db: Path | str, samples: int, dim: int, out: Path, queries: int,
                     json_path: str | Path | None, progress: bool, reuse: bool) -> dict:
    layout_file = out / f"query-{samples}x{dim}.layout.npz"
    figures: dict = {"samples": samples, "dim": dim, "store": str(db), "index": str(index_dir(db))}
    pg = isinstance(db, str)
    if not pg and reuse and db.is_file() and layout_file.is_file():
        z = np.load(layout_file, allow_pickle=False)
        layout = {"centres": z["centres"], "cameras": [str(c) for c in z["cameras"]], "span_s": float(z["span_s"])}
        figures["build_store_s"] = None
    else:
        for p in () if pg else (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            p.unlink(missing_ok=True)
        import shutil

        shutil.rmtree(index_dir(db), ignore_errors=True)
        layout = build_store(db, samples, dim, progress=progress)
        np.savez(layout_file, centres=layout["centres"], cameras=np.array(layout["cameras"]),
                 span_s=layout["span_s"])
        figures.update(build_store_s=layout["seconds"], tracks=layout["tracks"], identities=layout["identities"])
    report = update_index(db, rebuild=not reuse, progress=progress)
    figures.update(build_index_s=report.seconds if not reuse else None, ann_rows=report.ann_rows)
    figures["store_mib"] = _pg_schema_size_mib(db) if pg else db.stat().st_size / 2**20
    figures["index_mib"] = sum(f.stat().st_size for f in index_dir(db).rglob("*") if f.is_file()) / 2**20
    qs = make_queries(layout, queries)
    vector = out / "query.npy"
    np.save(vector, qs[0])
    cold = cold_query(db, vector, out / "cold_query")
    figures.update(cold_query_s=cold["seconds"], cold_query_rss_mib=cold["rss_mib"], query_command=cold["command"])
    cam = layout["cameras"][0]
    span = layout["span_s"]
    window = {"cameras": [cam], "since": T0 + 0.3 * span, "until": T0 + 0.4 * span}  # ~1/10 of the time
    with StoreReader(db) as store:
        n_filtered = int(sum(t.n_samples for t in store.tracks(camera=cam, since=window["since"],
                                                                 until=window["until"])))
        figures["filter"] = {"camera": cam, "since": window["since"], "until": window["until"],
                             "samples": n_filtered, "fraction": n_filtered / samples}
        _read_through(index_dir(db))  # warm: the ANN index file in the page cache, as on a query server
        search_tracks(store, qs[0], top=10)  # and the index opened
        for name, filt in (("unfiltered", {}), ("filtered", window)):
            times, got, methods = _latency(store, qs, **filt)
            exact = [_keys(search_tracks(store, q, top=10, method="exact", **filt)) for q in qs]
            figures[name] = {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
                             "recall_at_10": _recall(got, exact), "method": max(set(methods), key=methods.count),
                             "queries": len(qs)}
    figures["rss_mib_bench_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures["measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    figures["cpus"] = os.cpu_count()
    if json_path is not None:
        with atomic_output(Path(json_path)) as tmp:
            Path(tmp).write_text(json.dumps(figures, indent=2))
    return figures


def format_figures(f: dict) -> str:
    """The figures as lines for the terminal."""
    def ms(section: str) -> str:
        s = f[section]
        return (f"{section:>10}: p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, recall@10 "
                f"{s['recall_at_10']:.3f} ({s['method']}, {s['queries']} queries)")
    build = "reused" if f.get("build_store_s") is None else f"{f['build_store_s']:.0f} s"
    index = "" if f.get("build_index_s") is None else f", index {f['build_index_s']:.0f} s"
    flt = f["filter"]
    return "\n".join([
        f"query bench: {f['samples']} samples x {f['dim']}-d; store {build}{index}; "
        f"store {f['store_mib']:.0f} MiB, index {f['index_mib']:.0f} MiB",
        f"cold first query (fresh process, end to end): {f['cold_query_s']:.2f} s, "
        f"peak RSS {f['cold_query_rss_mib']:.0f} MiB",
        ms("unfiltered"),
        ms("filtered") + f"; filter camera {flt['camera']} + window: {flt['samples']} samples "
        f"({100 * flt['fraction']:.2f}%)",
        (f"store {f['store']}" if "dropped" in str(f["store"]) else
         f"store left at {f['store']} (query it: {f['query_command']})"),
    ])
