"""Re-ID retrieval metrics in pure numpy: distance matrices, CMC, mAP and mINP.

Protocol (Market-1501, the one every paper here reports; same semantics as torchreid's
``eval_market1501`` and the official Market-1501 MATLAB code):

* For each query, gallery samples with the query's person id AND camera id are removed
  (same-view matches are too easy and do not count, as positives or negatives).
* Gallery samples with pid ``-1`` ("junk" images of Market-1501) are removed for every query.
  The official code lists them as junk; torchreid drops them when reading the dataset, which
  is the same thing. Market's pid ``0`` images ("distractors") stay in the gallery and count as
  ordinary wrong matches.
* Queries left without any correct gallery match are skipped (not counted as failures);
  if no query at all has a match, that is an error (wrong split or wrong ids).
* CMC(k) = fraction of valid queries whose first correct match is within the top k.
  AP = mean over the correct matches of the precision at each correct match's rank.
  INP = (number of correct matches) / (rank of the hardest correct match) (Ye et al., AGW,
  TPAMI 2021); mINP is its mean over valid queries.
* Distance ties are broken by gallery order (stable sort); torchreid's quicksort breaks them
  arbitrarily, so results can only differ there.
"""
from __future__ import annotations

import numpy as np

from .common import l2_normalize

JUNK_PID = -1
_QUERY_CHUNK = 128  # queries ranked at once: bounds memory to ~100 MB at G = 16k


def compute_distmat(qf: np.ndarray, gf: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """Pairwise distances between query and gallery features.

    qf: (Q, D) features; gf: (G, D) features (numpy or CPU tensors).
    metric: ``"euclidean"`` (plain L2 distance, not squared) or ``"cosine"`` (1 - cosine
    similarity, in [0, 2]; features are L2-normalised here, zero vectors stay zero).
    Returns (Q, G) float32 (computed in float32 like torchreid: distances between near-identical
    features carry an absolute error of about 1e-3 times the feature norm).
    """
    qf = np.asarray(qf, dtype=np.float32)
    gf = np.asarray(gf, dtype=np.float32)
    if qf.ndim != 2 or gf.ndim != 2 or qf.shape[1] != gf.shape[1]:
        raise ValueError(f"compute_distmat needs qf (Q, D) and gf (G, D) with the same D; "
                         f"got {qf.shape} and {gf.shape}")
    if metric == "euclidean":
        sq = (qf * qf).sum(1)[:, None] + (gf * gf).sum(1)[None, :] - 2.0 * (qf @ gf.T)
        return np.sqrt(np.maximum(sq, 0.0, out=sq), out=sq)
    if metric == "cosine":
        return (1.0 - l2_normalize(qf) @ l2_normalize(gf).T).astype(np.float32, copy=False)
    raise ValueError(f"unknown metric {metric!r}; use 'euclidean' or 'cosine'")


def _as_ids(name: str, a, n: int) -> np.ndarray:
    a = np.asarray(a)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match distmat, got {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integer ids, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def _ranked_order(d: np.ndarray) -> np.ndarray:
    """Gallery indices by increasing distance, ties by index. d: (b, G) -> (b, G) int64.

    Same result as a stable argsort, but sorts unique uint64 keys (float32 distance bits in the
    high word, gallery index in the low word) with numpy's fast SIMD sort. Distances are
    compared in float32 precision.
    """
    bits = (np.asarray(d, dtype=np.float32) + np.float32(0.0)).view(np.uint32)  # -0.0 -> +0.0
    bits = np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000))  # order-preserving map
    keys = (bits.astype(np.uint64) << np.uint64(32)) | np.arange(d.shape[1], dtype=np.uint64)
    keys.sort(axis=1)
    return (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)


def evaluate_rank(distmat: np.ndarray, q_pids, g_pids, q_camids, g_camids,
                  max_rank: int = 50) -> tuple[np.ndarray, float, float]:
    """CMC, mAP and mINP under the Market-1501 protocol (see the module docstring).

    distmat: (Q, G) distances, smaller = more similar.
    q_pids, q_camids: (Q,) int; g_pids, g_camids: (G,) int (pid -1 = junk).
    max_rank: length of the returned CMC; ranks past the gallery size repeat the last value.
    Returns (cmc (max_rank,) float64 in [0, 1] with cmc[k-1] = Rank-k, mAP float, mINP float).
    Raises ValueError on shape mismatch, NaN distances, or when no query has a valid match.
    """
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be 2-D (Q, G), got shape {distmat.shape}")
    num_q, num_g = distmat.shape
    q_pids, q_camids = _as_ids("q_pids", q_pids, num_q), _as_ids("q_camids", q_camids, num_q)
    g_pids, g_camids = _as_ids("g_pids", g_pids, num_g), _as_ids("g_camids", g_camids, num_g)
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    if np.isnan(distmat).any():
        raise ValueError("distmat contains NaN (features with NaN/inf?); fix the features first")

    g_usable = g_pids != JUNK_PID
    ranks = np.arange(1, max_rank + 1)
    cmc_hits = np.zeros(max_rank, dtype=np.int64)
    ap_sum = inp_sum = 0.0
    num_valid = 0
    for start in range(0, num_q, _QUERY_CHUNK):
        stop = min(start + _QUERY_CHUNK, num_q)
        # masks in gallery order, (b, G): what counts for each query, and what is a correct match
        same_pid = g_pids[None, :] == q_pids[start:stop, None]
        keep = g_usable[None, :] & ~(same_pid & (g_camids[None, :] == q_camids[start:stop, None]))
        match = same_pid & keep
        valid = match.any(1)
        if not valid.any():
            continue
        order = _ranked_order(distmat[start:stop][valid])
        keep = np.take_along_axis(keep[valid], order, axis=1)  # now in ranked order
        match = np.take_along_axis(match[valid], order, axis=1)
        rank = np.cumsum(keep, axis=1, dtype=np.int32)  # 1-based rank among kept samples
        hits = np.cumsum(match, axis=1, dtype=np.int32)  # correct matches up to here
        rows, cols = np.nonzero(match)
        num_rel = np.bincount(rows, minlength=len(order))
        ap = np.bincount(rows, weights=hits[rows, cols] / rank[rows, cols], minlength=len(order)) / num_rel
        first = rank[np.arange(len(order)), np.argmax(match, axis=1)]
        last = rank[np.arange(len(order)), num_g - 1 - np.argmax(match[:, ::-1], axis=1)]
        cmc_hits += (first[:, None] <= ranks[None, :]).sum(0)
        ap_sum += float(ap.sum())
        inp_sum += float((num_rel / last).sum())
        num_valid += len(order)
    if num_valid == 0:
        raise ValueError("no query has a correct match in the gallery (after removing same-camera "
                         "and junk samples): check the query/gallery split and the pid/camid arrays")
    return cmc_hits / num_valid, ap_sum / num_valid, inp_sum / num_valid
