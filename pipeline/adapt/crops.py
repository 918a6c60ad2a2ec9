"""The training material of adaptation, read from a store: which boxes to crop, which tracks co-occur,
and the crops themselves, cut again from the source video through the stored boxes.

Each camera's source (the ``cameras`` table) is read once, sequentially from its first wanted frame
(:func:`pipeline.ingest.read_frames`), and every chosen box of a frame is cut from it at once. A camera
whose source is gone (or live) falls back to the thumbnails kept with its samples (a few per track),
and the fallback is reported.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.ingest import IngestError, read_frames, source_readable
from pipeline.stages.sampling import SAMPLE_BORDER, crop_boxes
from pipeline.store import StoreReader
from reid_models.common import ImageReadError, decode_image

from .labels import CropTable, cooccurrence, select_boxes
from .settings import AdaptConfig


@dataclass(frozen=True)
class SiteData:
    """Everything adaptation learns from. crops: the CropTable of the chosen boxes; images: one BGR crop
    per row, unless a consumer took them (then empty); consumed: (N,) the index ``consume`` was called
    with for each row (crops of dropped tracks are left out of the table); cooc: (T, T) bool
    co-occurrence of the table's tracks; box_*: every box of those tracks (track row, camera row,
    frame), for frame groups; notes: human-readable fallbacks."""

    crops: CropTable
    images: list[np.ndarray]
    consumed: np.ndarray
    cooc: np.ndarray
    box_track: np.ndarray
    box_camera: np.ndarray
    box_frame: np.ndarray
    notes: tuple[str, ...]


def _frame_size(meta: dict) -> tuple[float, float]:
    return float(meta.get("width") or np.inf), float(meta.get("height") or np.inf)


def collect(store: StoreReader, cfg: AdaptConfig, consume: Callable[[int, np.ndarray], None] | None = None,
            progress: bool = True) -> SiteData:
    """Choose boxes (``cfg``: stride, cap, min height/confidence), read their crops, build co-occurrence.

    ``consume(row, crop)``, when given, is called for each crop as it is cut (so a caller can embed it
    and drop the image); ``SiteData.images`` is then empty. Raises ValueError (one line) when the store
    has fewer than two tracks with ``cfg.min_crops_per_track`` usable crops.
    """
    cams = store.cameras()
    cam_row = {cid: i for i, (cid, _, _) in enumerate(cams)}
    tracks = store.tracks()
    if not tracks:
        raise ValueError(f"store {store.path} has no tracks: run `python -m pipeline run` into it first")
    ids = np.array([t.id for t in tracks], np.int64)
    boxes = store.boxes(ids)
    pos = {int(t): i for i, t in enumerate(ids)}
    b_track = np.array([pos[int(t)] for t in boxes.track_id], np.int64)
    t_cam = np.array([cam_row[t.camera_id] for t in tracks], np.int64)
    b_cam = t_cam[b_track]
    size = np.array([_frame_size(cams[c][2]) for c in range(len(cams))], np.float64).reshape(-1, 2)
    rows = select_boxes(b_track, boxes.frame, boxes.xyxy, boxes.confidence, size[b_cam], cfg.box_stride,
                        cfg.max_crops_per_track, cfg.min_height, cfg.min_confidence, SAMPLE_BORDER)

    notes: list[str] = []
    images: dict[int, np.ndarray] = {}
    readable = {c for c, (_, src, _) in enumerate(cams) if source_readable(src)}
    from tqdm import tqdm

    bar = tqdm(total=int(np.isin(b_cam[rows], list(readable)).sum()), desc="crops", unit="crop",
               dynamic_ncols=True, disable=not progress, leave=False)
    kept: list[int] = []
    for c, (cid, src, _) in enumerate(cams):
        mine = rows[b_cam[rows] == c]
        if len(mine) == 0:
            continue
        if c in readable:
            try:
                by_frame: dict[int, list[int]] = {}
                for r in mine:
                    by_frame.setdefault(int(boxes.frame[r]), []).append(int(r))
                for index, image in read_frames(src, by_frame):
                    rs = by_frame[index]
                    for r, crop in zip(rs, crop_boxes(image, boxes.xyxy[rs])):
                        kept.append(r)
                        if consume is not None:
                            consume(len(kept) - 1, crop)
                        else:
                            images[len(kept) - 1] = crop
                    bar.update(len(rs))
                continue
            except IngestError as e:
                notes.append(f"camera {cid}: {e}; using its sample thumbnails instead")
        else:
            notes.append(f"camera {cid}: source {src or '(none)'} is not readable here; "
                         "using its sample thumbnails instead")
        kept += _thumbnail_rows(store, tracks, c, t_cam, b_track, boxes, kept, images, consume)
    bar.close()
    kept_a = np.asarray(kept, np.int64)
    crop_track = b_track[kept_a] if len(kept_a) else np.zeros(0, np.int64)
    counts = np.bincount(crop_track, minlength=len(ids))
    use = counts >= cfg.min_crops_per_track
    if use.sum() < 2:
        raise ValueError(f"store {store.path}: only {int(use.sum())} track(s) have >= {cfg.min_crops_per_track} "
                         "usable crops; adapt needs at least 2 (record more footage, or lower min_crops_per_track)")
    new_row = np.cumsum(use) - 1
    keep_crop = use[crop_track]
    order = np.flatnonzero(keep_crop)
    table = CropTable(track=new_row[crop_track[order]], frame=boxes.frame[kept_a][order],
                      xyxy=boxes.xyxy[kept_a][order], camera=b_cam[kept_a][order],
                      track_ids=ids[use], track_camera=t_cam[use], cameras=tuple(c for c, _, _ in cams))
    in_use = use[b_track]
    cooc = cooccurrence(new_row[b_track[in_use]], b_cam[in_use], boxes.frame[in_use], int(use.sum()))
    imgs = [images[int(i)] for i in order] if consume is None else []
    return SiteData(table, imgs, order, cooc, new_row[b_track[in_use]], b_cam[in_use], boxes.frame[in_use],
                    tuple(notes))


def _thumbnail_rows(store: StoreReader, tracks, cam: int, t_cam, b_track, boxes, kept, images, consume) -> list[int]:
    """Crops of one camera's tracks from their sample thumbnails; returns the box rows they stand for
    (the first box of the sample's track and frame, so labels and co-occurrence still hold)."""
    ids = [t.id for t, c in zip(tracks, t_cam) if c == cam]
    samples = store.samples_of(ids, thumbnails=True)
    pos = {int(t.id): i for i, t in enumerate(tracks)}
    key = {(int(b_track[r]), int(boxes.frame[r])): r for r in range(len(b_track))}
    out = []
    for tid, frame, thumb in zip(samples.track_id, samples.frame, samples.thumbnails):
        r = key.get((pos[int(tid)], int(frame)))
        if thumb is None or r is None:
            continue
        try:
            crop = decode_image(thumb, "sample thumbnail")
        except ImageReadError:
            continue
        out.append(r)
        k = len(kept) + len(out) - 1
        if consume is not None:
            consume(k, crop)
        else:
            images[k] = crop
    return out
