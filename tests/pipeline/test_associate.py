"""CrossCameraAssociator: similarity + time constraints + lap, on stores of real crops.

Embeddings are generated unit vectors with exact cosines (no embedder is available to these tests).
"""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.associate import CrossCameraAssociator, _Span
from pipeline.config import AssociationConfig, TransitRule
from pipeline.store import TrackStore
from tests.pipeline.store.test_store import add_track, make_store, near, sql, unit


def cfg(threshold=0.6, transit=(), min_track_samples=1) -> AssociationConfig:
    return AssociationConfig(threshold=threshold, min_track_samples=min_track_samples,
                             transit=tuple(TransitRule(cameras=c, min_seconds=lo, max_seconds=hi)
                                           for c, lo, hi in transit))


@pytest.fixture
def store(store_db):
    s = make_store(store_db[1])
    s.start_run({})
    for cam in ("cam1", "cam2", "cam3"):
        s.add_camera(cam, "vtest.avi")
    yield s
    s.close()


def gid(store: TrackStore, pk: int) -> int | None:
    return {t.id: t.global_id for t in store.reader.tracks()}[pk]


def test_links_same_person_across_cameras(store):
    rng = np.random.default_rng(0)
    p, q = unit(rng), unit(rng)
    p1 = add_track(store, "cam1", 1, 0, 10, np.stack([near(p, 0.9, rng) for _ in range(3)]))
    q1 = add_track(store, "cam1", 2, 0, 10, np.stack([near(q, 0.9, rng) for _ in range(3)]), person=1)
    p2 = add_track(store, "cam2", 1, 20, 30, np.stack([near(p, 0.9, rng) for _ in range(3)]))
    q2 = add_track(store, "cam2", 2, 40, 50, np.stack([near(q, 0.9, rng) for _ in range(3)]), person=1)
    assoc = CrossCameraAssociator(cfg())
    assert assoc.link(store) == 4
    assert gid(store, p1) == gid(store, p2) != gid(store, q1) == gid(store, q2)
    assert store.reader.identities() == {gid(store, p1): ["cam1", "cam2"], gid(store, q1): ["cam1", "cam2"]}
    links = store.reader.links()
    assert len(links) == 4 and {m for *_, m in links} == {"cluster"} and all(s > 0.6 for _, _, s, _ in links)
    assert assoc.link(store) == 0  # nothing left to link


def test_overlapping_tracks_are_never_one_person(store):
    rng = np.random.default_rng(1)
    p = unit(rng)
    a = add_track(store, "cam1", 1, 0, 10, p)
    b = add_track(store, "cam2", 1, 5, 15, p)  # same look, same time, other camera
    c = add_track(store, "cam1", 2, 8, 12, p)  # same camera, overlapping a
    d = add_track(store, "cam1", 3, 30, 40, p)  # re-entry in cam1 after a ended
    CrossCameraAssociator(cfg()).link(store)
    g = {k: gid(store, pk) for k, pk in zip("abcd", (a, b, c, d))}
    assert g["a"] != g["b"] and g["a"] != g["c"]
    assert len({g["a"], g["b"], g["c"]}) == 3  # b and c overlap too
    assert g["d"] in (g["a"], g["b"], g["c"])  # the later re-entry joins one of them


@pytest.mark.parametrize("start, linked", [(12, False), (40, True), (200, False)])
def test_transit_min_max_seconds(store, start, linked):
    rng = np.random.default_rng(2)
    p = unit(rng)
    a = add_track(store, "cam1", 1, 0, 10, p)
    b = add_track(store, "cam2", 1, start, start + 5, near(p, 0.95, rng))
    CrossCameraAssociator(cfg(transit=[(("cam2", "cam1"), 5, 60)])).link(store)
    assert (gid(store, a) == gid(store, b)) is linked


def test_accepts_the_pipeline_config_section(store):
    rng = np.random.default_rng(8)
    p = unit(rng)
    a = add_track(store, "cam1", 1, 0, 10, p)
    b = add_track(store, "cam2", 1, 12, 20, p)  # 2 s transit, the rule asks for >= 5
    config = AssociationConfig(threshold=0.6, min_track_samples=1,
                               transit=(TransitRule(cameras=("cam1", "cam2"), min_seconds=5.0),))
    assoc = CrossCameraAssociator(config)
    assert assoc.transit[("cam2", "cam1")] == (5.0, np.inf)
    assoc.link(store)
    assert gid(store, a) != gid(store, b)


def test_max_transit_applies_to_consecutive_sightings(store):
    rng = np.random.default_rng(3)
    p = unit(rng)
    a = add_track(store, "cam1", 1, 0, 10, p)
    b = add_track(store, "cam3", 1, 50, 60, p)  # no rule for cam1-cam3 or cam3-cam2
    c = add_track(store, "cam2", 1, 100, 110, p)  # 90 s after a, but b lies between
    CrossCameraAssociator(cfg(transit=[(("cam1", "cam2"), 0, 60)])).link(store)
    assert gid(store, a) == gid(store, b) == gid(store, c)


@pytest.mark.parametrize("threshold, linked", [(0.6, True), (0.8, False)])
def test_threshold(store, threshold, linked):
    rng = np.random.default_rng(4)
    p = unit(rng)
    a = add_track(store, "cam1", 1, 0, 10, p)
    b = add_track(store, "cam2", 1, 20, 30, near(p, 0.7, rng))
    CrossCameraAssociator(cfg(threshold)).link(store)
    assert (gid(store, a) == gid(store, b)) is linked


def test_min_track_samples(store):
    rng = np.random.default_rng(5)
    p = unit(rng)
    a = add_track(store, "cam1", 1, 0, 10, np.stack([p, p]))
    b = add_track(store, "cam2", 1, 20, 30, p)  # a single sample
    CrossCameraAssociator(cfg(min_track_samples=2)).link(store)
    assert gid(store, a) is not None and gid(store, b) is None


def test_new_tracks_match_identities_with_lap_across_runs(store_db):
    """Run 1 makes identities A and B; run 2's tracks x, y join them. Cosines: x-A .90, x-B .85,
    y-A .88, y-B .50: greedy would give x->A and leave y alone; lap gives x->B, y->A (cost .27 < .50)."""
    rng = np.random.default_rng(6)
    gram = np.array([[1, .7, .9, .88], [.7, 1, .85, .5], [.9, .85, 1, .75], [.88, .5, .75, 1]])
    basis = np.linalg.qr(rng.standard_normal((32, 4)))[0]
    a, b, x, y = (basis @ np.linalg.cholesky(gram).T).T.astype(np.float32)
    path = store_db[1]
    store = make_store(path)
    store.start_run({})
    pa = add_track(store, "cam1", 1, 0, 10, a)
    pb = add_track(store, "cam2", 1, 0, 10, b)  # overlaps pa: two people
    assoc = CrossCameraAssociator(cfg(0.6))
    assoc.link(store)
    ga, gb = gid(store, pa), gid(store, pb)
    assert ga != gb and assoc.last_stats == {"matched": 0, "clustered": 0, "new": 2}
    store.close()

    store = make_store(path)
    store.start_run({})
    px = add_track(store, "cam3", 1, 100, 110, x)
    py = add_track(store, "cam1", 1, 100, 110, y)  # overlaps px
    pz = add_track(store, "cam2", 9, 100, 110, unit(rng))  # a stranger
    assert assoc.link(store) == 2
    assert (gid(store, px), gid(store, py)) == (gb, ga)
    assert gid(store, pz) not in (ga, gb)
    methods = {t: (round(s, 2), m) for t, _, s, m in store.reader.links() if s is not None}
    assert methods == {px: (0.85, "match"), py: (0.88, "match")}
    ids = [r[0] for r in sql(path, "SELECT id FROM identities ORDER BY id")]  # link() committed them
    assert ids == sorted(set(ids)) and len(ids) == 3
    assert sql(path, "SELECT n_tracks FROM identities ORDER BY id") == [(2,), (2,), (1,)]
    store.close()


def test_two_new_tracks_join_one_identity_in_one_call(store):
    rng = np.random.default_rng(7)
    p = unit(rng)
    a = add_track(store, "cam1", 1, 0, 10, p)
    assoc = CrossCameraAssociator(cfg())
    assoc.link(store)
    b = add_track(store, "cam2", 1, 20, 30, near(p, 0.9, rng))
    c = add_track(store, "cam3", 1, 40, 50, near(p, 0.9, rng))
    assert assoc.link(store) == 2
    assert gid(store, a) == gid(store, b) == gid(store, c)
    assert assoc.last_stats["matched"] == 2


def vectors_with_gram(gram: list[list[float]], seed: int) -> np.ndarray:
    """(K, DIM) unit vectors whose pairwise cosines are exactly ``gram`` (K, K)."""
    gram = np.asarray(gram, np.float64)
    basis = np.linalg.qr(np.random.default_rng(seed).standard_normal((32, len(gram))))[0]
    return (basis @ np.linalg.cholesky(gram).T).T.astype(np.float32)


# A~B .92, B~C .92, A!~C .75: the prototype of {A, B} scores C at .852, above a .85 threshold
CHAIN = [[1, .92, .75], [.92, 1, .92], [.75, .92, 1]]


def test_a_chain_does_not_become_one_identity_in_one_call(store):
    a, b, c = vectors_with_gram(CHAIN, seed=9)
    pa = add_track(store, "cam1", 1, 0, 10, a)
    pb = add_track(store, "cam2", 1, 20, 30, b)
    pc = add_track(store, "cam3", 1, 40, 50, c)
    CrossCameraAssociator(cfg(0.85)).link(store)
    ga, gb, gc = gid(store, pa), gid(store, pb), gid(store, pc)
    assert len({ga, gb, gc}) == 2 and ga != gc  # B joins one of its look-alikes, never both
    scores = [s for *_, s, m in store.reader.links() if m == "cluster"]
    assert [round(s, 2) for s in scores] == [0.92, 0.92]  # average cosine to the cluster's other tracks


def test_a_chain_does_not_grow_an_identity_across_calls(store):
    """Identity {A, B} exists; C (like B, unlike A) arrives later: average .835 < .85, so C is new."""
    a, b, c = vectors_with_gram(CHAIN, seed=10)
    pa = add_track(store, "cam1", 1, 0, 10, a)
    pb = add_track(store, "cam2", 1, 20, 30, b)
    assoc = CrossCameraAssociator(cfg(0.85))
    assoc.link(store)
    assert gid(store, pa) == gid(store, pb)
    pc = add_track(store, "cam3", 1, 40, 50, c)
    assert assoc.link(store) == 0 and assoc.last_stats == {"matched": 0, "clustered": 0, "new": 1}
    assert gid(store, pc) not in (None, gid(store, pa))


def test_one_unlike_track_vetoes_a_match(store):
    """C averages .865 over identity {A, B} (.97, .76) but is unlike B: .76 < threshold - margin."""
    a, b, c = vectors_with_gram([[1, .85, .97], [.85, 1, .76], [.97, .76, 1]], seed=11)
    pa = add_track(store, "cam1", 1, 0, 10, a)
    pb = add_track(store, "cam2", 1, 20, 30, b)
    assoc = CrossCameraAssociator(cfg(0.85))
    assoc.link(store)
    assert gid(store, pa) == gid(store, pb)
    pc = add_track(store, "cam3", 1, 40, 50, c)
    assoc.link(store)
    assert gid(store, pc) != gid(store, pa)


def test_same_camera_tracks_sharing_a_frame_are_two_people():
    """One track ends in the frame where another starts on the same camera: both boxes were in
    that frame, so they cannot be one person however alike they look."""
    assoc = CrossCameraAssociator(AssociationConfig(threshold=0.5))
    a = [_Span("cam1", 0.0, 14.5)]
    assert not assoc.compatible(a, [_Span("cam1", 14.5, 20.0)])
    assert assoc.compatible(a, [_Span("cam1", 14.6, 20.0)])
    assert assoc.compatible(a, [_Span("cam2", 14.5, 20.0)])  # another camera may see the hand-over
