"""The search index of a PostgreSQL store (pipeline.search.index): kept in a local folder per database,
updated incrementally from the server, correct when several writers commit sample ids out of order,
and never used once samples it holds were deleted on the server. Skipped without PostgreSQL
(``pg_url``, tests/conftest.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pipeline.search.index as ix
from pipeline.bench_query import build_store, make_queries, run_query_bench
from pipeline.search import search_tracks
from pipeline.search.index import SearchIndex, index_dir, remove_samples, update_index
from pipeline.store import StoreReader, sidecar_base
from tests.pipeline.store.test_store import add_track, make_store, unit

from .test_index import SMALL_ANN, as_rows, brute_force, same, sql


@pytest.fixture
def local_index(tmp_path, monkeypatch) -> Path:
    """CAMREID_INDEX_DIR in tmp_path: where this test's machine keeps its copies."""
    folder = tmp_path / "indexes"
    monkeypatch.setenv("CAMREID_INDEX_DIR", str(folder))
    return folder


def test_index_folder_is_local_per_database_and_names_no_credentials(local_index):
    a = sidecar_base("postgresql://alice:s3cret@db.example:5433/cams")
    assert a == sidecar_base("postgresql://bob@db.example:5433/cams")  # one copy per database, any user
    assert a != sidecar_base("postgresql://alice@db.example:5433/other")
    assert a != sidecar_base("postgresql://alice@db.example:5433/cams?options=-csearch_path%3Dx")
    assert a.parent.parent == local_index and "s3cret" not in str(a) and "alice" not in str(a)
    assert not local_index.exists()  # nothing is made until an index is written
    assert index_dir("postgresql://alice@db.example:5433/cams") == a.with_name("store.index")
    assert sidecar_base("runs/x.db") == Path("runs/x.db")  # a store file keeps its index beside it


def test_build_incremental_update_and_search_equal_brute_force(pg_url, local_index):
    layout = build_store(pg_url, 3000, 32, progress=False)
    first = update_index(pg_url, upto_id=1800)  # exact (no ANN below ann_min_rows)
    assert first.rows == 1800 and Path(first.path).parent.parent == local_index
    qs = make_queries(layout, 3, seed=5)
    with StoreReader(pg_url) as store:  # the 1200 samples past the watermark come from the server
        for q in qs:
            info: dict = {}
            assert same(as_rows(search_tracks(store, q, info=info)), brute_force(pg_url, q))
            assert info["index"] == "" and info["rows_scored"] == 3000
    second = update_index(pg_url, cfg=SMALL_ANN)
    assert second.added == 1200 and second.rows == 3000 and not second.rebuilt and second.ann_rows == 3000
    with StoreReader(pg_url) as store:
        index, why = SearchIndex.open(store)
        assert why == "" and np.array_equal(np.sort(index.sample_ids), np.arange(1, 3001))
        for q in qs:
            assert same(as_rows(search_tracks(store, q, method="exact")), brute_force(pg_url, q))
            got = as_rows(search_tracks(store, q))  # the ANN path: its top hit is the brute force's
            assert got[0][:3] == brute_force(pg_url, q)[0][:3]
    assert update_index(pg_url).added == 0


def test_samples_committed_out_of_id_order_are_found_and_indexed(pg_url, local_index, monkeypatch):
    rng = np.random.default_rng(3)
    slow, fast = make_store(pg_url, commit_interval=3600), make_store(pg_url, commit_interval=3600)
    try:
        slow.start_run({"worker": "slow"})
        fast.start_run({"worker": "fast"})
        slow.add_camera("north", "a.avi")
        fast.add_camera("south", "b.avi")
        slow.commit()
        fast.commit()
        late = np.stack([unit(rng) for _ in range(3)])
        add_track(slow, "north", 1, 0, 1, late)  # takes the smaller sample ids, commits last
        add_track(fast, "south", 1, 0, 1, np.stack([unit(rng) for _ in range(3)]))
        fast.commit()
        slow_ids = list(sql(pg_url, "SELECT MIN(id), MAX(id) FROM samples")[0])
        assert slow_ids == [4, 6]  # only south's three (ids 4..6) are visible: north's 1..3 are in flight
        report = update_index(pg_url)
        assert report.rows == 3
        with StoreReader(pg_url) as store:
            index, _ = SearchIndex.open(store)
            assert index.meta.watermark == 6 and index.pending == [(1, 3)]
        slow.commit()  # north's ids 1..3 become visible below the watermark
        with StoreReader(pg_url) as store:  # a query reads the pending range from the server
            hits = search_tracks(store, late[1])
            assert hits[0].score == pytest.approx(1.0, abs=1e-5) and hits[0].sample_id == 2
            assert same(as_rows(hits), brute_force(pg_url, late[1]))
        assert update_index(pg_url).added == 3  # and the next update indexes them
        with StoreReader(pg_url) as store:
            index, _ = SearchIndex.open(store)
            assert sorted(index.sample_ids.tolist()) == [1, 2, 3, 4, 5, 6] and index.pending == []
        # ids of a rolled-back batch never come: given up once its writers ended and SETTLE_S passed
        add_track(fast, "south", 2, 2, 3, np.stack([unit(rng) for _ in range(3)]))
        add_track(slow, "north", 2, 2, 3, np.stack([unit(rng) for _ in range(3)]))
        fast._con.execute("ROLLBACK")  # south's 7..9 are dropped
        fast._open.clear()
        slow.commit()
        update_index(pg_url)
        with StoreReader(pg_url) as store:
            index, _ = SearchIndex.open(store)
            assert index.pending == [(7, 9)] and index.meta.watermark == 12
        monkeypatch.setattr(ix, "SETTLE_S", 0.0)
        update_index(pg_url)
        with StoreReader(pg_url) as store:
            index, _ = SearchIndex.open(store)
            assert index.pending == [] and index.rows == 9
    finally:  # an open batch would block the schema's DROP
        fast.close()
        slow.close()


def test_remove_samples_and_deletions_on_the_server(pg_url, local_index):
    layout = build_store(pg_url, 1200, 32, progress=False)
    update_index(pg_url)
    q = make_queries(layout, 1, seed=2)[0]
    with StoreReader(pg_url) as store:
        top = search_tracks(store, q)[0]
    gone = [r[0] for r in sql(pg_url, "SELECT id FROM samples WHERE track_id=?", (top.track_id,))]
    assert remove_samples(pg_url, gone) == len(gone)
    with StoreReader(pg_url) as store:
        assert all(h.track_id != top.track_id for h in search_tracks(store, q))
    # another machine erases a track: this machine's copy no longer matches the server and is not used
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("DELETE FROM samples WHERE track_id=(SELECT MAX(track_id) FROM samples)")
    with StoreReader(pg_url) as store:
        index, why = SearchIndex.open(store)
        assert index is None and "deleted" in why
        info: dict = {}
        assert same(as_rows(search_tracks(store, q, info=info)), brute_force(pg_url, q))
        assert info["index"] == why
    report = update_index(pg_url)
    assert report.rebuilt and report.rows == int(sql(pg_url, "SELECT COUNT(*) FROM samples")[0][0]) < 1200
    with StoreReader(pg_url) as store:
        assert SearchIndex.open(store)[1] == ""


def test_bench_query_on_a_postgresql_server(pg_server, tmp_path, monkeypatch):
    monkeypatch.setenv("CAMREID_INDEX_DIR", str(tmp_path / "unused"))  # the bench sets its own; restored after
    figures = run_query_bench(3000, 16, out_dir=tmp_path / "b", queries=4, progress=False, url=pg_server)
    assert figures["store"].endswith("dropped)") and figures["samples"] == 3000 and figures["store_mib"] > 0
    for section in ("unfiltered", "filtered"):
        assert figures[section]["recall_at_10"] == 1.0  # below the ANN size: exact through the index
    assert figures["cold_query_s"] > 0 and figures["index"].startswith(str((tmp_path / "b" / "index").resolve()))
    assert not any((tmp_path / "b" / "index").iterdir())  # the local index went with the schema


def test_index_and_query_commands_take_a_url_and_index_dir(pg_url, local_index, tmp_path, capsys):
    from pipeline.cli import main
    from pipeline.store.governance import drop_index_sidecars

    layout = build_store(pg_url, 1500, 16, progress=False)
    vector = tmp_path / "q.npy"
    np.save(vector, make_queries(layout, 1, seed=4)[0])
    folder = tmp_path / "mine"
    assert main(["index", "--db", pg_url, "--quiet", "--index-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "1500 samples, rebuilt" in out and str(folder) in out
    assert main(["query", "--db", pg_url, "--vector", str(vector), "--out", str(tmp_path / "r"),
                 "--index-dir", str(folder)]) == 0
    assert "no search index" not in capsys.readouterr().err  # the local copy was used
    assert not local_index.exists()  # --index-dir, not $CAMREID_INDEX_DIR (local_index restores it after)
    removed = drop_index_sidecars(pg_url)  # the erasure hook removes this machine's copy
    assert removed and all(str(p).startswith(str(folder)) for p in removed) and not index_dir(pg_url).exists()


def test_a_forgotten_identity_never_comes_back_from_another_machines_copy(pg_url, tmp_path, monkeypatch):
    from pipeline.access.erasure import forget_identity

    layout = build_store(pg_url, 1200, 32, progress=False)
    q = make_queries(layout, 1, seed=7)[0]
    here, there = tmp_path / "here", tmp_path / "there"
    for folder in (here, there):  # two machines, each with its own copy
        monkeypatch.setenv("CAMREID_INDEX_DIR", str(folder))
        update_index(pg_url)
    with StoreReader(pg_url) as store:
        gid = search_tracks(store, q)[0].global_id
    monkeypatch.setenv("CAMREID_INDEX_DIR", str(here))
    report = forget_identity(pg_url, gid, "os:tester")
    assert report.index_removed and not index_dir(pg_url).exists()  # this machine's copy is gone
    monkeypatch.setenv("CAMREID_INDEX_DIR", str(there))
    with StoreReader(pg_url) as store:  # the other machine's copy is ignored, not trusted
        index, why = SearchIndex.open(store)
        assert index is None and "deleted" in why
        hits = search_tracks(store, q, top=50)
        assert hits and gid not in {h.global_id for h in hits}
        assert same(as_rows(search_tracks(store, q)), brute_force(pg_url, q))
    assert update_index(pg_url).rebuilt  # and rebuilt by its next update


def test_interleaved_commits_of_two_writers_with_updates_between(pg_url, local_index):
    rng = np.random.default_rng(11)
    a, b = make_store(pg_url, commit_interval=3600), make_store(pg_url, commit_interval=3600)
    try:
        for w, cam in ((a, "north"), (b, "south")):
            w.start_run({"worker": cam})
            w.add_camera(cam, f"{cam}.avi")
            w.commit()
        local = {"north": 0, "south": 0}
        vectors: list[np.ndarray] = []
        for step in range(6):  # each step: both write, they commit in a random order, an update between
            for w, cam in ((a, "north"), (b, "south")):
                local[cam] += 1
                v = np.stack([unit(rng) for _ in range(int(rng.integers(1, 4)))])
                vectors.append(v[0])
                add_track(w, cam, local[cam], step, step + 0.5, v)
            first, second = (a, b) if rng.random() < 0.5 else (b, a)
            first.commit()
            update_index(pg_url)
            second.commit()
            with StoreReader(pg_url) as store:  # every committed sample is found, indexed or not
                for v in vectors:
                    info: dict = {}
                    assert same(as_rows(search_tracks(store, v, info=info)), brute_force(pg_url, v))
                    assert info["index"] == ""  # through the index (not the exact fallback of a stale one)
        update_index(pg_url)
        with StoreReader(pg_url) as store:
            index, _ = SearchIndex.open(store)
            stored = [r[0] for r in sql(pg_url, "SELECT id FROM samples ORDER BY id")]
            assert sorted(index.sample_ids.tolist()) == stored and index.pending == []
    finally:
        a.close()
        b.close()
