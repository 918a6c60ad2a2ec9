"""``python -m pipeline reembed``: give a store a new embedder (e.g. the one ``adapt`` wrote).

Every stored sample is embedded again from its crop, cut from the source video through the sample's box
where the video is still readable (each camera's source read once, sequentially), else from the sample's
thumbnail (say so: a thumbnail is a small JPEG, its vectors are a little worse). Vectors are staged in
committed batches (:mod:`pipeline.store.restage`), so a kill loses at most one batch and a restart skips
what was staged; the store's embedder becomes the new one only when every sample has its new vector,
in one transaction. Then the global identities are rebuilt by the association of the store's last run
(with the threshold given, or the one the checkpoint suggests, see ``pipeline.adapt``), and the search
index beside the store is rebuilt for the new vectors (:mod:`pipeline.search.index`).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.associate import CrossCameraAssociator
from pipeline.config import AssociationConfig, EmbedderConfig, StoreConfig, TransitRule
from pipeline.ingest import IngestError, read_frames, source_readable
from pipeline.search.index import export_query_embedder, update_index
from pipeline.stages.embed import Embedder
from pipeline.stages.sampling import crop_boxes
from pipeline.store import TrackStore, require_store, restage
from reid_models.checkpoint import DEFAULT_CHECKPOINT, read_checkpoint
from reid_models.common import ImageReadError, decode_image


@dataclass(frozen=True)
class ReembedResult:
    """old/new: embedder ids; embedded: samples embedded by this call (from video, from thumbnails);
    resumed: samples already staged by an earlier, interrupted call; threshold: association threshold used;
    linked: tracks sharing an identity after association; seconds / cpu_seconds."""

    old: str
    new: str
    dim: int
    from_video: int
    from_thumbnail: int
    resumed: int
    threshold: float
    linked: int
    identities: int
    seconds: float
    cpu_seconds: float
    notes: tuple[str, ...] = ()

    def format(self) -> str:
        lines = [f"warning: {n}" for n in self.notes]
        lines.append(f"re-embedded {self.from_video + self.from_thumbnail} samples with {self.new} ({self.dim}-d; "
                     f"{self.from_video} from the video, {self.from_thumbnail} from thumbnails"
                     + (f", {self.resumed} staged before" if self.resumed else "") + f"), was {self.old}")
        lines.append(f"association at threshold {self.threshold:.3f}: {self.identities} global identities, "
                     f"{self.linked} tracks linked to another; {self.seconds:.0f} s wall, {self.cpu_seconds:.0f} s CPU")
        return "\n".join(lines)


def association_config(store: TrackStore, threshold: float | None, checkpoint: str | None) -> AssociationConfig:
    """The association section of the store's last run, with ``threshold`` if given, else the checkpoint's
    suggestion (``adapt.association_threshold``) if it has one."""
    runs = store.reader.runs()
    section = dict(runs[-1][3].get("association", {})) if runs else {}
    if threshold is None and checkpoint is not None:
        threshold = (read_checkpoint(checkpoint).get("adapt") or {}).get("association_threshold")
    transit = tuple(TransitRule(**{k: v for k, v in r.items()}) for r in section.get("transit", ()))
    return AssociationConfig(threshold=float(threshold if threshold is not None else section.get("threshold", 0.6)),
                             min_track_samples=int(section.get("min_track_samples", 1)), transit=transit)


def _crops(store: TrackStore, todo: restage.PendingSamples, notes: list[str]):
    """Yield (sample row indices, crops, source) per frame (video) or per chunk (thumbnails)."""
    sources = {cid: src for cid, src, _ in store.reader.cameras()}
    cams = np.array(todo.camera, dtype=object)
    for cid in sorted(set(todo.camera)):
        rows = np.flatnonzero(cams == cid)
        src = sources.get(cid, "")
        if source_readable(src):
            by_frame: dict[int, list[int]] = {}
            for r in rows:
                by_frame.setdefault(int(todo.frame[r]), []).append(int(r))
            got: set[int] = set()
            try:
                for index, image in read_frames(src, by_frame):
                    got.add(index)
                    yield by_frame[index], crop_boxes(image, todo.xyxy[by_frame[index]]), "video"
            except IngestError as e:
                notes.append(f"camera {cid}: {e}")
            rows = np.array([r for f, rs in by_frame.items() if f not in got for r in rs], np.int64)
            if len(rows):
                notes.append(f"camera {cid}: {len(rows)} samples' frames could not be read from {src}; "
                             "embedded from their thumbnails")
        elif len(rows):
            notes.append(f"camera {cid}: source video {src or '(none)'} is not readable; {len(rows)} samples "
                         "embedded from their thumbnails")
        for lo in range(0, len(rows), 64):
            chunk = rows[lo:lo + 64]
            thumbs = restage.thumbnails(store, todo.id[chunk])
            ok, crops = [], []
            for r in chunk:
                data = thumbs.get(int(todo.id[r]))
                try:
                    crops.append(decode_image(data, "sample thumbnail"))
                    ok.append(int(r))
                except (ImageReadError, TypeError):
                    notes.append(f"sample {int(todo.id[r])} has neither a readable frame nor a thumbnail; "
                                 "it keeps no vector of the new embedder")
            if ok:
                yield ok, crops, "thumbnail"


def reembed_store(db: str | Path, checkpoint: str = DEFAULT_CHECKPOINT, device: str = "auto",
                  threshold: float | None = None, batch: int = 256, progress: bool = True,
                  on_batch: Callable[[int], None] | None = None) -> ReembedResult:
    """Re-embed every sample of the store ``db`` with ``checkpoint`` (module docstring); returns what it did.

    ``on_batch(n_staged)`` is called after each committed batch (tests interrupt there).
    """
    t0, c0 = time.time(), time.process_time()
    db = require_store(db)
    path = None if str(checkpoint) == DEFAULT_CHECKPOINT else str(Path(checkpoint).expanduser().resolve())
    embedder = Embedder(EmbedderConfig(checkpoint=path), device=device)
    notes: list[str] = []
    counts = {"video": 0, "thumbnail": 0}
    with TrackStore(StoreConfig(path=str(db)), None, None) as store:
        old = store.reader.embedder_id
        if old == embedder.embedder_id and not store.reader.tracks(linked=False, ended=True):
            raise ValueError(f"store {db} already uses embedder {old} and every track is associated: nothing to do")
        resumed = 0
        if old != embedder.embedder_id:
            pk, resumed = restage.begin(store, embedder.embedder_id, embedder.dim, embedder.spec)
            todo = restage.pending(store, pk)
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="reembed", unit="sample", dynamic_ncols=True, disable=not progress)
            buf_rows: list[int] = []
            buf_crops: list[np.ndarray] = []
            buf_src: list[str] = []
            staged = 0

            def flush() -> None:
                nonlocal staged
                if not buf_rows:
                    return
                restage.stage(store, pk, todo.id[buf_rows], embedder(buf_crops), buf_src)
                staged += len(buf_rows)
                bar.update(len(buf_rows))
                buf_rows.clear()
                buf_crops.clear()
                buf_src.clear()
                if on_batch is not None:
                    on_batch(staged)

            for rows, crops, src in _crops(store, todo, notes):
                buf_rows += rows
                buf_crops += crops
                buf_src += [src] * len(rows)
                counts[src] += len(rows)
                if len(buf_rows) >= batch:
                    flush()
            flush()
            bar.close()
            restage.finish(store, pk, embedder.embedder_id, embedder.dim, embedder.spec)
        assoc = association_config(store, threshold, path)
    with TrackStore(StoreConfig(path=str(db)), embedder.embedder_id, embedder.dim, embedder.spec) as store:
        associator = CrossCameraAssociator(assoc)
        linked = associator.link(store)
        identities = len(store.reader.identities())
    update_index(db, progress=progress)  # the new vectors change the store's fingerprint: the index is rebuilt
    note = export_query_embedder(db, embedder)  # the photo query's light copy of the new embedder
    if note:
        notes.append(note)
    return ReembedResult(old, embedder.embedder_id, embedder.dim, counts["video"], counts["thumbnail"], resumed,
                         assoc.threshold, linked, identities, time.time() - t0, time.process_time() - c0,
                         tuple(dict.fromkeys(notes)))
