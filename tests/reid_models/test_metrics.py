"""reid_models.metrics: hand-computed Market-1501 protocol cases and a loop reference."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from reid_models.metrics import compute_distmat, evaluate_rank

# One query (pid 1, camera 0) against 7 gallery samples:
#   idx pid cam dist  status
#   g0   1   0  0.10  same pid AND same camera -> removed
#   g1   2   1  0.20  wrong
#   g2   1   1  0.30  correct
#   g3  -1   1  0.35  junk -> removed
#   g4   3   2  0.40  wrong
#   g5   1   2  0.50  correct
#   g6   0   3  0.05  distractor (pid 0) -> stays, wrong
# Kept ranking: g6 W, g1 W, g2 C, g4 W, g5 C -> correct matches at ranks 3 and 5.
# CMC = 0, 0, 1, 1, ...; AP = (1/3 + 2/5) / 2 = 0.366667; INP = 2 / 5 = 0.4.
G_PIDS = np.array([1, 2, 1, -1, 3, 1, 0])
G_CAMS = np.array([0, 1, 1, 1, 2, 2, 3])
ROW_Q0 = [0.10, 0.20, 0.30, 0.35, 0.40, 0.50, 0.05]


def test_single_query_by_hand():
    cmc, mAP, mINP = evaluate_rank(np.array([ROW_Q0]), np.array([1]), G_PIDS, np.array([0]), G_CAMS, max_rank=5)
    np.testing.assert_allclose(cmc, [0, 0, 1, 1, 1])
    assert mAP == pytest.approx((1 / 3 + 2 / 5) / 2)
    assert mINP == pytest.approx(0.4)


def test_three_valid_queries_and_one_skipped_by_hand():
    # q1: pid 2, cam 0: its only correct match g1 is nearest -> CMC 1..., AP 1, INP 1/1.
    # q2: pid 4: no pid 4 in the gallery -> skipped, not counted as a failure.
    # q3: pid 1, cam 1: g2 (same camera) removed, g3 junk removed; kept ranking
    #     g1 0.10 W, g0 0.25 C, g4 0.30 W, g5 0.40 C, g6 0.50 W -> correct at 2 and 4:
    #     CMC 0, 1, ...; AP = (1/2 + 2/4) / 2 = 0.5; INP = 2/4 = 0.5.
    # Over q0, q1, q3: Rank-1 = 1/3, Rank-2 = 2/3, Rank-3 = 1;
    # mAP = (0.366667 + 1 + 0.5) / 3 = 0.622222; mINP = (0.4 + 1 + 0.5) / 3 = 0.633333.
    distmat = np.array([
        ROW_Q0,
        [0.90, 0.10, 0.80, 0.70, 0.60, 0.50, 0.40],
        [0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70],
        [0.25, 0.10, 0.05, 0.20, 0.30, 0.40, 0.50],
    ])
    cmc, mAP, mINP = evaluate_rank(distmat, np.array([1, 2, 4, 1]), G_PIDS, np.array([0, 0, 0, 1]), G_CAMS,
                                   max_rank=10)
    assert cmc.shape == (10,)  # longer than the gallery: the last value repeats
    np.testing.assert_allclose(cmc, [1 / 3, 2 / 3] + [1.0] * 8)
    assert mAP == pytest.approx(((1 / 3 + 2 / 5) / 2 + 1 + 0.5) / 3)
    assert mAP == pytest.approx(0.622222, abs=1e-6)
    assert mINP == pytest.approx(1.9 / 3)


def test_same_camera_and_junk_samples_do_not_count():
    # Moving the removed samples (g0 same pid+camera, g3 junk) anywhere changes nothing ...
    base = evaluate_rank(np.array([ROW_Q0]), np.array([1]), G_PIDS, np.array([0]), G_CAMS, max_rank=5)
    for idx, d in [(0, 0.9), (3, 0.0), (3, 0.9)]:
        row = list(ROW_Q0)
        row[idx] = d
        moved = evaluate_rank(np.array([row]), np.array([1]), G_PIDS, np.array([0]), G_CAMS, max_rank=5)
        np.testing.assert_allclose(moved[0], base[0])
        assert moved[1:] == pytest.approx(base[1:])
    # ... while the same sample in another camera is a correct match at rank 2
    # (g6 W, g0 C, g1 W, g2 C, g4 W, g5 C): AP = (1/2 + 2/4 + 3/6) / 3 = 0.5.
    cams = G_CAMS.copy()
    cams[0] = 5
    cmc, mAP, mINP = evaluate_rank(np.array([ROW_Q0]), np.array([1]), G_PIDS, np.array([0]), cams, max_rank=3)
    np.testing.assert_allclose(cmc, [0, 1, 1])
    assert mAP == pytest.approx(0.5)
    assert mINP == pytest.approx(3 / 6)


def test_no_query_with_a_match_is_an_error():
    with pytest.raises(ValueError, match="no query has a correct match"):
        evaluate_rank(np.array([ROW_Q0]), np.array([7]), G_PIDS, np.array([0]), G_CAMS)
    # the only same-pid sample is in the query's own camera
    with pytest.raises(ValueError, match="no query has a correct match"):
        evaluate_rank(np.array([[0.1, 0.2]]), np.array([1]), np.array([1, 2]), np.array([0]), np.array([0, 1]))


def test_bad_inputs_are_errors():
    with pytest.raises(ValueError, match="g_pids"):
        evaluate_rank(np.zeros((1, 3)), np.array([1]), np.array([1, 2]), np.array([0]), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="NaN"):
        evaluate_rank(np.array([[np.nan, 0.1]]), np.array([1]), np.array([1, 1]), np.array([0]), np.array([1, 2]))
    with pytest.raises(ValueError, match="integer"):
        evaluate_rank(np.zeros((1, 2)), np.array([1.0]), np.array([1, 1]), np.array([0]), np.array([1, 2]))


def _loop_reference(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """Straight per-query loop in the style of torchreid's eval_market1501 (+ junk, + mINP)."""
    cmcs, aps, inps = [], [], []
    for q in range(len(q_pids)):
        order = np.argsort(distmat[q], kind="stable")
        drop = (g_pids[order] == -1) | ((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        hits = (g_pids[order] == q_pids[q])[~drop].astype(int)
        if not hits.any():
            continue
        cum = hits.cumsum()
        cmc = np.ones(max_rank)
        n = min(max_rank, len(cum))
        cmc[:n] = cum[:n] >= 1
        cmcs.append(cmc)
        aps.append((cum / np.arange(1, len(hits) + 1) * hits).sum() / hits.sum())
        last = np.nonzero(hits)[0].max()
        inps.append(cum[last] / (last + 1))
    return np.mean(cmcs, 0), np.mean(aps), np.mean(inps)


def test_matches_a_per_query_loop_on_random_data():
    rng = np.random.default_rng(0)
    num_q, num_g = 300, 400  # more queries than one internal chunk
    q_pids, q_cams = rng.integers(0, 40, num_q), rng.integers(0, 6, num_q)
    g_pids, g_cams = rng.integers(-1, 40, num_g), rng.integers(0, 6, num_g)
    distmat = rng.random((num_q, num_g)).astype(np.float32)
    distmat[:, ::7] = distmat[:, 3:4]  # some exact ties
    ours = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=50)
    ref = _loop_reference(distmat, q_pids, g_pids, q_cams, g_cams, 50)
    np.testing.assert_allclose(ours[0], ref[0])
    assert ours[1] == pytest.approx(ref[1], rel=1e-9)
    assert ours[2] == pytest.approx(ref[2], rel=1e-9)


def test_perfect_features_score_one():
    rng = np.random.default_rng(1)
    pids = np.repeat(np.arange(10), 4)
    cams = np.tile(np.arange(4), 10)
    feats = np.eye(10)[pids] + 0.01 * rng.normal(size=(40, 10))
    q, g = np.arange(40) % 4 == 0, np.arange(40) % 4 != 0
    cmc, mAP, mINP = evaluate_rank(compute_distmat(feats[q], feats[g], "cosine"), pids[q], pids[g], cams[q], cams[g])
    assert cmc[0] == 1.0 and mAP == pytest.approx(1.0) and mINP == pytest.approx(1.0)


def test_compute_distmat():
    rng = np.random.default_rng(2)
    qf, gf = rng.normal(size=(5, 8)), rng.normal(size=(7, 8))
    np.testing.assert_allclose(compute_distmat(qf, gf, "euclidean"), cdist(qf, gf), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(compute_distmat(qf, gf, "cosine"), cdist(qf, gf, "cosine"), atol=1e-5)
    assert compute_distmat(qf, gf).dtype == np.float32 and compute_distmat(qf, gf).shape == (5, 7)
    with pytest.raises(ValueError, match="same D"):
        compute_distmat(qf, gf[:, :4])
    with pytest.raises(ValueError, match="unknown metric"):
        compute_distmat(qf, gf, "manhattan")
