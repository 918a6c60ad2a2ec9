"""Cross-camera association: link ended tracks into global identities.

Algorithm of :meth:`CrossCameraAssociator.link` (run every few seconds of stream time and at the end):

1. Candidates are the ended tracks with no global identity and at least ``min_track_samples``
   samples. A track's appearance is its mean embedding (mean of its L2-normalised samples,
   renormalised, kept by the store); an identity's prototype is the renormalised mean of its
   tracks' embeddings. Similarity is the cosine (dot product of unit vectors).
2. Time constraints decide whether a track may join a group of tracks (an identity or a cluster):
   - a person is in one place at a time: the track may not overlap in time (strictly: a.start <
     b.end and b.start < a.end) any track of the group, whatever the camera, the same camera
     included: a re-entry in one camera joins only after the earlier track ended;
   - transit rules (``association.transit``; symmetric in the camera pair, and a rule for
     ``[cam1, cam1]`` constrains re-entries): with the group's tracks laid on one timeline,
     ``min_seconds`` holds for every pair of tracks on the rule's cameras (gap = later start - earlier
     end), ``max_seconds`` for every pair of consecutive tracks on them (the person may have gone
     elsewhere unseen between non-consecutive sightings). Camera pairs without a rule only obey the
     overlap rule.
3. Matching to existing identities: cost = 1 - similarity, infeasible or below-threshold pairs are
   priced above ``cost_limit = 1 - threshold``, and ``lap.lapjv(extend_cost=True, cost_limit=...)``
   finds the best one-to-one assignment. Identities that gained a track get their prototype and
   timeline updated and the assignment is repeated for the tracks left over until a round makes
   no match (so two new tracks of one person, say on two cameras, can both join its identity).
4. The tracks still unmatched are clustered among themselves greedily: pairs with similarity >=
   threshold are taken best first, and two clusters merge when their prototypes are still >=
   threshold apart in cosine and their merged timeline obeys the constraints of step 2.
5. Each cluster gets a fresh identity (ids come from SQLite AUTOINCREMENT, so they are unique
   across every run of the store). Every assignment is recorded in the store's ``links`` table
   with its score and method: ``match`` (cosine to the identity prototype), ``cluster`` (cosine to
   the cluster prototype), ``new`` (a lone track, score NULL).

Costs: one (N, M) and one (N, N) matrix product per call with N new tracks and M identities; the
store's identified tracks are read each call (O(identified tracks)).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lap
import numpy as np

from .store import TrackStore


@dataclass(frozen=True)
class _Span:
    camera: str
    start: float
    end: float


@dataclass
class _Group:
    spans: list[_Span]
    emb_sum: np.ndarray = field(repr=False)
    tracks: list[int] = field(default_factory=list)

    @property
    def prototype(self) -> np.ndarray:
        return self.emb_sum / max(float(np.linalg.norm(self.emb_sum)), 1e-12)


def _get(obj: Any, name: str, default: Any) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


class CrossCameraAssociator:
    """Links ended tracks of a :class:`TrackStore` into global identities (see module docstring).

    config: the ``association`` section (``PipelineConfig.association``, or a dict) with
    ``threshold`` (min cosine, default 0.6), ``min_track_samples`` (default 1) and ``transit``
    (rules with ``cameras: [a, b]``, ``min_seconds``, ``max_seconds``; None = no bound).
    """

    def __init__(self, config: Any = None) -> None:
        self.threshold = float(_get(config, "threshold", 0.6))
        self.min_track_samples = max(1, int(_get(config, "min_track_samples", 1)))
        self.transit: dict[tuple[str, str], tuple[float, float]] = {}
        for rule in _get(config, "transit", None) or ():
            a, b = _get(rule, "cameras", None)
            lo = _get(rule, "min_seconds", None)
            hi = _get(rule, "max_seconds", None)
            bounds = (float(lo) if lo is not None else 0.0, float(hi) if hi is not None else np.inf)
            self.transit[(a, b)] = self.transit[(b, a)] = bounds
        self.last_stats: dict[str, int] = {}

    # -------------------------------------------------------------- constraints
    def compatible(self, a: list[_Span], b: list[_Span]) -> bool:
        """True if the tracks of ``a`` and ``b`` can be one person (overlap and transit rules)."""
        for s in a:
            for t in b:
                if s.start < t.end and t.start < s.end:
                    return False
                rule = self.transit.get((s.camera, t.camera))
                if rule is not None:
                    gap = t.start - s.end if s.start <= t.start else s.start - t.end
                    if gap < rule[0]:
                        return False
        if any(hi < np.inf for _, hi in self.transit.values()):
            merged = sorted([(s, 0) for s in a] + [(t, 1) for t in b], key=lambda x: (x[0].start, x[0].end))
            for (s, ga), (t, gb) in zip(merged, merged[1:]):
                if ga == gb:
                    continue  # adjacency already inside one group
                rule = self.transit.get((s.camera, t.camera))
                if rule is not None and t.start - s.end > rule[1]:
                    return False
        return True

    # -------------------------------------------------------------- linking
    def link(self, store: TrackStore) -> int:
        """Give every eligible ended track a global identity; commits the store.

        Returns the number of tracks that now share an identity with at least one other track
        (``last_stats`` has the breakdown: matched, clustered, new).
        """
        thr = self.threshold
        pending = store.tracks(ended=True, linked=False, min_samples=self.min_track_samples)
        self.last_stats = {"matched": 0, "clustered": 0, "new": 0}
        if not pending:
            return 0
        emb = store.track_embeddings([t.id for t in pending])
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        spans = [_Span(t.camera_id, t.start_time, t.end_time) for t in pending]

        groups = self._identities(store)
        gids = list(groups)
        remaining = list(range(len(pending)))
        limit = max(1.0 - thr, 1e-6)
        while remaining and gids:
            protos = np.stack([groups[g].prototype for g in gids])
            sim = emb[remaining] @ protos.T
            cost = np.full(sim.shape, limit + 1.0)
            for r, c in zip(*np.nonzero(sim >= thr)):
                if self.compatible([spans[remaining[r]]], groups[gids[c]].spans):
                    cost[r, c] = 1.0 - sim[r, c]
            _, x, _ = lap.lapjv(cost, extend_cost=True, cost_limit=limit)
            matched = [(r, int(c)) for r, c in enumerate(x) if c >= 0 and cost[r, c] <= limit]
            if not matched:
                break
            for r, c in matched:
                i, g = remaining[r], groups[gids[c]]
                store.assign_identity(pending[i].id, gids[c], float(sim[r, c]), "match")
                g.spans.append(spans[i])
                g.emb_sum = g.emb_sum + emb[i]
            self.last_stats["matched"] += len(matched)
            done = {remaining[r] for r, _ in matched}
            remaining = [i for i in remaining if i not in done]

        for cluster in self._cluster(remaining, emb, spans):
            gid = store.new_identity()
            proto = cluster.prototype
            for i in cluster.tracks:
                if len(cluster.tracks) == 1:
                    store.assign_identity(pending[i].id, gid, None, "new")
                else:
                    store.assign_identity(pending[i].id, gid, float(emb[i] @ proto), "cluster")
            key = "new" if len(cluster.tracks) == 1 else "clustered"
            self.last_stats[key] += len(cluster.tracks)
        store.commit()
        return self.last_stats["matched"] + self.last_stats["clustered"]

    def _identities(self, store: TrackStore) -> dict[int, _Group]:
        linked = store.tracks(linked=True)
        emb = store.track_embeddings([t.id for t in linked])
        groups: dict[int, _Group] = {}
        for t, e in zip(linked, emb):
            g = groups.get(t.global_id)
            if g is None:
                groups[t.global_id] = _Group([_Span(t.camera_id, t.start_time, t.end_time)], e.copy(), [t.id])
            else:
                g.spans.append(_Span(t.camera_id, t.start_time, t.end_time))
                g.emb_sum += e
                g.tracks.append(t.id)
        return groups

    def _cluster(self, idx: list[int], emb: np.ndarray, spans: list[_Span]) -> list[_Group]:
        """Greedy best-first merging of the tracks ``idx`` (indices into emb/spans)."""
        clusters = {i: _Group([spans[i]], emb[i].copy(), [i]) for i in idx}
        owner = {i: i for i in idx}
        if len(idx) > 1:
            sim = emb[idx] @ emb[idx].T
            rows, cols = np.nonzero(np.triu(sim >= self.threshold, k=1))
            for k in np.argsort(-sim[rows, cols], kind="stable"):
                a, b = owner[idx[rows[k]]], owner[idx[cols[k]]]
                if a == b:
                    continue
                ca, cb = clusters[a], clusters[b]
                if float(ca.prototype @ cb.prototype) < self.threshold or not self.compatible(ca.spans, cb.spans):
                    continue
                ca.spans += cb.spans
                ca.emb_sum = ca.emb_sum + cb.emb_sum
                ca.tracks += cb.tracks
                for i in cb.tracks:
                    owner[i] = a
                del clusters[b]
        return [clusters[k] for k in sorted(clusters)]
