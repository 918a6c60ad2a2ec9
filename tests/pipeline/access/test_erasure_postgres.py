"""forget and purge on a PostgreSQL store beside live runs (what only that backend does; the behaviour both
backends share is in test_erasure.py): a run of other cameras writes on while an identity is erased, a
track still being recorded is refused, purges take turns over the workers, and a run's periodic purge
skips while another worker's is recent."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from pipeline.access import audit, erasure
from pipeline.config import RetentionConfig
from pipeline.store import StoreBusyError, StoreReader, open_backend
from tests.pipeline.store.test_store import T0, add_track, make_store, sql, unit

from .conftest import people_store


@pytest.fixture
def pg_people(pg_url):
    return people_store(pg_url)


def test_forget_beside_a_live_run_of_other_cameras(pg_people):
    db = pg_people
    with StoreReader(db) as r:
        gid = r.tracks(track_ids=[1])[0].global_id
    rng = np.random.default_rng(3)
    with make_store(db) as live:  # a live worker of camera "east": it keeps writing across the erasure
        live.start_run({})
        add_track(live, "east", 1, 200, 201, unit(rng))
        live.commit()
        report = erasure.forget_identity(db, gid, "os:tester")
        add_track(live, "east", 2, 210, 211, unit(rng))
    assert report.counts["tracks"] == 2 and report.compacted
    assert sql(db, f"SELECT COUNT(*) FROM tracks WHERE global_id={gid}") == [(0,)]
    assert sql(db, "SELECT COUNT(*) FROM tracks WHERE camera_id='east'") == [(2,)]
    assert audit.read(db, action="forget")[0].details["identity"] == gid and audit.verify(db).ok


def test_forget_refuses_a_track_a_live_run_still_records(pg_people):
    db = pg_people
    rng = np.random.default_rng(4)
    with make_store(db) as live:
        live.start_run({})
        add_track(live, "east", 7, 300, 301, unit(rng), end=False)  # still in view
        live.commit()
        tid = live.reader.tracks(camera="east")[0].id
        with live.identities_locked():
            gid = live.new_identity()
            live.assign_identity(tid, gid, None, "new")
            live.commit()
        with pytest.raises(StoreBusyError, match=rf"^forget identity {gid}: its track {tid} is still being recorded "
                                                 r"on camera east by camreid run \d+"):
            erasure.forget_identity(db, gid, "os:tester")
    report = erasure.forget_identity(db, gid, "os:tester")  # the run has ended: its track is no longer written
    assert report.counts["tracks"] == 1 and sql(db, f"SELECT COUNT(*) FROM tracks WHERE id={tid}") == [(0,)]


def test_purges_take_turns_and_a_runs_purge_skips_a_recent_one(pg_people):
    db = pg_people
    now = T0 + 50 + 2 * 86400
    retention = RetentionConfig(boxes_days=2, samples_days=2, every_minutes=60)
    backend = open_backend(db)
    holder = backend.connect(readonly=False)
    claims = backend.writer_lock(["east"])  # a run's own claims: its purge does not wait
    try:
        holder.execute("SELECT pg_advisory_lock(hashtextextended(current_schema() || '/retention', 0))")
        skipped = erasure.purge(db, retention, "os:tester", now=now, writer_lock=claims)
        assert skipped.skipped == "another worker is applying retention to this store" and skipped.counts == {}
        done = threading.Event()
        waiting = threading.Thread(target=lambda: (erasure.purge(db, retention, "os:tester", now=now), done.set()))
        waiting.start()  # `pipeline purge` waits for its turn
        assert not done.wait(0.5)
        holder.execute("SELECT pg_advisory_unlock(hashtextextended(current_schema() || '/retention', 0))")
        waiting.join(30)
        assert done.is_set()
        assert sql(db, "SELECT id FROM tracks") == [(5,)]
        again = erasure.purge(db, retention, "os:tester", now=now + 60, writer_lock=claims)
        assert again.skipped == "retention was applied 60 s ago"
        later = erasure.purge(db, retention, "os:tester", now=now + 3601, writer_lock=claims)
        assert later.skipped is None and later.counts["tracks"] == 1  # an hour on, track 5 is old enough too
        assert sql(db, "SELECT COUNT(*) FROM tracks") == [(0,)]
    finally:
        claims.release()
        holder.close()
    assert [e.action for e in audit.read(db)] == ["purge", "purge"] and audit.verify(db).ok  # skips write nothing


def test_a_session_holding_a_table_delays_the_rewrite_not_the_erasure(pg_people):
    """A long query (or a session idle in a transaction) on samples: forget still deletes and audits at once;
    the VACUUM FULL of that table gives up after its lock timeout, a plain VACUUM runs, and it says so."""
    import psycopg

    from pipeline.store.governance import GovernanceStore

    db = pg_people
    with StoreReader(db) as r:
        gid = r.tracks(track_ids=[1])[0].global_id
    with psycopg.connect(db) as other:  # not autocommit: its transaction stays open
        other.execute("SELECT COUNT(*) FROM samples").fetchone()
        with GovernanceStore(db) as g:
            with g.transaction():
                g.forget_identity(gid)
            assert g.compact(full=True, lock_timeout=0.3) is False
        assert other.execute("SELECT COUNT(*) FROM samples WHERE track_id IN (1, 3)").fetchone() == (0,)
        other.rollback()
    with GovernanceStore(db) as g:
        assert g.compact(full=True) is True
