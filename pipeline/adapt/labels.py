"""Pseudo-labels for adapting a re-ID network to a site: tracks as identities, co-occurrence as certain
negatives, optional clustering of tracks into cross-camera identities, and P x K batches.

Pure numpy; no store, no video, no network. Terms:

- a *track* is a camera-local track of the store; its crops are one pseudo-identity;
- two tracks *co-occur* when both have a box in one frame of one camera: they are two people for certain;
- an *identity* (after :func:`cluster_tracks`) is a set of tracks believed to be one person; tracks
  that co-occur are never put in one identity.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CropTable:
    """N chosen crops of T tracks: parallel arrays.

    track: (N,) int64 row index into ``track_ids`` (0..T-1); frame: (N,) int64 source frame;
    xyxy: (N, 4) float32 full-frame pixels; camera: (N,) int64 row index into ``cameras``.
    track_ids: (T,) int64 store track ids; track_camera: (T,) int64 camera row of each track.
    """

    track: np.ndarray
    frame: np.ndarray
    xyxy: np.ndarray
    camera: np.ndarray
    track_ids: np.ndarray
    track_camera: np.ndarray
    cameras: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.track)


def select_boxes(track: np.ndarray, frame: np.ndarray, xyxy: np.ndarray, confidence: np.ndarray,
                 frame_size: np.ndarray, stride: int, cap: int, min_height: float, min_confidence: float,
                 border: float) -> np.ndarray:
    """Row indices (M,) of the boxes to crop: every ``stride``-th good box of each track (time order),
    at most ``cap`` per track spread evenly over the track.

    track, frame: (N,) int; xyxy: (N, 4) pixels; confidence: (N,); frame_size: (N, 2) (width, height)
    of each box's frame. A good box is at least ``min_height`` px tall, scores >= ``min_confidence``
    and keeps ``border`` px away from every frame edge (a cut-off person is not their appearance).
    """
    x1, y1, x2, y2 = np.asarray(xyxy, np.float64).T
    w_img, h_img = np.asarray(frame_size, np.float64).T
    good = ((y2 - y1 >= min_height) & (confidence >= min_confidence) & (x1 >= border) & (y1 >= border)
            & (x2 <= w_img - border) & (y2 <= h_img - border) & (x2 - x1 >= 2))
    rows = np.flatnonzero(good)
    rows = rows[np.lexsort((frame[rows], track[rows]))]
    out = []
    starts = np.flatnonzero(np.r_[True, track[rows][1:] != track[rows][:-1]]) if len(rows) else np.zeros(0, int)
    for lo, hi in zip(starts, np.r_[starts[1:], len(rows)]):
        keep = rows[lo:hi][::stride]
        if len(keep) > cap:
            keep = keep[np.round(np.linspace(0, len(keep) - 1, cap)).astype(int)]
        out.append(keep)
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def cooccurrence(track: np.ndarray, camera: np.ndarray, frame: np.ndarray, num_tracks: int) -> np.ndarray:
    """(T, T) bool: tracks ``i != j`` with a box in the same (camera, frame), i.e. certainly two people.

    track: (N,) int track rows 0..T-1 of every box (all boxes, not only the cropped ones); camera,
    frame: (N,) int. The diagonal is False.
    """
    out = np.zeros((num_tracks, num_tracks), bool)
    if len(track) == 0:
        return out
    key = np.asarray(camera, np.int64) * (int(np.max(frame)) + 1) + np.asarray(frame, np.int64)
    order = np.argsort(key, kind="stable")
    key, tr = key[order], np.asarray(track, np.int64)[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    for lo, hi in zip(starts, np.r_[starts[1:], len(key)]):
        if hi - lo > 1:
            t = tr[lo:hi]
            out[np.ix_(t, t)] = True
    np.fill_diagonal(out, False)
    return out


def identity_negatives(labels: np.ndarray, cooc: np.ndarray) -> np.ndarray:
    """(I, I) bool: identities with at least one co-occurring pair of tracks. labels: (T,) identity of each track."""
    n = int(labels.max()) + 1 if len(labels) else 0
    member = np.zeros((len(labels), n), np.float64)
    member[np.arange(len(labels)), labels] = 1.0
    out = (member.T @ cooc.astype(np.float64) @ member) > 0
    np.fill_diagonal(out, False)
    return out


@dataclass(frozen=True)
class Clustering:
    """labels: (T,) int64 identity of each track, 0..I-1; threshold: the cosine a merge needed;
    merges: how many merges were made."""

    labels: np.ndarray
    threshold: float
    merges: int


def negative_threshold(sim: np.ndarray, cooc: np.ndarray, quantile: float) -> float:
    """The ``quantile`` of the cosines between co-occurring tracks: how alike two different people
    of this site look to the embedder (1.0, i.e. no merge allowed, when no pair co-occurs)."""
    neg = sim[np.triu(cooc, 1)]
    return float(np.quantile(neg, quantile)) if len(neg) else 1.0


def cluster_tracks(track_emb: np.ndarray, cooc: np.ndarray, quantile: float = 0.99,
                   max_rounds: int = 20) -> Clustering:
    """Merge tracks into identities: mutual nearest neighbours by cosine of (L2-normalised) mean
    embeddings, more alike than ``quantile`` of the co-occurring (certainly different) pairs, never
    two clusters holding co-occurring tracks. Repeated on cluster means until a round merges nothing.

    track_emb: (T, D) L2-normalised track means; cooc: (T, T) bool (:func:`cooccurrence`).
    """
    t = len(track_emb)
    sim = track_emb @ track_emb.T
    thr = negative_threshold(sim, cooc, quantile)
    labels = np.arange(t)
    merges = 0
    for _ in range(max_rounds):
        ids, labels = np.unique(labels, return_inverse=True)
        k = len(ids)
        if k < 2:
            break
        member = np.zeros((t, k))
        member[np.arange(t), labels] = 1.0
        centre = member.T @ track_emb
        centre /= np.maximum(np.linalg.norm(centre, axis=1, keepdims=True), 1e-12)
        s = centre @ centre.T
        blocked = (member.T @ cooc.astype(np.float64) @ member) > 0
        s[blocked] = -np.inf
        np.fill_diagonal(s, -np.inf)
        nn = np.argmax(s, axis=1)
        parent = np.arange(k)
        done = False
        for a in range(k):
            b = nn[a]
            if a < b and nn[b] == a and s[a, b] >= thr:
                parent[b] = a
                merges += 1
                done = True
        if not done:
            break
        labels = parent[labels]
    labels = np.unique(labels, return_inverse=True)[1].astype(np.int64)
    return Clustering(labels, thr, merges)


class CooccurrenceBatches:
    """P x K batches whose identities tend to be certain negatives of each other.

    Each batch is built from randomly chosen frames: the identities visible in a frame (a group that
    co-occurs) are taken first, then those of another frame, until P identities are in; each gets K
    of its crops (drawn with replacement when it has fewer). ``epoch(rng)`` -> list of (P * K,) index
    arrays into the crop table, about ``len(crops) / (P * K)`` batches.

    crop_identity: (N,) identity of each crop; groups: list of identity arrays seen together in one
    frame (identities with crops only).
    """

    def __init__(self, crop_identity: np.ndarray, groups: list[np.ndarray], p: int, k: int) -> None:
        self.crop_identity = np.asarray(crop_identity, np.int64)
        ids = np.unique(self.crop_identity)
        if len(ids) < 2:
            raise ValueError(f"need at least 2 identities with crops for P x K batches, got {len(ids)}")
        self.p, self.k = min(int(p), len(ids)), int(k)
        self.ids = ids
        self.by_id = {int(i): np.flatnonzero(self.crop_identity == i) for i in ids}
        self.groups = [g for g in groups if len(g) >= 2] or [ids]

    def __len__(self) -> int:
        return max(1, len(self.crop_identity) // (self.p * self.k))

    def batch(self, rng: np.random.Generator) -> np.ndarray:
        chosen: list[int] = []
        for _ in range(100):
            if len(chosen) >= self.p:
                break
            group = self.groups[int(rng.integers(len(self.groups)))]
            for i in rng.permutation(group):
                if int(i) not in chosen and len(chosen) < self.p:
                    chosen.append(int(i))
        rest = [int(i) for i in rng.permutation(self.ids) if int(i) not in chosen]
        chosen += rest[:self.p - len(chosen)]
        out = []
        for i in chosen:
            pool = self.by_id[i]
            out.append(rng.choice(pool, size=self.k, replace=len(pool) < self.k))
        return np.concatenate(out)

    def epoch(self, rng: np.random.Generator) -> list[np.ndarray]:
        return [self.batch(rng) for _ in range(len(self))]


def frame_groups(box_track: np.ndarray, box_camera: np.ndarray, box_frame: np.ndarray,
                 track_identity: np.ndarray) -> list[np.ndarray]:
    """Identity groups seen together: for each (camera, frame) with two or more tracked identities,
    the sorted identities visible (duplicates removed; tracks with identity < 0 ignored)."""
    ident = track_identity[box_track]
    keep = ident >= 0
    key = box_camera[keep].astype(np.int64) * (int(box_frame.max(initial=0)) + 1) + box_frame[keep]
    ident = ident[keep]
    order = np.argsort(key, kind="stable")
    key, ident = key[order], ident[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, int)
    seen: set[tuple[int, ...]] = set()
    out = []
    for lo, hi in zip(starts, np.r_[starts[1:], len(key)]):
        g = tuple(np.unique(ident[lo:hi]).tolist())
        if len(g) >= 2 and g not in seen:
            seen.add(g)
            out.append(np.asarray(g, np.int64))
    return out
