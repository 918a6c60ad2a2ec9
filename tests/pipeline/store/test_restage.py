"""Schema v2 (which embedder made each vector) and the staged, all-at-once swap behind ``reembed``."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from pipeline.config import StoreConfig
from pipeline.store import SCHEMA_VERSION, StoreReader, TrackStore, restage
from pipeline.store.schema import MIGRATIONS

from .test_store import DIM, add_track, make_store, sql, unit


def test_a_v1_store_is_migrated_and_its_vectors_attributed(tmp_path):
    path = tmp_path / "v1.db"
    con = sqlite3.connect(path)
    for stmt in MIGRATIONS[0].split(";"):
        if stmt.strip():
            con.execute(stmt)
    con.executemany("INSERT INTO meta VALUES (?, ?)", [("embedder_id", "old-net"), ("embedding_dim", str(DIM)),
                                                      ("embedder_spec", "{}")])
    con.execute("INSERT INTO runs(started, config) VALUES (0, '{}')")
    con.execute("INSERT INTO cameras(id, source) VALUES ('c', '')")
    con.execute("INSERT INTO tracks(run_id, camera_id, local_id, start_time, end_time, start_frame, end_frame) "
                "VALUES (1, 'c', 1, 0, 1, 0, 1)")
    con.execute("INSERT INTO samples(track_id, frame, time, x1, y1, x2, y2, confidence, embedding) "
                "VALUES (1, 0, 0, 0, 0, 10, 30, 0.9, ?)", (np.zeros(DIM, np.float32).tobytes(),))
    con.execute("PRAGMA user_version=1")
    con.commit()
    con.close()
    TrackStore(StoreConfig(path=str(path)), None, None).close()
    assert sql(path, "PRAGMA user_version")[0][0] == SCHEMA_VERSION == 6
    assert sql(path, "SELECT name, dim FROM embedders") == [("old-net", DIM)]
    assert sql(path, "SELECT embedder_id, embedded_from FROM samples") == [(1, "run")]


def test_staged_vectors_swap_in_at_once(store_db):
    rng = np.random.default_rng(0)
    _, path = store_db
    store = make_store(path)
    store.start_run()
    a = add_track(store, "cam", 1, 0, 2, np.stack([unit(rng) for _ in range(3)]))
    b = add_track(store, "cam", 2, 5, 7, np.stack([unit(rng) for _ in range(2)]))
    gid = store.new_identity()
    store.assign_identity(a, gid, None, "new")
    store.close()
    assert sql(path, "SELECT DISTINCT e.name FROM samples s JOIN embedders e ON e.id=s.embedder_id") == \
        [("test-embedder-v1",)]

    with TrackStore(StoreConfig(path=str(path)), None, None) as store:
        pk, done = restage.begin(store, "new-net", 8, {"checkpoint": "x.pt"})
        todo = restage.pending(store, pk)
        assert done == 0 and len(todo) == 5 and set(todo.track_id) == {a, b} and todo.camera == ("cam",) * 5
        new = rng.standard_normal((5, 8)).astype(np.float32)
        restage.stage(store, pk, todo.id[:2], new[:2], ["video", "video"])
    with StoreReader(path) as reader:  # half-way: the store still answers with the old embedder
        assert (reader.embedder_id, reader.embedding_dim) == ("test-embedder-v1", DIM)
        assert reader.sample_matrix()[2].shape == (5, DIM)
    with TrackStore(StoreConfig(path=str(path)), None, None) as store:
        pk2, done = restage.begin(store, "new-net", 8, {"checkpoint": "x.pt"})
        rest = restage.pending(store, pk2)
        assert pk2 == pk and done == 2 and list(rest.id) == list(todo.id[2:])
        with pytest.raises(ValueError, match="3 samples .* no staged vector"):
            restage.finish(store, pk, "new-net", 8, {})
        restage.stage(store, pk, rest.id, new[2:], ["thumbnail"] * 3)
        counts = restage.finish(store, pk, "new-net", 8, {"checkpoint": "x.pt"})
    assert counts == {"video": 2, "thumbnail": 3, "identities_cleared": 1}
    with StoreReader(path) as reader:
        assert (reader.embedder_id, reader.embedding_dim) == ("new-net", 8)
        s = reader.samples_of([a, b])
        unit_new = new / np.linalg.norm(new, axis=1, keepdims=True)
        assert np.allclose(s.embedding, unit_new[np.argsort(todo.id)], atol=1e-6)
        mean = unit_new[:3].mean(0)
        assert np.allclose(reader.track_embeddings([a])[0], mean / np.linalg.norm(mean), atol=1e-6)
        assert all(t.global_id is None for t in reader.tracks()) and reader.links() == []
    assert sql(path, "SELECT COUNT(*) FROM pending_embeddings")[0][0] == 0
    assert sql(path, "SELECT value FROM meta WHERE key='reembed_target'") == []


def test_finish_keeps_manual_links_and_rejections(tmp_path):
    """reembed clears automatic identities only: a merged (manual) pair and a rejection survive."""
    from pipeline.access import corrections

    rng = np.random.default_rng(1)
    path = tmp_path / "s.db"
    store = make_store(path)
    store.start_run()
    a, b, c = (add_track(store, "cam", k, 10 * k, 10 * k + 2, np.stack([unit(rng)])) for k in (1, 2, 3))
    ga, gb, gc = store.new_identity(), store.new_identity(), store.new_identity()
    for t, g in ((a, ga), (b, gb), (c, gc)):
        store.assign_identity(t, g, None, "new")
    store.close()
    corrections.merge_identities(path, ga, gb, "os:op")   # b joins a by hand
    corrections.reject_link(path, c, "os:op")              # c is not gc
    with TrackStore(StoreConfig(path=str(path)), None, None) as store:
        pk, _ = restage.begin(store, "new-net", 4, {})
        todo = restage.pending(store, pk)
        restage.stage(store, pk, todo.id, rng.standard_normal((len(todo), 4)).astype(np.float32), ["video"] * 3)
        counts = restage.finish(store, pk, "new-net", 4, {})
    assert counts["identities_cleared"] == 1  # a's automatic link
    with StoreReader(path) as reader:
        gids = {t.id: t.global_id for t in reader.tracks()}
        assert gids == {a: None, b: ga, c: None} and reader.rejected_links() == {(c, gc)}
    # gb stays, empty, as the target of b's link history; gc (automatic only) is gone
    assert sorted(sql(path, "SELECT id, n_tracks FROM identities")) == [(ga, 1), (gb, 0)]
