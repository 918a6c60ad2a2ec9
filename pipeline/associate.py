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

Concurrency: a link pass runs inside :meth:`TrackStore.identities_locked`: on PostgreSQL, where
several runs write one store, passes of different processes take turns on an advisory lock, so
two linkers never read the same pending tracks and both give them identities. Runs on a
PostgreSQL store leave linking to one ``pipeline associate --follow`` service (:func:`associate_store`),
which has the association settings of every camera group (a run knows only its own cameras'
transit rules, so it could not check a cross-group link).

Costs: one (N, N + M) matrix product per call with N new tracks and M identified tracks, and
O(N^2) cluster bookkeeping; the store's identified tracks are read each call (O(identified tracks)).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lap
import numpy as np

from pipeline.config import AssociationConfig, StoreConfig, TransitRule
from pipeline.store import StoreBusyError, StoreError, StoreReader, TrackStore, open_backend
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
        """Give every eligible ended track a global identity; commits the store (one pass at a time per
        store, see module docstring).

        Returns the number of tracks that now share an identity with at least one other track
        (``last_stats`` has the breakdown: matched, clustered, new).
        """
        with store.identities_locked():
            return self._link(store)

    def _link(self, store: TrackStore) -> int:
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


# ------------------------------------------------------------------ the `pipeline associate` command
def stored_association(reader: StoreReader) -> AssociationConfig:
    """The association settings the store's runs were made with: threshold and min_track_samples of
    the last run, transit rules of every run (one per camera pair, the latest run's winning)."""
    runs = reader.runs()
    last = dict(runs[-1][3].get("association", {})) if runs else {}
    rules: dict[frozenset, TransitRule] = {}
    for *_, config in runs:
        for r in (config.get("association") or {}).get("transit", ()):
            rule = TransitRule(**r)
            rules[frozenset(rule.cameras)] = rule
    defaults = AssociationConfig()
    return AssociationConfig(threshold=float(last.get("threshold", defaults.threshold)),
                             min_track_samples=int(last.get("min_track_samples", defaults.min_track_samples)),
                             transit=tuple(rules.values()))


@dataclass(frozen=True)
class AssociateResult:
    """What ``pipeline associate`` did: passes made, tracks given an identity (matched to an existing
    one, clustered with other new tracks, alone), identities and those seen on >= 2 cameras."""

    passes: int
    matched: int
    clustered: int
    new: int
    identities: int
    cross_camera: int

    def format(self) -> str:
        return (f"{self.passes} pass(es): {self.matched + self.clustered + self.new} tracks linked ({self.matched} "
                f"matched, {self.clustered} clustered, {self.new} alone); the store has {self.identities} global "
                f"identities, {self.cross_camera} seen on more than one camera")


def _is_missing_store(e: StoreError) -> bool:
    text = str(e)
    return text.startswith("no store at") or "empty database" in text


def associate_store(db: str | Path, config: AssociationConfig | None = None, follow: bool = False,
                    interval: float = 5.0, note: Callable[[str], None] | None = None,
                    passes: int | None = None) -> AssociateResult:
    """Link the ended tracks of store ``db`` into global identities (see :class:`CrossCameraAssociator`).

    config: the association settings (default: :func:`stored_association`, re-read each pass).
    follow: keep linking every ``interval`` seconds until interrupted (a service; Ctrl-C or SIGTERM
    between passes ends it normally, during a pass as any command: what was committed is kept). On PostgreSQL the
    service holds the store's ``associate`` advisory lock: a second one waits for the first to stop.
    On SQLite each pass takes the file's writer lock; while a run writes the store, passes wait for
    it (the run links its own tracks). A store that does not exist yet is waited for. note(text):
    where waiting is reported (default stderr). passes: stop after this many (tests)."""
    if interval <= 0:
        raise ValueError(f"interval must be > 0 seconds, got {interval}")
    note = note or (lambda text: print(text, file=sys.stderr, flush=True))
    backend = open_backend(db)
    service = backend.hold_associator(note) if follow and backend.shared else None
    totals = {"matched": 0, "clustered": 0, "new": 0}
    done, store, last_note = 0, None, None
    try:
        while True:
            try:
                if store is None:
                    store = TrackStore(StoreConfig(path=str(db)), None, None)
                assoc = CrossCameraAssociator(config or stored_association(store.reader))
                assoc.link(store)
                for k in totals:
                    totals[k] += assoc.last_stats.get(k, 0)
                if follow and sum(assoc.last_stats.values()):
                    st = assoc.last_stats
                    note(f"linked {sum(st.values())} tracks ({st['matched']} matched, {st['clustered']} clustered, "
                         f"{st['new']} alone)")
                last_note = None
            except (StoreBusyError, StoreError) as e:
                if not follow or not (isinstance(e, StoreBusyError) or _is_missing_store(e)):
                    raise
                if str(e) != last_note:
                    note(f"waiting: {e}")
                    last_note = str(e)
            finally:
                if store is not None and not backend.shared:  # SQLite: give the file back to runs
                    store.close()
                    store = None
            done += 1
            if not follow or (passes is not None and done >= passes):
                break
            try:
                time.sleep(interval)
            except KeyboardInterrupt:  # Ctrl-C / SIGTERM between passes: the service stops cleanly
                break
        with StoreReader(db) as reader:
            ids = reader.identities()
    finally:
        if store is not None:
            store.close()
        if service is not None:
            service.close()
    return AssociateResult(done, totals["matched"], totals["clustered"], totals["new"], len(ids),
                           sum(1 for cams in ids.values() if len(cams) >= 2))
