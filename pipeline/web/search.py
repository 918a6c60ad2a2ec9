"""Photo search for the web app: the same embedder and ranking as ``python -m pipeline query``
(:func:`pipeline.search.search_tracks` over the store's own embedder), paginated by identity.

A search is embedded once and kept in the user's session (:class:`SavedSearch`); every result page
re-ranks the store with it, so pages include what a run has written since.
"""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.search import check_query_crop, search_tracks
from pipeline.store import StoreReader
from reid_models.common import ImageReadError, UserError, decode_image, encode_jpeg


class UploadError(UserError):
    """A query photo the server cannot use (not an image, too small a box); the message is one line."""


def decode_query(data: bytes, box: Sequence[float] | None = None) -> np.ndarray:
    """Upload bytes -> the (H, W, 3) BGR person crop to embed: the whole photo, or ``box``
    (x1, y1, x2, y2 pixels of the photo) cut out of it, checked like the CLI's ``--box``."""
    try:
        image = decode_image(data, "the uploaded file")
    except ImageReadError as e:
        raise UploadError(str(e)) from None
    if box is None:
        check_query_crop(image, "the uploaded photo")
        return image
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if x2 - x1 < 1 or y2 - y1 < 1:
        raise UploadError(f"the drawn box is empty inside the {w}x{h} photo: draw it over the person")
    crop = image[y1:y2, x1:x2]
    check_query_crop(crop, f"the drawn box of the {w}x{h} photo")
    return crop


class QueryEmbedder:
    """The store's embedder, built on first use (once per server process) and shared by all requests."""

    def __init__(self, reader: StoreReader, device: str = "auto") -> None:
        self.reader, self.device = reader, device
        self._embedder = None
        self._lock = threading.Lock()

    def __call__(self, crop: np.ndarray) -> np.ndarray:
        with self._lock:
            if self._embedder is None:
                from pipeline.stages.embed import Embedder

                emb = Embedder.from_spec(self.reader.embedder_spec, device=self.device)
                if emb.embedder_id != self.reader.embedder_id:
                    raise UserError(f"store {self.reader.path} was built with embedder {self.reader.embedder_id}, "
                                    f"which cannot be rebuilt from its spec (got {emb.embedder_id})")
                self._embedder = emb
            return self._embedder([crop])[0]


@dataclass(frozen=True)
class SavedSearch:
    """An embedded query photo and its filters. cameras: ids searched (already limited to what the
    user sees); since/until: epoch seconds or None; photo_sha256: of the uploaded bytes; crop_jpeg:
    the person crop searched with, shown beside the results."""

    search_id: str
    embedding: np.ndarray
    cameras: tuple[str, ...]
    since: float | None
    until: float | None
    photo_sha256: str
    crop_jpeg: bytes

    @classmethod
    def make(cls, search_id: str, photo: bytes, crop: np.ndarray, embedding: np.ndarray, cameras: Sequence[str],
             since: float | None, until: float | None) -> SavedSearch:
        return cls(search_id, np.asarray(embedding, np.float32), tuple(cameras), since, until,
                   hashlib.sha256(photo).hexdigest(), encode_jpeg(crop, height=min(256, crop.shape[0])))

    def filters(self) -> dict:
        return {"cameras": list(self.cameras), "since": self.since, "until": self.until}


@dataclass(frozen=True)
class CameraHit:
    """An identity's best-matching track on one camera: score, its best sample (thumbnail) and times."""

    camera_id: str
    track_id: int
    score: float
    sample_id: int
    sample_time: float
    start_time: float
    end_time: float


@dataclass(frozen=True)
class IdentityHit:
    """One ranked identity: rank (1-based over all pages), global id (None: a lone unlinked track,
    ``track_id``), best score, per-camera best hits (best first) and how many tracks matched."""

    rank: int
    global_id: int | None
    track_id: int
    score: float
    cameras: tuple[CameraHit, ...]
    n_tracks: int

    def to_dict(self) -> dict:
        return {"rank": self.rank, "global_id": self.global_id, "track_id": self.track_id, "score": self.score,
                "n_tracks": self.n_tracks, "cameras": [h.__dict__ for h in self.cameras]}


@dataclass(frozen=True)
class ResultPage:
    identities: tuple[IdentityHit, ...]
    page: int
    has_more: bool


def result_page(reader: StoreReader, saved: SavedSearch, page: int, page_size: int) -> ResultPage:
    """Identities ranked ``(page-1)*page_size + 1 .. page*page_size`` for the saved search."""
    if not saved.cameras:
        return ResultPage((), page, False)
    top = page * page_size
    sightings = search_tracks(reader, saved.embedding, cameras=list(saved.cameras), since=saved.since,
                              until=saved.until, top=top + 1)
    groups: dict[int, list] = {}
    for s in sightings:
        groups.setdefault(s.rank, []).append(s)
    hits = []
    for rank in sorted(groups):
        if not (top - page_size < rank <= top):
            continue
        rows = groups[rank]  # best-matching track first
        best_per_camera: dict[str, CameraHit] = {}
        for s in rows:
            if s.camera_id not in best_per_camera:
                best_per_camera[s.camera_id] = CameraHit(s.camera_id, s.track_id, s.score, s.sample_id,
                                                         s.sample_time, s.start_time, s.end_time)
        hits.append(IdentityHit(rank, rows[0].global_id, rows[0].track_id, rows[0].identity_score,
                                tuple(best_per_camera.values()), len(rows)))
    return ResultPage(tuple(hits), page, any(r > top for r in groups))
