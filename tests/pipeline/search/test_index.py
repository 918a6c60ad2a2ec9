"""The search index beside a store (pipeline.search.index) and search through it (pipeline.search.rank).

Stores are written through the store's own write path (TrackStore, via pipeline.bench_query.build_store);
their vectors are synthetic, shaped like re-ID embeddings (no real store of this size exists). The
import check uses a store of real crops from the demo clip embedded with the real default embedder.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.bench_query import build_store, make_queries, run_query_bench
from pipeline.config import SearchConfig, StoreConfig
from pipeline.search import search_tracks
from pipeline.search.index import SearchIndex, index_dir, remove_samples, update_index
from pipeline.store import StoreReader, TrackStore, restage


def sql(path: Path | str, query: str, args: tuple = ()) -> list[tuple]:
    """Rows of a read-only SQL query (``?`` placeholders) on the SQLite file or PostgreSQL URL."""
    import sqlite3

    if isinstance(path, str) and path.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(path, autocommit=True) as con:
            return [tuple(r) for r in con.execute(query.replace("?", "%s"), args).fetchall()]

    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute(query, args).fetchall()
    finally:
        con.close()


REPO = Path(__file__).resolve().parents[3]
SMALL_ANN = SearchConfig(ann_min_rows=1000, exact_max_rows=500, exact_max_fraction=0.05)


def brute_force(db: Path, q: np.ndarray, cameras=None, since=None, until=None, top: int = 10,
                exclude=frozenset()) -> list[tuple]:
    """(rank, track id, sample id, score) of the reference search, straight from the SQLite file: every
    sample's cosine (but those of sample ids in ``exclude``), max per track, identities ranked by their
    best track (ties: smaller key first)."""
    where, args = [], []
    if cameras is not None:
        where.append(f"camera_id IN ({','.join('?' * len(cameras))})")
        args += list(cameras)
    if since is not None:
        where.append("end_time>=?")
        args.append(since)
    if until is not None:
        where.append("start_time<=?")
        args.append(until)
    tracks = dict(sql(db, "SELECT id, COALESCE(global_id, -1) FROM tracks WHERE n_samples>=1"
                      + (" AND " + " AND ".join(where) if where else ""), tuple(args)))
    best: dict[int, tuple[float, int]] = {}
    for sid, tid, blob in sql(db, "SELECT id, track_id, embedding FROM samples ORDER BY id"):
        if tid in tracks and sid not in exclude:
            s = float(np.frombuffer(blob, np.float32) @ q)
            if tid not in best or s > best[tid][0]:
                best[tid] = (s, sid)
    ident: dict[int, float] = {}
    for tid, (s, _) in best.items():
        key = tracks[tid] if tracks[tid] >= 0 else -tid
        ident[key] = max(ident.get(key, -np.inf), s)
    ranked = sorted(ident, key=lambda k: (-ident[k], k))[:top]
    rank = {k: r + 1 for r, k in enumerate(ranked)}
    rows = [(rank[k], tid, sid, s) for tid, (s, sid) in best.items()
            if (k := tracks[tid] if tracks[tid] >= 0 else -tid) in rank]
    return sorted(rows, key=lambda r: (r[0], -r[3], r[1]))


def as_rows(hits) -> list[tuple]:
    return [(h.rank, h.track_id, h.sample_id, h.score) for h in hits]


def same(got: list[tuple], want: list[tuple]) -> bool:
    return ([r[:3] for r in got] == [r[:3] for r in want]
            and np.allclose([r[3] for r in got], [r[3] for r in want], atol=1e-5))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A 6000-sample 32-d store (10 cameras, 16-sample tracks, linked identities) and its layout."""
    db = tmp_path_factory.mktemp("idx") / "s.db"
    layout = build_store(db, 6000, 32, progress=False)
    return db, layout


def filters(layout) -> list[dict]:
    t0 = 1714557600.0
    cams = layout["cameras"]
    return [{"cameras": [cams[0]], "since": t0 + 100, "until": t0 + 160}, {"cameras": cams[:3]},
            {"since": t0 + 300, "until": t0 + 320}, {}]


def test_index_matches_the_store_and_filtered_search_equals_brute_force(synthetic, tmp_path):
    db, layout = synthetic
    report = update_index(db, rebuild=True)
    assert report.rows == 6000 and report.ann_rows == 0 and report.rebuilt == "requested"
    with StoreReader(db) as store:
        index, why = SearchIndex.open(store)
        assert why == "" and index.rows == 6000 and index.meta.watermark == store.sample_extent()[1]
        ids, tracks, emb = next(store.iter_samples(chunk=10_000))
        assert np.array_equal(index.sample_ids, ids) and np.array_equal(index.track_ids, tracks)
        assert np.array_equal(index.vectors, emb)  # float32, bit for bit
        for q in make_queries(layout, 4):
            for f in filters(layout):
                info: dict = {}
                got = search_tracks(store, q, info=info, **f)
                assert info["method"] == "exact" and info["index"] == ""
                assert same(as_rows(got), brute_force(db, q, **f)), f


def test_store_without_index_is_searched_in_chunks_exactly(synthetic, tmp_path):
    db, layout = synthetic
    import shutil

    shutil.copy(db, tmp_path / "copy.db")
    with StoreReader(tmp_path / "copy.db") as store:
        q = make_queries(layout, 1)[0]
        info: dict = {}
        got = search_tracks(store, q, info=info)
        assert "no search index" in info["index"] and info["rows_scored"] == 6000
        assert same(as_rows(got), brute_force(tmp_path / "copy.db", q))


def test_incremental_append_and_samples_after_the_watermark(tmp_path):
    db = tmp_path / "s.db"
    layout = build_store(db, 3000, 32, progress=False)
    first = update_index(db, upto_id=1800)
    assert first.rows == 1800
    q = make_queries(layout, 1, seed=5)[0]
    with StoreReader(db) as store:  # 1200 samples past the watermark come from the store itself
        info: dict = {}
        assert same(as_rows(search_tracks(store, q, info=info)), brute_force(db, q))
        assert info["rows_scored"] == 3000
    second = update_index(db)
    assert second.added == 1200 and second.rows == 3000 and not second.rebuilt
    with StoreReader(db) as store:
        index, _ = SearchIndex.open(store)
        assert np.array_equal(index.sample_ids, np.arange(1, 3001))
    assert update_index(db).added == 0


def test_ann_recall_and_exact_listing(tmp_path):
    """Broad queries go to the ANN index; the listed scores stay exact and the top-10 identities
    agree with brute force on this clustered set."""
    db = tmp_path / "s.db"
    layout = build_store(db, 20000, 32, progress=False)
    report = update_index(db, cfg=SMALL_ANN)
    assert report.ann_rows == 20000 and report.ann_built
    recall = []
    with StoreReader(db) as store:
        for q in make_queries(layout, 20, seed=3):
            info: dict = {}
            got = search_tracks(store, q, config=SMALL_ANN, info=info)
            want = brute_force(db, q)
            assert info["method"] == "ann" and info["rows_scored"] < 20000
            exact = {(t, s): sc for _, t, s, sc in want}
            for _, t, s, sc in as_rows(got):  # every listed track's score is its exact best sample
                if (t, s) in exact:
                    assert sc == pytest.approx(exact[(t, s)], abs=1e-5)
            g = {h.global_id for h in got}
            w = {gid for (gid,) in sql(db, f"SELECT global_id FROM tracks WHERE id IN "
                                           f"({','.join(str(r[1]) for r in want)})")}
            recall.append(len(g & w) / len(w))
        f = filters(layout)[0]  # selective: exact, equal to brute force
        info = {}
        assert same(as_rows(search_tracks(store, q, config=SMALL_ANN, info=info, **f)), brute_force(db, q, **f))
        assert info["method"] == "exact"
    assert np.mean(recall) >= 0.95


def test_selective_filters_on_the_8_bit_copy_equal_brute_force(tmp_path):
    """A selective filter is scored on the track-ordered 8-bit copy, then exactly where it can matter:
    the listed tracks, samples and scores are brute force's, at every top, with samples appended after
    the copy (scored exactly) and with removed samples."""
    db = tmp_path / "s.db"
    layout = build_store(db, 24000, 32, progress=False)
    with StoreReader(db) as store:
        ids, _, _ = next(store.iter_samples(chunk=24000))
    report = update_index(db, cfg=SMALL_ANN, upto_id=int(ids[19999]))
    assert report.rows == 20000 and report.ann_built
    report = update_index(db, cfg=SMALL_ANN, upto_id=int(ids[21499]))  # 1500 rows after the copy
    assert report.rows == 21500 and not report.ann_built
    t0 = 1714557600.0
    cams = layout["cameras"]
    # 100 samples a second: the copy ends at 200 s, the index at 215 s, the store at 240 s
    selective = [{"cameras": [cams[1]], "since": t0 + 30, "until": t0 + 40},
                 {"cameras": [cams[2]], "since": t0 + 195, "until": t0 + 210},  # across the copy's end
                 {"cameras": cams[3:5], "since": t0 + 228, "until": t0 + 232}]  # after it: tail + store
    queries = make_queries(layout, 6, seed=5)
    with StoreReader(db) as store:
        index, _ = SearchIndex.open(store)
        assert index.meta.coded_rows == 20000 and index.coded is not None
        rescored = []
        for q in queries:
            for f in selective:
                for top in (1, 3, 10):
                    info: dict = {}
                    got = search_tracks(store, q, top=top, config=SMALL_ANN, info=info, **f)
                    assert info["method"] == "exact" and info["filter_copy"], f
                    assert same(as_rows(got), brute_force(db, q, top=top, **f)), (f, top)
                    rescored.append(info["rows_rescored"] / max(info["rows_scored"], 1))
        assert np.median(rescored) < 0.5  # the copy did the work: most rows were never read as float32
        top = search_tracks(store, queries[0], config=SMALL_ANN, **selective[0])[0]
    remove_samples(db, [top.sample_id])
    with StoreReader(db) as store:
        got = search_tracks(store, queries[0], config=SMALL_ANN, **selective[0])
    assert top.sample_id not in {h.sample_id for h in got}
    assert same(as_rows(got), brute_force(db, queries[0], exclude={top.sample_id}, **selective[0]))


def test_an_index_from_before_the_copy_gets_one_on_its_next_update(tmp_path):
    import shutil

    db = tmp_path / "s.db"
    build_store(db, 3000, 32, progress=False)
    update_index(db, cfg=SMALL_ANN)
    folder = index_dir(db)
    meta = json.loads((folder / "meta.json").read_text())
    shutil.rmtree(folder / meta.pop("coded_dir"))
    meta.pop("coded_rows")
    (folder / "meta.json").write_text(json.dumps(meta))  # as an index written before coded-N/ existed
    with StoreReader(db) as store:
        assert SearchIndex.open(store)[0].coded is None  # searched as before, on the float32 rows
    report = update_index(db, cfg=SMALL_ANN)
    assert not report.ann_built and report.added == 0
    with StoreReader(db) as store:
        index, _ = SearchIndex.open(store)
        assert index.meta.coded_rows == 3000 and index.coded is not None
        assert index.meta.ann_file == meta["ann_file"]


def test_reembed_makes_the_index_stale_and_update_rebuilds_it(tmp_path):
    db = tmp_path / "s.db"
    layout = build_store(db, 2000, 32, progress=False)
    update_index(db)
    rng = np.random.default_rng(9)
    with TrackStore(StoreConfig(path=str(db)), None, None) as store:
        pk, _ = restage.begin(store, "other-embedder", 32, {"embedder_id": "other-embedder"})
        todo = restage.pending(store, pk)
        restage.stage(store, pk, todo.id, rng.standard_normal((len(todo), 32)).astype(np.float32),
                      ["thumbnail"] * len(todo))
        restage.finish(store, pk, "other-embedder", 32, {"embedder_id": "other-embedder"})
    q = make_queries(layout, 1)[0]
    with StoreReader(db) as store:
        index, why = SearchIndex.open(store)
        assert index is None and "another store or embedder" in why
        info: dict = {}
        assert same(as_rows(search_tracks(store, q, info=info)), brute_force(db, q))  # the new vectors
    report = update_index(db)
    assert report.rebuilt and report.rows == 2000
    with StoreReader(db) as store:
        index, why = SearchIndex.open(store)
        assert why == ""
        assert np.array_equal(index.vectors[:5], next(store.iter_samples(chunk=5))[2])


def test_removed_samples_are_skipped_and_dropped_on_rebuild(synthetic, tmp_path):
    import shutil

    db = tmp_path / "s.db"
    shutil.copy(synthetic[0], db)
    update_index(db)
    q = make_queries(synthetic[1], 1)[0]
    with StoreReader(db) as store:
        top = search_tracks(store, q)[0]
    assert remove_samples(db, [top.sample_id]) == 1
    with StoreReader(db) as store:
        assert top.sample_id not in {h.sample_id for h in search_tracks(store, q)}
    report = update_index(db, rebuild=True)
    assert report.rows == 6000 and not (index_dir(db) / "removed.i64").exists()


def test_a_long_lived_reader_answers_from_the_current_index(synthetic, tmp_path):
    """One reader kept open (as `pipeline serve` does) sees an index that was updated, had samples
    removed (erasure) or appeared after it first searched."""
    import shutil

    from pipeline.search.rank import open_index

    db = tmp_path / "s.db"
    shutil.copy(synthetic[0], db)
    q = make_queries(synthetic[1], 1)[0]
    with StoreReader(db) as store:
        assert open_index(store)[0] is None  # no index yet: searched exactly
        first = search_tracks(store, q)
        update_index(db, upto_id=4000)
        index = open_index(store)[0]
        assert index is not None and index.rows == 4000 and open_index(store)[0] is index  # opened once
        assert same(as_rows(search_tracks(store, q)), as_rows(first))
        update_index(db)
        assert open_index(store)[0].rows == 6000
        top = first[0]
        remove_samples(db, [top.sample_id])
        assert top.sample_id not in {h.sample_id for h in search_tracks(store, q)}
        assert same(as_rows(search_tracks(store, q)), brute_force(db, q, exclude={top.sample_id}))


KILLER = r"""
import os, signal, sys
import pipeline.search.index as ix
real = os.replace
def replace(src, dst):
    if str(dst).endswith("meta.json"):
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 after the data is written, before meta points at it
    return real(src, dst)
ix.os.replace = replace
ix.update_index(sys.argv[1])
"""


def test_kill_9_during_an_update_leaves_the_previous_index(tmp_path):
    db = tmp_path / "s.db"
    layout = build_store(db, 3000, 32, progress=False)
    update_index(db, upto_id=1000)
    proc = subprocess.run([sys.executable, "-c", KILLER, str(db)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    vectors = index_dir(db) / "vectors.f32"
    assert vectors.stat().st_size == 3000 * 32 * 4  # the appended rows are there, but not committed
    q = make_queries(layout, 1)[0]
    with StoreReader(db) as store:
        index, why = SearchIndex.open(store)
        assert why == "" and index.rows == 1000  # the previous, complete index
        assert same(as_rows(search_tracks(store, q)), brute_force(db, q))
    report = update_index(db)
    assert report.added == 2000 and report.rows == 3000 and vectors.stat().st_size == 3000 * 32 * 4


def test_kill_9_during_a_rebuild_keeps_a_usable_index(tmp_path):
    db = tmp_path / "s.db"
    build_store(db, 1500, 32, progress=False)
    update_index(db)
    proc = subprocess.run([sys.executable, "-c", KILLER.replace("ix.update_index(sys.argv[1])",
                                                                "ix.update_index(sys.argv[1], rebuild=True)"),
                           str(db)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with StoreReader(db) as store:
        index, why = SearchIndex.open(store)
        assert why == "" and index.rows == 1500
    assert update_index(db, rebuild=True).rows == 1500
    assert not index_dir(db).with_name(index_dir(db).name + ".tmp").exists()


@pytest.fixture(scope="module")
def real_store(tmp_path_factory):
    """Two copies of a store of 12 real person crops from the demo clip, embedded by the real default
    embedder; the first also holds the embedder exported to ONNX (as `run` leaves it). Returns
    (db with ONNX, db without, the embedder)."""
    import shutil

    from pipeline.config import EmbedderConfig
    from pipeline.search.index import export_query_embedder
    from pipeline.stages.embed import Embedder
    from pipeline.types import Detections, Frame
    from tests.pipeline.store.test_store import PERSON_BOXES, clip_frames, crop

    emb = Embedder(EmbedderConfig(), device="cpu")
    root = tmp_path_factory.mktemp("real")
    db = root / "real.db"
    with TrackStore(StoreConfig(path=str(db)), emb.embedder_id, emb.dim, emb.spec) as store:
        store.start_run({})
        for i, image in enumerate(clip_frames(4)):
            crops = [crop(image, b) for b in PERSON_BOXES]
            dets = Detections(np.array(PERSON_BOXES, np.float32), np.full(3, 0.9, np.float32), np.zeros(3, np.int64),
                              np.arange(3), emb(crops))
            frame = Frame("north", i, 1714557600.0 + i, image)
            store.record_frame(frame, dets)
            store.add_samples(frame, dets, np.arange(3), crops)
    (root / "plain").mkdir()
    shutil.copy(db, root / "plain" / "real.db")
    assert export_query_embedder(db, emb) is None
    return db, root / "plain" / "real.db", emb


IMPORTS = r"""
import json, sys
from pipeline.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "loaded": [m for m in ("ultralytics", "torchvision", "faiss", "torch")
                                            if m in sys.modules]}))
"""


@pytest.mark.parametrize("command", ["query-onnx", "query-torch", "export"])
def test_query_and_export_do_not_import_ultralytics(real_store, tmp_path, command):
    """query and export never import ultralytics or torchvision; with the ONNX copy of the embedder a
    photo query imports no torch either, and ranks as the PyTorch embedder does."""
    db = real_store[1] if command == "query-torch" else real_store[0]
    args = (["query", "--db", str(db), "--image", str(REPO / "streams" / "suspect.jpg"), "--out",
             str(tmp_path / "q"), "--device", "cpu"] if command != "export" else
            ["export", "--db", str(db), "--format", "mot", "--out", str(tmp_path / "e")])
    proc = subprocess.run([sys.executable, "-c", IMPORTS, *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "YOLO_OFFLINE": "1"})
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["code"] == 0, proc.stderr
    assert "ultralytics" not in out["loaded"] and "torchvision" not in out["loaded"]
    assert ("torch" in out["loaded"]) == (command == "query-torch")
    if command.startswith("query"):
        import cv2

        got = json.loads((tmp_path / "q" / "results.json").read_text())["sightings"]
        with StoreReader(db) as store:  # the PyTorch embedder's vector of the same photo
            want = search_tracks(store, real_store[2]([cv2.imread(str(REPO / "streams" / "suspect.jpg"))])[0])
        assert [h["track_id"] for h in got] == [h.track_id for h in want]
        assert np.allclose([h["score"] for h in got], [h.score for h in want], atol=1e-3)


def test_bench_query_writes_its_figures(tmp_path):
    figures = run_query_bench(3000, 16, out_dir=tmp_path / "b", queries=4, json_path=tmp_path / "f.json",
                              progress=False)
    data = json.loads((tmp_path / "f.json").read_text())
    for key in ("build_store_s", "build_index_s", "cold_query_s", "cold_query_rss_mib", "store", "query_command"):
        assert key in data, key
    for section in ("unfiltered", "filtered"):
        assert {"p50_ms", "p99_ms", "recall_at_10"} <= set(data[section])
        assert data[section]["recall_at_10"] == 1.0  # 3000 samples: below the ANN size, exact
    assert 0.003 < data["filter"]["fraction"] < 0.1  # ~1% on a large store; tracks overlap the window
    assert Path(data["store"]).is_file() and figures["samples"] == 3000
    proc = subprocess.run(data["query_command"].split(), cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0 and "rank" in proc.stdout.lower()  # the store can be queried again by hand


def test_index_command_and_the_runs_updater(tmp_path, capsys):
    from pipeline.cli import main
    from pipeline.search.index import IndexUpdater

    db = tmp_path / "s.db"
    build_store(db, 2500, 16, progress=False)
    updater = IndexUpdater(db, interval=0.0)  # what the runner does after its commits and at the end
    updater.poke()
    assert updater.finish() is None
    with StoreReader(db) as store:
        assert SearchIndex.open(store)[0].rows == 2500
    assert main(["index", "--db", str(db), "--rebuild", "--quiet"]) == 0
    out = capsys.readouterr()
    assert "2500 samples, rebuilt (requested)" in out.out and "no ANN index" in out.out
    assert "cannot be rebuilt" in out.err  # a synthetic embedder has no network to export
    assert main(["index", "--db", str(tmp_path / "missing.db")]) == 2
    assert "error:" in capsys.readouterr().err


def test_query_vector_argument_errors_are_one_line(synthetic, tmp_path, capsys):
    from pipeline.cli import main

    db, layout = synthetic
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.ones(7, np.float32))
    assert main(["query", "--db", str(db), "--vector", str(wrong), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "32-d" in err and len(err.strip().splitlines()) == 1
    good = tmp_path / "q.npy"
    np.save(good, make_queries(layout, 1)[0])
    assert main(["query", "--db", str(db), "--vector", str(good), "--out", str(tmp_path / "o"), "--exact"]) == 0
    assert (tmp_path / "o" / "results.json").is_file()


@pytest.mark.slow
def test_a_run_leaves_its_index_and_onnx_embedder(demo_run):
    """`run` (the real pipeline) indexes what it stored and exports its embedder for light queries."""
    from pipeline.search.index import embedder_dir
    from pipeline.stages.embed_onnx import OnnxEmbedder

    with StoreReader(demo_run.db) as store:
        index, why = SearchIndex.open(store)
        assert why == "" and index.rows == store.sample_extent()[0] > 0
        assert OnnxEmbedder.load(embedder_dir(demo_run.db), store.embedder_id) is not None
