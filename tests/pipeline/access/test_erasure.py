"""forget and purge: the data is gone from queries, exports, raw SQL, the index sidecar and the file bytes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.access import audit, erasure, users
from pipeline.access.users import AccessDenied
from pipeline.config import RetentionConfig
from pipeline.export import export_store
from pipeline.search import search_tracks
from pipeline.store import StoreBusyError, StoreReader, WriterLock
from pipeline.store.backend import is_url
from tests.pipeline.store.test_store import T0, sql


def biometric_bytes(path, track_ids):
    """The thumbnails (JPEG bytes) and embeddings (float32 bytes) of the tracks' samples, and their mean vectors."""
    with StoreReader(path) as r:
        s = r.samples_of(track_ids, thumbnails=True)
        means = r.track_embeddings(track_ids)
    blobs = [t for t in s.thumbnails if t] + [e.tobytes() for e in s.embedding] + [m.tobytes() for m in means]
    assert len(s) and all(len(b) >= 64 for b in blobs)
    return blobs, s.embedding


def file_bytes(db):
    """The bytes the store keeps on disk: the SQLite file and its WAL, or (PostgreSQL, after a CHECKPOINT)
    the data files of the store's tables and their TOAST tables (thumbnails); skips the PostgreSQL part
    when the server's files cannot be read from here (a remote CAMREID_TEST_PG_URL)."""
    if not is_url(db):
        wal = db.with_name(db.name + "-wal")
        return db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    import psycopg

    with psycopg.connect(db, autocommit=True) as con:
        con.execute("CHECKPOINT")
        root = Path(con.execute("SELECT current_setting('data_directory')").fetchone()[0])
        files = [r[0] for r in con.execute(
            "SELECT pg_relation_filepath(c.oid) FROM pg_class c WHERE c.relkind IN ('r', 't') AND (c.relnamespace="
            "(SELECT oid FROM pg_namespace WHERE nspname=current_schema()) OR c.oid IN (SELECT reltoastrelid "
            "FROM pg_class WHERE relnamespace=(SELECT oid FROM pg_namespace WHERE nspname=current_schema())))")]
    if not root.is_dir():
        pytest.skip(f"the PostgreSQL server's files ({root}) are not on this machine: cannot read them")
    data = b""
    for f in files:
        for seg in sorted((root / f).parent.glob((root / f).name + "*")):  # segments .1, .2 (and _fsm, _vm)
            data += seg.read_bytes()
    return data


def fragments(blob: bytes) -> list[bytes]:
    """Pieces of a blob to look for in raw bytes: the whole of a short one (an embedding), 96-byte pieces of
    a JPEG past its headers (shared by every thumbnail)."""
    if len(blob) <= 256:
        return [blob]
    return [blob[i:i + 96] for i in range(768, len(blob) - 96, 96)]


def stored(raw: bytes, blob: bytes) -> bool:
    """Most pieces of ``blob`` are in ``raw`` (PostgreSQL's TOAST cuts a thumbnail into ~2 KB chunks, so a
    piece across a cut is not)."""
    found = [f in raw for f in fragments(blob)]
    return sum(found) >= 0.8 * len(found)


def any_stored(raw: bytes, blob: bytes) -> bool:
    return any(f in raw for f in fragments(blob))


def assert_gone(path, track_ids, blobs, vectors, tmp_path):
    with StoreReader(path) as r:
        assert r.tracks(track_ids=track_ids) == []
        assert len(r.samples_of(track_ids)) == 0 and len(r.boxes(track_ids)) == 0
        for v in vectors:  # a query with the erased person's own vectors finds none of its tracks
            assert not {s.track_id for s in search_tracks(r, v, top=50)} & set(track_ids)
        export_store(r, "mot", tmp_path / "mot")
        rows = (tmp_path / "mot" / "mot_ids.csv").read_text().splitlines()
        assert rows[0].split(",")[2] == "track_pk"
        assert not {int(line.split(",")[2]) for line in rows[1:]} & set(track_ids)
    for table in ("boxes", "samples", "links", "link_rejections"):
        assert sql(path, f"SELECT COUNT(*) FROM {table} WHERE track_id IN ({','.join(map(str, track_ids))})") == [(0,)]
    raw = file_bytes(path)
    for b in blobs:
        assert not any_stored(raw, b)


def test_forget_erases_every_trace(any_store, tmp_path):
    store_path = any_store
    with StoreReader(store_path) as r:
        gid = r.tracks(track_ids=[1])[0].global_id
        tracks = [t.id for t in r.tracks(global_ids=[gid])]
    assert tracks == [1, 3]
    blobs, vectors = biometric_bytes(store_path, tracks)
    raw = file_bytes(store_path)
    assert all(stored(raw, b) for b in blobs)  # the check below can fail
    if not is_url(store_path):
        sidecar = store_path.with_name(store_path.name + ".index")  # pipeline.search.index's folder
        sidecar.mkdir()
        (sidecar / "vectors.f32").write_bytes(b"".join(blobs[-2:]))
        lock = store_path.with_name(store_path.name + ".index.lock")
        lock.write_text("")
    users.add_user(store_path, "ada", "admin", "long enough")
    web = StoreReader(store_path)  # a long-lived reader (the web UI's), its vectors cached
    assert {s.track_id for s in search_tracks(web, vectors[0], top=50)} >= set(tracks)
    report = erasure.forget_identity(store_path, gid, "ada")
    assert not {s.track_id for s in search_tracks(web, vectors[0], top=50)} & set(tracks)
    web.close()
    assert report.counts["tracks"] == 2 and report.counts["samples"] == 6 and report.counts["boxes"] == 6
    assert report.compacted
    if not is_url(store_path):
        assert not sidecar.exists() and report.index_removed == (str(sidecar),)
        assert lock.exists()  # the index's lock file is the index updater's, left in place
    assert_gone(store_path, tracks, blobs, vectors, tmp_path)
    assert sql(store_path, f"SELECT COUNT(*) FROM identities WHERE id={gid}") == [(0,)]
    row = audit.read(store_path, action="forget")[0]
    assert row.actor == "ada" and row.details == {"identity": gid, "counts": report.counts}
    assert audit.verify(store_path).ok


def test_viewer_and_operator_cannot_forget_or_purge(any_store):
    store_path = any_store
    users.add_user(store_path, "vic", "viewer", "long enough")
    users.add_user(store_path, "olga", "operator", "long enough")
    for actor in ("vic", "olga"):
        with pytest.raises(AccessDenied, match="may not admin"):
            erasure.forget_identity(store_path, 1, actor)
        with pytest.raises(AccessDenied, match="may not admin"):
            erasure.purge(store_path, RetentionConfig(samples_days=1), actor)
    assert sql(store_path, "SELECT COUNT(*) FROM tracks") == [(5,)]


def test_forget_and_purge_refuse_while_a_run_writes(store_path):
    lock = WriterLock.acquire(store_path)
    try:
        with pytest.raises(StoreBusyError, match="forget identity 1 needs the store to itself"):
            erasure.forget_identity(store_path, 1, "os:tester")
        with pytest.raises(StoreBusyError, match="purge needs the store to itself"):
            erasure.purge(store_path, RetentionConfig(samples_days=1), "os:tester")
        # the writer itself may (the run's periodic retention)
        report = erasure.purge(store_path, RetentionConfig(audit_days=1), "os:tester", writer_lock=lock)
        assert report.counts == {"boxes": 0, "samples": 0, "thumbnails": 0, "tracks": 0, "identities": 0, "audit": 0}
    finally:
        lock.release()


def test_purge_by_retention(any_store, tmp_path):
    store_path = any_store
    old = [1, 2, 3, 4]  # tracks seen at T0+0..40; track 5 at T0+100..110 stays
    blobs, vectors = biometric_bytes(store_path, old)
    keep_blobs, _ = biometric_bytes(store_path, [5])
    days = 2.0
    now = T0 + 50 + days * 86400
    retention = RetentionConfig(boxes_days=days, samples_days=days)
    dry = erasure.purge(store_path, retention, "os:tester", dry_run=True, now=now)
    assert dry.dry_run and dry.counts["samples"] == 12 and dry.counts["boxes"] == 12
    assert sql(store_path, "SELECT COUNT(*) FROM samples") == [(15,)]  # a dry run deletes nothing
    report = erasure.purge(store_path, retention, "os:tester", now=now)
    assert report.counts == {"boxes": 12, "samples": 12, "thumbnails": 0, "tracks": 4, "identities": 2}
    assert_gone(store_path, old, blobs, vectors, tmp_path)
    raw = file_bytes(store_path)
    assert all(stored(raw, b) for b in keep_blobs)
    assert sql(store_path, "SELECT id, n_boxes, n_samples FROM tracks") == [(5, 3, 3)]
    assert audit.read(store_path, action="purge")[0].details["counts"] == report.counts


def test_thumbnail_retention_keeps_vectors(any_store):
    store_path = any_store
    now = T0 + 200 + 86400
    report = erasure.purge(store_path, RetentionConfig(thumbnails_days=1), "os:tester", now=now)
    assert report.counts["thumbnails"] == 15 and report.counts["samples"] == 0
    assert sql(store_path, "SELECT COUNT(*), COUNT(thumbnail) FROM samples") == [(15, 0)]
    with StoreReader(store_path) as r:
        assert np.abs(r.track_embeddings([1, 5])).sum() > 0


def test_audit_retention_through_purge_keeps_the_chain(any_store):
    store_path = any_store
    import time

    for k in range(3):
        audit.record(store_path, "ana", "view_identity", {"identity": k})
    report = erasure.purge(store_path, RetentionConfig(audit_days=1), "os:tester", now=time.time() + 2 * 86400)
    assert report.counts["audit"] == 3
    rows = audit.read(store_path)
    assert [r.action for r in rows] == ["purge"] and rows[0].details["counts"]["audit"] == 3
    v = audit.verify(store_path)
    assert v.ok and "from anchor row 3" in v.message
