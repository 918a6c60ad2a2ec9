"""Re-embedding a store's samples with another embedder, resumably (the SQL side of ``pipeline reembed``).

New vectors are staged in ``pending_embeddings`` in committed batches while the store keeps answering
with its old embedder; :func:`finish` swaps them all in, in one transaction: every sample's vector and
``embedder_id``, each track's mean embedding, the store's embedder (meta), and clears the automatic global
identities (they were made with the old vectors; association runs again); manual links
(corrections) stay. A kill before ``finish``
loses at most the batch being embedded; a restart skips the samples already staged.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from reid_models.common import l2_normalize

from .writer import TrackStore


@dataclass(frozen=True)
class PendingSamples:
    """Samples still to embed: id, track_id, frame (N,) int64; xyxy (N, 4) float32; camera (N,) camera ids."""

    id: np.ndarray
    track_id: np.ndarray
    frame: np.ndarray
    xyxy: np.ndarray
    camera: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.id)


def begin(store: TrackStore, name: str, dim: int, spec: dict) -> tuple[int, int]:
    """Register the target embedder and make it the one being staged; returns (its row id, samples already
    staged for it). Vectors staged for another target (an abandoned reembed) are dropped."""
    from . import schema

    with store._lock:
        con = store._write()
        pk = schema.embedder_row(con, name, dim, json.dumps(spec))
        con.execute("UPDATE embedders SET dim=?, spec=? WHERE id=?", (int(dim), json.dumps(spec), pk))
        con.execute("DELETE FROM pending_embeddings WHERE embedder_id<>?", (pk,))
        con.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('reembed_target', ?)", (name,))
        done = con.execute("SELECT COUNT(*) FROM pending_embeddings").fetchone()[0]
        store.commit()
        return pk, int(done)


def pending(store: TrackStore, pk: int) -> PendingSamples:
    """Samples neither staged for embedder ``pk`` nor already embedded by it, by id."""
    with store._lock:
        rows = store._con.execute(
            "SELECT s.id, s.track_id, s.frame, s.x1, s.y1, s.x2, s.y2, t.camera_id FROM samples s "
            "JOIN tracks t ON t.id=s.track_id LEFT JOIN pending_embeddings p ON p.sample_id=s.id "
            "WHERE p.sample_id IS NULL AND COALESCE(s.embedder_id, -1)<>? ORDER BY s.id", (pk,)).fetchall()
    n = len(rows)
    return PendingSamples(np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int64),
                          np.array([r[2] for r in rows], np.int64),
                          np.array([r[3:7] for r in rows], np.float32).reshape(n, 4), tuple(r[7] for r in rows))


def thumbnails(store: TrackStore, sample_ids) -> dict[int, bytes | None]:
    """sample id -> its JPEG thumbnail (or None)."""
    samples = store.reader.samples_by_id([int(s) for s in sample_ids], thumbnails=True)
    return {int(i): t for i, t in zip(samples.id, samples.thumbnails)}


def stage(store: TrackStore, pk: int, sample_ids: np.ndarray, embeddings: np.ndarray, sources: list[str]) -> None:
    """Stage (N,) samples' new (N, D) vectors (L2-normalised here) with where each crop came from
    (``video`` | ``thumbnail``), and commit: the batch survives a kill."""
    emb = l2_normalize(np.asarray(embeddings, np.float32))
    with store._lock:
        con = store._write()
        con.executemany("INSERT OR REPLACE INTO pending_embeddings(sample_id, embedder_id, embedding, embedded_from) "
                        "VALUES (?, ?, ?, ?)",
                        [(int(s), pk, np.ascontiguousarray(e).tobytes(), src)
                         for s, e, src in zip(sample_ids, emb, sources)])
        store.commit()


def finish(store: TrackStore, pk: int, name: str, dim: int, spec: dict) -> dict[str, int]:
    """Swap the staged vectors in (one transaction, see module docstring); returns counts of samples by
    ``embedded_from`` and of tracks whose identity was cleared. ValueError if a sample was not staged."""
    with store._lock:
        con = store._write()
        missing = con.execute("SELECT COUNT(*) FROM samples s LEFT JOIN pending_embeddings p ON p.sample_id=s.id "
                              "WHERE p.sample_id IS NULL AND COALESCE(s.embedder_id, -1)<>?", (pk,)).fetchone()[0]
        if missing:
            store.commit()
            raise ValueError(f"{missing} samples of {store.path} have no staged vector; run reembed again")
        staged = "(SELECT {} FROM pending_embeddings p WHERE p.sample_id=samples.id)"
        con.execute(f"UPDATE samples SET embedding={staged.format('embedding')}, "
                    f"embedded_from={staged.format('embedded_from')}, embedder_id=? "
                    "WHERE id IN (SELECT sample_id FROM pending_embeddings)", (pk,))
        sums: dict[int, np.ndarray] = {}
        for tid, blob in con.execute("SELECT track_id, embedding FROM samples ORDER BY id"):
            v = np.frombuffer(blob, np.float32)
            sums[tid] = sums[tid] + v if tid in sums else v.copy()
        con.executemany("UPDATE tracks SET embedding=? WHERE id=?",
                        [(np.ascontiguousarray(l2_normalize(v), np.float32).tobytes(), tid) for tid, v in sums.items()])
        con.execute("UPDATE tracks SET embedding=NULL WHERE id NOT IN (SELECT DISTINCT track_id FROM samples)")
        con.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                        [("embedder_id", name), ("embedding_dim", str(int(dim))), ("embedder_spec", json.dumps(spec))])
        # automatic identities were made with the old vectors: cleared; manual ones (an operator's merge,
        # split or confirmation: the track's last link is 'manual') are kept, as are rejections
        manual = ("SELECT l.track_id FROM links l WHERE l.method='manual' AND "
                  "l.id=(SELECT MAX(m.id) FROM links m WHERE m.track_id=l.track_id)")
        cleared = con.execute(f"SELECT COUNT(*) FROM tracks WHERE global_id IS NOT NULL AND id NOT IN ({manual})"
                              ).fetchone()[0]
        con.execute(f"UPDATE tracks SET global_id=NULL WHERE global_id IS NOT NULL AND id NOT IN ({manual})")
        con.execute("DELETE FROM links WHERE track_id NOT IN (SELECT id FROM tracks WHERE global_id IS NOT NULL)")
        con.execute("DELETE FROM identities WHERE id NOT IN (SELECT global_id FROM tracks WHERE global_id IS NOT NULL) "
                    "AND id NOT IN (SELECT global_id FROM links)")
        con.execute("UPDATE identities SET n_tracks=(SELECT COUNT(*) FROM tracks t WHERE t.global_id=identities.id)")
        con.execute("DELETE FROM pending_embeddings")
        con.execute("DELETE FROM meta WHERE key='reembed_target'")
        counts = dict(con.execute("SELECT embedded_from, COUNT(*) FROM samples GROUP BY embedded_from").fetchall())
        store.commit()
        store.embedding_dim = int(dim)
    return {**{str(k): int(v) for k, v in counts.items()}, "identities_cleared": int(cleared)}
