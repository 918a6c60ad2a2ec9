"""Access tables are writable while a run writes: short transactions wait for the writer's batch to
commit, the writer's next batch waits for them, and association never overwrites a correction."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import yaml

from pipeline.access import audit, corrections
from pipeline.associate import CrossCameraAssociator
from pipeline.config import AssociationConfig
from pipeline.store import StoreReader
from tests.pipeline.store.test_store import add_track, make_store, near


def test_audit_and_corrections_wait_for_the_writers_batch(store_path):
    st = make_store(store_path)
    st.start_run({})
    rng = np.random.default_rng(1)
    with StoreReader(store_path) as r:
        p_vec, gid = r.track_embeddings([1])[0], r.tracks(track_ids=[1])[0].global_id
    add_track(st, "north", 9, 300, 310, np.stack([near(p_vec, 0.97, rng) for _ in range(3)]))  # batch open
    done = []
    side = threading.Thread(target=lambda: done.append(corrections.reject_link(store_path, 3, "os:op")))
    side.start()
    time.sleep(0.5)
    assert side.is_alive() and not done  # waiting for the writer's batch
    st.commit()
    side.join(10)
    assert done == [gid]
    CrossCameraAssociator(AssociationConfig(threshold=0.6)).link(st)  # reads after the correction
    st.close()
    with StoreReader(store_path) as r:
        tracks = {t.id: t.global_id for t in r.tracks()}
    assert tracks[3] != gid and tracks[6] == gid
    assert audit.verify(store_path).ok


@pytest.mark.slow
def test_a_run_applies_retention_inside_its_lock_and_audits_it(make_demo_yaml, tmp_path, store_db):
    """Two real runs (bundled detector at 640) on one store (a file, or PostgreSQL): the first dated 2020,
    the second with a 1-day retention: the second purges the first's boxes and samples at its start,
    under its own writer lock (PostgreSQL: beside other workers, the retention lock), records the
    purge, and keeps its own data."""
    from pipeline.runner import run_pipeline

    _, db = store_db
    old = make_demo_yaml(tmp_path / "old.yaml", window={"north": (340, 370)}, db=db,
                         detector={"imgsz": 640})
    data = yaml.safe_load(old.read_text())
    data["cameras"][0]["start_time"] = "2020-01-01T00:00:00"
    old.write_text(yaml.safe_dump(data))
    run_pipeline(old, device="cpu", progress=False)
    with StoreReader(db) as r:
        first = [t.id for t in r.tracks(run_id=1)]
    assert first
    new = make_demo_yaml(tmp_path / "new.yaml", window={"north": (340, 370)}, db=db, detector={"imgsz": 640},
                         retention={"samples_days": 1, "boxes_days": 1})
    run_pipeline(new, device="cpu", progress=False)
    purge = audit.read(db, action="purge")
    assert len(purge) == 1 and purge[0].actor.startswith("os:")
    assert purge[0].details["counts"]["tracks"] == len(first) > 0
    with StoreReader(db) as r:
        assert r.tracks(run_id=1) == [] and r.tracks(run_id=2)
    assert audit.verify(db).ok
