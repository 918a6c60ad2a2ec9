"""Cross-camera association: link ended tracks into global identities.

Algorithm of :meth:`CrossCameraAssociator.link` (run every few seconds of stream time and at the end):

1. Candidates are the ended tracks with no global identity and at least ``min_track_samples``
   samples. A track's appearance is its mean embedding (mean of its L2-normalised samples,
   renormalised, kept by the store); the similarity of two tracks is the cosine of their mean
   embeddings. (Sample-level scores, e.g. the mean of the top-3 sample-pair cosines, separated
   people better on the demo but linked more wrong tracks at any usable threshold, so they are not used.)
2. A track joins a group of tracks (an identity or a cluster) by **average linkage**: its score is
   the mean of its similarities to every track of the group, and it must be >= ``threshold``.
   Besides, every single similarity must be >= ``threshold - margin`` (``MIN_LINK_MARGIN``). A
   prototype (mean embedding of the group) is not used: its norm shrinks as a group grows, so
   the cosine to it rises above the tracks' own similarities and lets a chain A~B, B~C pull in C
   although A and C are unlike; average linkage plus the per-track floor keep groups tight.
3. Time constraints decide whether a track may join a group:
   - a person is in one place at a time: the track may not overlap in time (strictly: a.start <
     b.end and b.start < a.end) any track of the group, whatever the camera; on the same camera
     even touching spans (one track ends in the frame where the other starts) are two people, so a
     re-entry in one camera joins only after the earlier track ended;
   - transit rules (``association.transit``; symmetric in the camera pair, and a rule for
     ``[cam1, cam1]`` constrains re-entries): with the group's tracks laid on one timeline,
     ``min_seconds`` holds for every pair of tracks on the rule's cameras (gap = later start - earlier
     end), ``max_seconds`` for every pair of consecutive tracks on them (the person may have gone
     elsewhere unseen between non-consecutive sightings). Camera pairs without a rule only obey the
     overlap rule.
4. Matching to existing identities: cost = 1 - score, infeasible or below-threshold pairs are
   priced above ``cost_limit = 1 - threshold``, and ``lap.lapjv(extend_cost=True, cost_limit=...)``
   finds the best one-to-one assignment. Identities that gained a track are rescored and the
   assignment is repeated for the tracks left over until a round makes no match (so two new tracks
   of one person, say on two cameras, can both join its identity).
5. The tracks still unmatched are clustered among themselves: agglomerative, best pair of clusters
   first, by the same rule between clusters (mean of all cross similarities >= threshold, each one
   >= threshold - margin, merged timeline obeys step 3).
   A track/identity pair an operator rejected (``link_rejections``) is never matched. Linked tracks
   are never touched, so manual merges, splits and confirmations persist across runs.
6. Each cluster gets a fresh identity (ids come from SQLite AUTOINCREMENT, so they are unique
   across every run of the store). Every assignment is recorded in the store's ``links`` table
   with its score and method: ``match`` (average similarity to the identity's tracks), ``cluster``
   (average similarity to the other tracks of its cluster), ``new`` (a lone track, score NULL).

Costs: one (N, N + M) matrix product per call with N new tracks and M identified tracks, and
O(N^2) cluster bookkeeping; the store's identified tracks are read each call (O(identified tracks)).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import lap
import numpy as np

from pipeline.config import AssociationConfig
from pipeline.store import StoreReader, TrackStore
from reid_models.common import l2_normalize

MIN_LINK_MARGIN = 0.05
"""Each single track-to-track cosine inside an identity is >= threshold - MIN_LINK_MARGIN."""


@dataclass(frozen=True)
class _Span:
    camera: str
    start: float
    end: float


@dataclass
class _Group:
    spans: list[_Span]
    members: list[int] = field(default_factory=list)  # columns of the similarity matrix


class CrossCameraAssociator:
    """Links ended tracks of a :class:`TrackStore` into global identities (see module docstring).

    config: the ``association`` section: ``threshold`` (min average cosine), ``min_track_samples``
    and ``transit`` rules (``max_seconds`` None = no upper bound).
    """

    def __init__(self, config: AssociationConfig = AssociationConfig()) -> None:
        if not isinstance(config, AssociationConfig):
            raise TypeError(f"CrossCameraAssociator takes an AssociationConfig, got {type(config).__name__}")
        self.config = config
        self.threshold = config.threshold
        self.margin = MIN_LINK_MARGIN
        self.min_track_samples = config.min_track_samples
        self.transit: dict[tuple[str, str], tuple[float, float]] = {}
        for rule in config.transit:
            a, b = rule.cameras
            bounds = (rule.min_seconds, np.inf if rule.max_seconds is None else rule.max_seconds)
            self.transit[(a, b)] = self.transit[(b, a)] = bounds
        self.last_stats: dict[str, int] = {}

    # -------------------------------------------------------------- constraints
    def compatible(self, a: list[_Span], b: list[_Span]) -> bool:
        """True if the tracks of ``a`` and ``b`` can be one person (overlap and transit rules)."""
        for s in a:
            for t in b:
                if s.start < t.end and t.start < s.end:
                    return False
                if s.camera == t.camera and s.start <= t.end and t.start <= s.end:
                    return False  # one camera, one shared frame: two boxes, so two people
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

    def _score(self, sims: np.ndarray) -> float:
        """Linkage score of a block of track-to-track cosines; -inf where the floor is broken."""
        if sims.min() < self.threshold - self.margin:
            return -np.inf
        return float(sims.mean())

    @staticmethod
    def _similarity(reader: StoreReader, rows: list[int], cols: list[int]) -> np.ndarray:
        """(len(rows), len(cols)) cosines of the given tracks' mean embeddings."""
        return l2_normalize(reader.track_embeddings(rows)) @ l2_normalize(reader.track_embeddings(cols)).T

    # -------------------------------------------------------------- linking
    def link(self, store: TrackStore) -> int:
        """Give every eligible ended track a global identity; commits the store.

        Returns the number of tracks that now share an identity with at least one other track
        (``last_stats`` has the breakdown: matched, clustered, new).
        """
        thr = self.threshold
        reader = store.reader
        store.begin()  # read and link in one batch: a correction by another connection waits or lands before
        rejected = reader.rejected_links()
        pending = reader.tracks(ended=True, linked=False, min_samples=self.min_track_samples)
        self.last_stats = {"matched": 0, "clustered": 0, "new": 0}
        if not pending:
            store.commit()
            return 0
        linked = reader.tracks(linked=True)
        n = len(pending)
        # columns: the pending tracks (0..n-1), then the identified tracks (n..)
        sim = self._similarity(reader, [t.id for t in pending], [t.id for t in pending] + [t.id for t in linked])
        spans = [_Span(t.camera_id, t.start_time, t.end_time) for t in pending]
        groups: dict[int, _Group] = {}
        for col, t in enumerate(linked, start=n):
            g = groups.setdefault(t.global_id, _Group([]))
            g.spans.append(_Span(t.camera_id, t.start_time, t.end_time))
            g.members.append(col)

        gids = list(groups)
        remaining = list(range(n))
        limit = max(1.0 - thr, 1e-6)
        while remaining and gids:
            score = np.full((len(remaining), len(gids)), -np.inf)
            for r, i in enumerate(remaining):
                for c, g in enumerate(gids):
                    score[r, c] = self._score(sim[i, groups[g].members])
            cost = np.full(score.shape, limit + 1.0)
            for r, c in zip(*np.nonzero(score >= thr)):
                if (pending[remaining[r]].id, gids[c]) in rejected:
                    continue  # an operator rejected this pair (pipeline.access.corrections)
                if self.compatible([spans[remaining[r]]], groups[gids[c]].spans):
                    cost[r, c] = 1.0 - score[r, c]
            _, x, _ = lap.lapjv(cost, extend_cost=True, cost_limit=limit)
            matched = [(r, int(c)) for r, c in enumerate(x) if c >= 0 and cost[r, c] <= limit]
            if not matched:
                break
            for r, c in matched:
                i, g = remaining[r], groups[gids[c]]
                store.assign_identity(pending[i].id, gids[c], float(score[r, c]), "match")
                g.spans.append(spans[i])
                g.members.append(i)
            self.last_stats["matched"] += len(matched)
            done = {remaining[r] for r, _ in matched}
            remaining = [i for i in remaining if i not in done]

        for cluster in self._cluster(remaining, sim, spans):
            gid = store.new_identity()
            for i in cluster.members:
                if len(cluster.members) == 1:
                    store.assign_identity(pending[i].id, gid, None, "new")
                else:
                    others = [j for j in cluster.members if j != i]
                    store.assign_identity(pending[i].id, gid, float(sim[i, others].mean()), "cluster")
            key = "new" if len(cluster.members) == 1 else "clustered"
            self.last_stats[key] += len(cluster.members)
        store.commit()
        return self.last_stats["matched"] + self.last_stats["clustered"]

    def _cluster(self, idx: list[int], sim: np.ndarray, spans: list[_Span]) -> list[_Group]:
        """Agglomerative average-linkage clustering of the tracks ``idx`` (rows/columns of ``sim``)."""
        clusters = [_Group([spans[i]], [i]) for i in idx]
        k = len(clusters)
        if k < 2:
            return clusters
        s = sim[np.ix_(idx, idx)].astype(np.float64)
        total, low = s.copy(), s.copy()  # sum and min of cross cosines between clusters
        size = np.ones(k)
        alive = np.ones(k, bool)
        blocked = np.zeros((k, k), bool)  # pair failed the time rules since either last changed
        while True:
            avg = total / np.outer(size, size)
            ok = (np.triu(np.ones((k, k), bool), 1) & alive[:, None] & alive[None, :] & ~blocked
                  & (avg >= self.threshold) & (low >= self.threshold - self.margin))
            if not ok.any():
                break
            a, b = np.unravel_index(np.argmax(np.where(ok, avg, -np.inf)), avg.shape)
            ca, cb = clusters[a], clusters[b]
            if not self.compatible(ca.spans, cb.spans):
                blocked[a, b] = True
                continue
            ca.spans += cb.spans
            ca.members += cb.members
            total[a] += total[b]
            total[:, a] = total[a]
            low[a] = np.minimum(low[a], low[b])
            low[:, a] = low[a]
            size[a] += size[b]
            alive[b] = False
            blocked[a] = blocked[:, a] = False
        return [c for c, live in zip(clusters, alive) if live]
