"""Search a store with a query embedding: rank tracks, group them by global identity (the report
of a search, table and contact sheet, is :mod:`pipeline.search.report`).

Scoring (exact, no ANN): the store's sample embeddings are held in RAM as an (N, D) matrix; the
camera/time filter runs in SQL over the tracks table and selects matrix rows; a track's score is the
**max** cosine between the query and its samples (``by="max"``, robust to a track's poor views), or
the cosine to the track's mean embedding (``by="mean"``). An identity's score is its best track's
score; identities are ranked by it, and every track of a returned identity that passes the filters
is listed (best-matching first), so one hit shows every camera that person was seen on. Tracks
without a global identity count as an identity of their own.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime

import numpy as np

from pipeline.config import EmbedderConfig
from pipeline.store import StoreReader
from reid_models.common import UserError, iso_time, l2_normalize, parse_time

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


def search_tracks(store: StoreReader, query_embedding: np.ndarray, cameras: Sequence[str] | str | None = None,
                  since: TimeLike = None, until: TimeLike = None, top: int = 10, by: str = "max") -> list[Sighting]:
    """Top ``top`` identities for a (D,) query embedding, every filtered track of each listed.

    cameras: keep tracks of these camera ids (an id the store lacks is a UserError naming those it
    has); since/until: keep tracks overlapping the window (epoch seconds, datetime or ISO string).
    Returns sightings ordered by rank, then track score.
    """
    store.check_cameras(cameras)
    q = np.asarray(query_embedding, np.float32).reshape(-1)
    if q.shape[0] != store.embedding_dim:
        raise ValueError(f"query embedding has {q.shape[0]} dims, store {store.path} holds "
                         f"{store.embedding_dim}: embed the query with the store's embedder")
    if by not in ("max", "mean"):
        raise ValueError(f"by must be 'max' or 'mean', got {by!r}")
    q = l2_normalize(q)
    if top <= 0:
        return []
    sample_ids, sample_tracks, matrix = store.sample_matrix()  # before the tracks: each sample's track is there
    since, until = _epoch(since), _epoch(until)
    ids, gids = store.track_keys(camera=cameras, since=since, until=until, min_samples=1)
    if len(ids) == 0:
        return []
    unfiltered = cameras is None and since is None and until is None
    rows = np.flatnonzero(np.isin(sample_tracks, ids)) if not unfiltered else np.arange(len(sample_ids))
    scores = (matrix if unfiltered else matrix[rows]) @ q
    order = np.lexsort((-scores, sample_tracks[rows]))  # by track, best sample first
    tr, sid, sc = sample_tracks[rows][order], sample_ids[rows][order], scores[order]
    first = np.flatnonzero(np.r_[True, tr[1:] != tr[:-1]])
    tr, sid, sc = tr[first], sid[first], sc[first]  # per track (ascending id): best sample and its score
    if by == "mean":
        sc = store.track_embeddings(tr) @ q
    g = gids[np.searchsorted(ids, tr)]
    key = np.where(g >= 0, g, -tr)  # tracks without identity are their own identity
    ukey, inv = np.unique(key, return_inverse=True)
    ident = np.full(len(ukey), -np.inf, np.float32)
    np.maximum.at(ident, inv, sc)
    ranked = np.lexsort((ukey, -ident))[:top]
    rank_of = np.full(len(ukey), 0, np.int64)
    rank_of[ranked] = np.arange(1, len(ranked) + 1)
    listed = np.flatnonzero(rank_of[inv] > 0)
    listed = listed[np.lexsort((tr[listed], -sc[listed], rank_of[inv[listed]]))]  # rank, score, track

    records = {t.id: t for t in store.tracks(track_ids=tr[listed])}
    samples = store.samples_by_id(sid[listed], thumbnails=True)
    pos = {int(s): k for k, s in enumerate(samples.id)}
    out: list[Sighting] = []
    for i in listed:
        rec, k = records[int(tr[i])], pos[int(sid[i])]
        out.append(Sighting(
            rank=int(rank_of[inv[i]]), score=float(sc[i]), identity_score=float(ident[inv[i]]),
            global_id=rec.global_id, camera_id=rec.camera_id, track_id=rec.id, local_id=rec.local_id,
            run_id=rec.run_id, start_time=rec.start_time, end_time=rec.end_time, start_frame=rec.start_frame,
            end_frame=rec.end_frame, sample_id=int(sid[i]), sample_time=float(samples.time[k]),
            sample_frame=int(samples.frame[k]), box=tuple(float(v) for v in samples.xyxy[k]),
            thumbnail=samples.thumbnails[k]))
    return out
