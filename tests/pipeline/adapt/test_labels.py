"""Pseudo-labels of site adaptation: co-occurrence negatives, clustering that never merges them, batches."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.adapt.labels import (
    CooccurrenceBatches,
    cluster_tracks,
    cooccurrence,
    frame_groups,
    identity_negatives,
    select_boxes,
)


def test_tracks_in_one_frame_of_one_camera_are_negatives():
    # tracks 0, 1 share frame 5 of camera 0; track 2 is in frame 5 but of camera 1; track 3 alone
    track = np.array([0, 1, 2, 3, 0])
    camera = np.array([0, 0, 1, 0, 0])
    frame = np.array([5, 5, 5, 9, 6])
    cooc = cooccurrence(track, camera, frame, 4)
    assert cooc[0, 1] and cooc[1, 0]
    assert not cooc[0, 2] and not cooc[1, 2] and not cooc[:, 3].any()
    assert not cooc.diagonal().any()


def test_clustering_merges_mutual_neighbours_but_never_cooccurring_tracks():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=16), rng.normal(size=16)
    emb = np.stack([a, a + 0.01 * rng.normal(size=16), a + 0.02 * rng.normal(size=16), b,
                    b + 0.01 * rng.normal(size=16)])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cooc = np.zeros((5, 5), bool)
    cooc[0, 1] = cooc[1, 0] = True       # 0 and 1 look alike but share a frame: two people
    cooc[0, 3] = cooc[3, 0] = True       # a certainly different pair gives the threshold
    cooc[2, 4] = cooc[4, 2] = True
    out = cluster_tracks(emb, cooc, quantile=0.99)
    lab = out.labels
    assert lab[0] != lab[1]
    assert lab[3] == lab[4]
    neg = identity_negatives(lab, cooc)
    for i, j in zip(*np.nonzero(cooc)):
        assert lab[i] != lab[j] and neg[lab[i], lab[j]]
    assert out.merges >= 2


def test_clustering_without_any_negative_pair_merges_nothing():
    emb = np.eye(3)
    out = cluster_tracks(emb, np.zeros((3, 3), bool))
    assert out.merges == 0 and len(set(out.labels)) == 3


def test_batches_take_identities_seen_together():
    crop_id = np.repeat(np.arange(6), 5)
    groups = frame_groups(np.array([0, 1, 2, 3, 4, 5]), np.zeros(6, int), np.array([1, 1, 1, 2, 2, 2]),
                          np.arange(6))
    assert sorted(map(tuple, groups)) == [(0, 1, 2), (3, 4, 5)]
    batches = CooccurrenceBatches(crop_id, groups, p=3, k=4)
    batch = batches.batch(np.random.default_rng(1))
    ids = crop_id[batch].reshape(3, 4)
    assert (ids == ids[:, :1]).all()                          # K crops of each identity
    assert set(ids[:, 0]) in ({0, 1, 2}, {3, 4, 5})           # one co-occurring group


def test_select_boxes_strides_caps_and_skips_edges():
    n = 30
    track = np.zeros(n, int)
    frame = np.arange(n)
    xyxy = np.tile(np.array([[10, 10, 40, 100]], np.float32), (n, 1))
    xyxy[0] = [0, 10, 30, 100]           # touches the left edge
    xyxy[1] = [10, 10, 40, 30]           # 20 px tall
    rows = select_boxes(track, frame, xyxy, np.ones(n), np.tile([768, 576], (n, 1)), stride=2, cap=5,
                        min_height=40, min_confidence=0.3, border=2)
    assert 0 not in rows and 1 not in rows
    assert len(rows) == 5 and np.all(np.diff(frame[rows]) >= 2)


def test_batches_need_two_identities():
    with pytest.raises(ValueError, match="at least 2 identities"):
        CooccurrenceBatches(np.zeros(4, int), [], p=2, k=2)
