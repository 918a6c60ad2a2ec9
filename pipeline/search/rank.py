"""Search a store with a query embedding: rank tracks, group them by global identity (the report
of a search, table and contact sheet, is :mod:`pipeline.search.report`).

Scoring: a track's score is the **max** cosine between the query and its samples (``by="max"``,
robust to a track's poor views), or the cosine to the track's mean embedding (``by="mean"``). An
identity's score is its best track's score; identities are ranked by it, and every track of a
returned identity that passes the filters is listed (best-matching first), so one hit shows every
camera that person was seen on. Tracks without a global identity count as an identity of their own.

Where the vectors come from (:mod:`pipeline.search.index`): the store's index, memory-mapped, plus the
samples committed after it was last updated, read from the store in chunks; without an index, the
store in chunks. The camera/time filter runs in SQL over the tracks table. A selective filter
(at most ``SearchConfig.exact_max_rows`` samples or ``exact_max_fraction`` of them) gets the results of
brute force: it is scored on the index's track-ordered 8-bit copy (:mod:`pipeline.search.coded`), whose
cosines are within a known bound of the exact ones, and the rows that can change the answer are then
re-scored exactly (``method="exact"`` scores every filtered row in float32 instead); a broad or no
filter asks the ANN index for candidates, scores them exactly, and then scores every filtered track
of the best identities exactly, so the listed scores are exact and only which identities make the top
can differ from brute force (see README "Scale" for the measured recall).
"""
from __future__ import annotations

import contextlib
import itertools
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime

import numpy as np

from pipeline.config import EmbedderConfig, SearchConfig
from pipeline.store import StoreReader
from reid_models.common import UserError, iso_time, l2_normalize, parse_time

from .index import SearchIndex, index_state

TimeLike = float | int | str | datetime | date | None

MIN_QUERY_HEIGHT: int = EmbedderConfig().min_height
"""Smallest query crop height, pixels: the default sampling ``min_height``, so a query is never smaller
than the crops a default run embeds (a 1x1 image would still be ranked). The smallest width is
``MIN_QUERY_HEIGHT // 4`` (a person crop is about 0.4 as wide as high)."""


def check_query_crop(image: np.ndarray, what: str) -> None:
    """UserError if the (H, W, 3) query crop is below MIN_QUERY_HEIGHT x MIN_QUERY_HEIGHT // 4 pixels."""
    h, w = image.shape[:2]
    min_w = MIN_QUERY_HEIGHT // 4
    if h < MIN_QUERY_HEIGHT or w < min_w:
        raise UserError(f"{what} is {w}x{h} pixels, below the {min_w}x{MIN_QUERY_HEIGHT} (WxH) minimum for a "
                        "person crop: pass a larger crop of the person")


@dataclass(frozen=True)
class Sighting:
    """One track of a ranked identity. Times in epoch seconds (UTC), frames 0-based, box in pixels.

    rank: 1-based rank of the identity; score: this track's cosine; identity_score: the identity's best.
    sample_*/box/thumbnail: the track's best-matching sample (thumbnail is JPEG bytes or None).
    """

    rank: int
    score: float
    identity_score: float
    global_id: int | None
    camera_id: str
    track_id: int
    local_id: int
    run_id: int
    start_time: float
    end_time: float
    start_frame: int
    end_frame: int
    sample_id: int
    sample_time: float
    sample_frame: int
    box: tuple[float, float, float, float]
    thumbnail: bytes | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready dict (no thumbnail bytes), times also as ISO-8601 strings."""
        d = asdict(self)
        d.pop("thumbnail")
        d.update(start_iso=iso_time(self.start_time), end_iso=iso_time(self.end_time),
                 sample_iso=iso_time(self.sample_time))
        return d


def _epoch(t: TimeLike) -> float | None:
    return None if t is None else parse_time(t)


def _best_per_track(tracks: np.ndarray, sample_ids: np.ndarray, scores: np.ndarray):
    """Per track (ascending id): (track ids, best sample id, its score); ties keep the first sample given."""
    order = np.lexsort((-scores, tracks))
    tr, sid, sc = tracks[order], sample_ids[order], scores[order]
    first = np.flatnonzero(np.r_[True, tr[1:] != tr[:-1]]) if len(tr) else np.zeros(0, np.int64)
    return tr[first], sid[first], sc[first]


def _merge(parts: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return _best_per_track(*(np.concatenate([p[k] for p in parts]) for k in range(3)))


def _in_lut(lut: np.ndarray | None, tracks: np.ndarray) -> np.ndarray:
    if lut is None:
        return np.ones(len(tracks), bool)
    keep = tracks < len(lut)
    keep[keep] = lut[tracks[keep]]
    return keep


def _lut(track_ids: np.ndarray, index: SearchIndex | None) -> np.ndarray:
    size = max(int(track_ids.max()) + 1 if len(track_ids) else 0, (index.meta.max_track + 1) if index else 0)
    lut = np.zeros(size, bool)
    lut[track_ids] = True
    return lut


class _Scorer:
    """Exact and ANN scoring of one query over an index (may be None) and the store's samples after it."""

    def __init__(self, store: StoreReader, index: SearchIndex | None, q: np.ndarray) -> None:
        self.store, self.index, self.q = store, index, q
        self.rows_scored = 0
        self.rows_rescored = 0  # rows of the 8-bit copy re-scored exactly (:meth:`coded`)

    def _tail(self, lut: np.ndarray | None, first_row: int | None = None) -> list:
        """Exact per-track bests of the samples outside the ANN part: index rows from ``first_row`` on
        (None: none), then the store's samples after the index's watermark and those committed late in
        its pending id ranges below it (PostgreSQL, :mod:`.index`)."""
        parts, index, q = [], self.index, self.q
        if index is not None and first_row is not None and first_row < index.rows:
            rows = np.arange(first_row, index.rows)
            rows = index.alive(rows[_in_lut(lut, np.asarray(index.track_ids[rows]))])
            parts.append(self._rows(rows))
        removed = index.removed if index is not None else np.zeros(0, np.int64)
        after = index.meta.watermark if index is not None else 0
        late = [self.store.samples_in_ranges(index.pending)] if index is not None and index.pending else []
        for ids, tracks, emb in itertools.chain(late, self.store.iter_samples(after_id=after, chunk=32768)):
            keep = _in_lut(lut, tracks) & ~np.isin(ids, removed)
            if keep.any():
                parts.append(_best_per_track(tracks[keep], ids[keep], emb[keep] @ q))
                self.rows_scored += int(keep.sum())
        return parts

    def _rows(self, rows: np.ndarray):
        self.rows_scored += len(rows)
        index = self.index
        return _best_per_track(np.asarray(index.track_ids[rows]), np.asarray(index.sample_ids[rows]),
                               index.score(rows, self.q))

    def exact(self, lut: np.ndarray | None, rows: np.ndarray | None = None):
        """Exact per-track bests over the tracks marked in ``lut`` (None: every track); ``rows``: the
        index rows of those tracks when the caller has them already."""
        parts, index = [], self.index
        if index is not None and index.rows:
            if lut is None:
                for lo, block in index.scan():
                    n = len(block)
                    ids = np.asarray(index.sample_ids[lo:lo + n])
                    keep = ~np.isin(ids, index.removed) if len(index.removed) else slice(None)
                    parts.append(_best_per_track(np.asarray(index.track_ids[lo:lo + n])[keep], ids[keep],
                                                 (block @ self.q)[keep]))
                    self.rows_scored += n
            else:
                parts.append(self._rows(index.rows_of(lut) if rows is None else rows))
        return _merge(parts + self._tail(lut))

    def coded(self, ids: np.ndarray, gids: np.ndarray, lut: np.ndarray, top: int):
        """Per-track bests of the filtered tracks ``ids`` (ascending, global ids ``gids``; ``lut``: the
        same as a mask) through the index's track-ordered 8-bit copy (:mod:`.coded`): approximate cosines
        within a bound B of the exact ones select the identities that can reach the top ``top`` (best
        approximate >= the top-th best - 2B), and their tracks' rows within 2B of their best are re-scored
        exactly. The listed tracks' scores and best samples are therefore those of brute force; tracks of
        the other identities keep approximate scores, which stay below every listed identity's."""
        index, q = self.index, self.q
        coded = index.coded
        tail = self._tail(lut, first_row=index.meta.coded_rows)
        first, length = coded.runs(ids)
        total = int(length.sum())
        pos = np.repeat(first - np.cumsum(length) + length, length) + np.arange(total)
        tracks = np.repeat(ids, length)
        sids = np.asarray(coded.sample_id[pos])
        if len(index.removed):
            keep = ~np.isin(sids, index.removed)
            pos, tracks, sids = pos[keep], tracks[keep], sids[keep]
        approx = coded.approx(pos, q)
        self.rows_scored += len(pos)
        bound = coded.bound(q)
        if len(pos):
            seg = np.flatnonzero(np.r_[True, tracks[1:] != tracks[:-1]])
            seg_tracks, seg_best = tracks[seg], np.maximum.reduceat(approx, seg)
            seg_len = np.diff(np.r_[seg, len(pos)])
        else:
            seg_tracks, seg_best, seg_len = np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.int64)
        exact_tr, _, exact_sc = _merge(tail)
        all_tr = np.concatenate([seg_tracks, exact_tr])
        all_sc = np.concatenate([seg_best, exact_sc])
        ukey, inv, ident = _identities(all_tr, all_sc, gids[np.searchsorted(ids, all_tr)])
        floor = -np.inf  # identities whose best approximate cosine is within 2B of the top-th best
        if len(ukey) > top:
            floor = float(np.partition(ident, len(ukey) - top)[len(ukey) - top]) - 2 * bound
        chosen = ident >= floor
        cand_seg = chosen[inv[:len(seg_tracks)]]
        near = np.repeat(cand_seg, seg_len) & (approx >= np.repeat(seg_best, seg_len) - 2 * bound)
        rows = np.asarray(coded.row[pos[near]])
        sc_exact = index.score(rows, q)
        self.rows_rescored += len(rows)
        parts = [_best_per_track(tracks[near], sids[near], sc_exact)]
        other = ~cand_seg
        if other.any():  # never listed: any sample of the track stands for it
            parts.append((seg_tracks[other], sids[seg[other]], seg_best[other]))
        return _merge(parts + tail)  # the copy's rows first: on a tie the smaller sample id wins, as in brute force

    def ann(self, k: int, nprobe: int, lut: np.ndarray | None, rows: np.ndarray | None):
        """Per-track bests of the ANN candidates (re-scored exactly) plus, exactly, every sample outside
        the ANN index; ``lut``/``rows``: the filter, as for :meth:`exact`."""
        index = self.index
        mask = None
        if rows is not None:
            mask = np.zeros(index.rows, bool)
            mask[rows] = True
        cand = index.ann_rows(self.q, k, nprobe, mask)
        return _merge([self._rows(cand)] + self._tail(lut, first_row=index.meta.ann_rows))


def _identities(tr: np.ndarray, sc: np.ndarray, g: np.ndarray):
    """Identities of per-track scores (N,) with global ids g (-1: none; such a track is its own identity,
    key -track id): (identity keys ascending, identity index of each track, best score of each identity)."""
    ukey, inv = np.unique(np.where(g >= 0, g, -tr), return_inverse=True)
    ident = np.full(len(ukey), -np.inf, np.float32)
    np.maximum.at(ident, inv, sc)
    return ukey, inv, ident


def _rank(tr: np.ndarray, sc: np.ndarray, g: np.ndarray, top: int):
    """Identity ranking of per-track scores: (identity index of each track, identity scores, 1-based rank
    of each identity (0 = not in the top), indices of the listed tracks in rank, score, track order)."""
    ukey, inv, ident = _identities(tr, sc, g)
    ranked = np.lexsort((ukey, -ident))[:top]
    rank_of = np.full(len(ukey), 0, np.int64)
    rank_of[ranked] = np.arange(1, len(ranked) + 1)
    listed = np.flatnonzero(rank_of[inv] > 0)
    listed = listed[np.lexsort((tr[listed], -sc[listed], rank_of[inv[listed]]))]  # rank, score, track
    return inv, ident, rank_of, listed


_INDEXES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_BLAS: list = []


def _one_blas_thread():
    """A context running BLAS on one thread: a query's matrix-vector products are memory-bound, and on
    a busy machine OpenBLAS's worker threads made them ~10x slower (14 vs 1.3 ms for 10k x 512)."""
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS.append(ThreadpoolController())
        except ImportError:
            _BLAS.append(None)
    return contextlib.nullcontext() if _BLAS[0] is None else _BLAS[0].limit(limits=1, user_api="blas")


def open_index(store: StoreReader) -> tuple[SearchIndex | None, str]:
    """The store's search index, or (None, why there is none). Opened once per reader, and again when
    the index changed on disk since (an update, a rebuild, samples removed by erasure or retention; one
    stat per query), so a long-lived reader (``pipeline serve``) answers from the current index. An index
    replaced this way closes when the last query still using it lets it go."""
    state = index_state(store.path)
    got = _INDEXES.get(store)
    if got is None or got[0] != state:
        got = (state, SearchIndex.open(store))
        _INDEXES[store] = got
    return got[1]


def search_tracks(store: StoreReader, query_embedding: np.ndarray, cameras: Sequence[str] | str | None = None,
                  since: TimeLike = None, until: TimeLike = None, top: int = 10, by: str = "max",
                  method: str = "auto", config: SearchConfig = SearchConfig(),
                  info: dict | None = None) -> list[Sighting]:
    """Top ``top`` identities for a (D,) query embedding, every filtered track of each listed.

    cameras: keep tracks of these camera ids (an id the store lacks is a UserError naming those it
    has); since/until: keep tracks overlapping the window (epoch seconds, datetime or ISO string).
    method: ``auto`` (module docstring), ``exact`` (always brute force, in chunks) or ``ann`` (the ANN
    index whenever there is one). ``info``, if given, receives how the search ran: method, rows_scored,
    index (why none was used, or ""), filter_copy (a selective filter scored on the index's 8-bit copy,
    then the rows that can matter exactly: the results are still those of brute force), rows_rescored.
    Returns sightings ordered by rank, then track score.
    """
    store.check_cameras(cameras)
    q = np.asarray(query_embedding, np.float32).reshape(-1)
    if q.shape[0] != store.embedding_dim:
        raise ValueError(f"query embedding has {q.shape[0]} dims, store {store.path} holds "
                         f"{store.embedding_dim}: embed the query with the store's embedder")
    if by not in ("max", "mean"):
        raise ValueError(f"by must be 'max' or 'mean', got {by!r}")
    if method not in ("auto", "exact", "ann"):
        raise ValueError(f"method must be 'auto', 'exact' or 'ann', got {method!r}")
    q = l2_normalize(q)
    if top <= 0:
        return []
    since, until = _epoch(since), _epoch(until)
    index, why = open_index(store)
    scorer = _Scorer(store, index, q)
    unfiltered = cameras is None and since is None and until is None
    lut = rows = ids = gids = None
    if info is not None:
        info.update(method="exact", index=why, rows_scored=0)
    if not unfiltered:
        ids, gids = store.track_keys(camera=cameras, since=since, until=until, min_samples=1)
        if len(ids) == 0:
            return []
        lut = _lut(ids, index)
    has_ann = index is not None and index.meta.ann_rows > 0 and by == "max" and method != "exact"
    coded = index.coded if index is not None and lut is not None and by == "max" and method == "auto" else None
    use_ann = has_ann
    if has_ann and lut is not None:
        if method == "ann":
            selected = index.rows
        elif coded is not None:  # without reading every row's track id
            tail = np.asarray(index.track_ids[index.meta.coded_rows:index.rows])
            selected = int(coded.runs(ids)[1].sum()) + int(_in_lut(lut, tail).sum())
        else:
            rows = index.rows_of(lut)
            selected = len(rows)
        use_ann = method == "ann" or (selected > config.exact_max_rows
                                      and selected > config.exact_max_fraction * index.rows)
    use_ann = use_ann and index.ann is not None
    if use_ann and lut is not None and rows is None:
        rows = index.rows_of(lut)
    with _one_blas_thread():
        if use_ann:
            tr, sid, sc = scorer.ann(config.ann_candidates, config.nprobe, lut, rows)
        elif coded is not None:
            tr, sid, sc = scorer.coded(ids, gids, lut, top)
        else:
            tr, sid, sc = scorer.exact(lut, rows)
    if info is not None:
        info["method"] = "ann" if use_ann else "exact"
        info["filter_copy"] = not use_ann and coded is not None
        info["rows_rescored"] = scorer.rows_rescored
    if len(tr) == 0:
        if info is not None:
            info["rows_scored"] = scorer.rows_scored
        return []
    if by == "mean":
        sc = store.track_embeddings(tr) @ q
    g = gids[np.searchsorted(ids, tr)] if ids is not None else store.track_global_ids(tr)
    if use_ann:  # every filtered track of the best identities, scored exactly, then ranked again
        inv, ident, rank_of, listed = _rank(tr, sc, g, top + max(top, 10))
        chosen = np.unique(inv[listed])
        key = np.where(g >= 0, g, -tr)
        gid_set = [int(k) for k in np.unique(key[np.isin(inv, chosen)]) if k >= 0]
        own = tr[np.isin(inv, chosen) & (g < 0)]
        t_ids, t_gids = store.track_keys(camera=cameras, since=since, until=until, min_samples=1,
                                         global_ids=gid_set)
        t_ids, t_gids = np.concatenate([t_ids, own]), np.concatenate([t_gids, np.full(len(own), -1, np.int64)])
        order = np.argsort(t_ids)
        t_ids, t_gids = t_ids[order], t_gids[order]
        with _one_blas_thread():
            tr, sid, sc = scorer.exact(_lut(t_ids, index))
        g = t_gids[np.searchsorted(t_ids, tr)]
    if info is not None:
        info["rows_scored"] = scorer.rows_scored
    inv, ident, rank_of, listed = _rank(tr, sc, g, top)

    records = {t.id: t for t in store.tracks(track_ids=tr[listed])}
    samples = store.samples_by_id(sid[listed], thumbnails=True)
    pos = {int(s): k for k, s in enumerate(samples.id)}
    out: list[Sighting] = []
    for i in listed:
        rec, k = records.get(int(tr[i])), pos.get(int(sid[i]))
        if rec is None or k is None:  # deleted since it was indexed (retention, erasure)
            continue
        out.append(Sighting(
            rank=int(rank_of[inv[i]]), score=float(sc[i]), identity_score=float(ident[inv[i]]),
            global_id=rec.global_id, camera_id=rec.camera_id, track_id=rec.id, local_id=rec.local_id,
            run_id=rec.run_id, start_time=rec.start_time, end_time=rec.end_time, start_frame=rec.start_frame,
            end_frame=rec.end_frame, sample_id=int(sid[i]), sample_time=float(samples.time[k]),
            sample_frame=int(samples.frame[k]), box=tuple(float(v) for v in samples.xyxy[k]),
            thumbnail=samples.thumbnails[k]))
    return out
