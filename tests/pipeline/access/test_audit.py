"""The audit chain: rows chain by hash; an edited, deleted or reordered row is found; retention keeps it verifiable."""
from __future__ import annotations

import sqlite3
import time

import pytest

from pipeline.access import audit
from pipeline.store.governance import GovernanceStore


def fill(path, n=5):
    for k in range(n):
        audit.record(path, "ana", "search", {"photo_sha256": "ab" * 32, "results": k, "filters": {"camera": None}})


def test_record_read_verify(store_path):
    fill(store_path)
    audit.record(store_path, "os:root", "view_identity", {"identity": 1})
    rows = audit.read(store_path)
    assert [r.action for r in rows] == ["search"] * 5 + ["view_identity"]
    assert rows[2].details == {"photo_sha256": "ab" * 32, "results": 2, "filters": {"camera": None}}
    assert [r.id for r in audit.read(store_path, user="os:root")] == [rows[-1].id]
    assert audit.read(store_path, since=time.time() + 60) == []
    v = audit.verify(store_path)
    assert v.ok and v.rows == 6 and v.head == rows[-1].row_hash


@pytest.mark.parametrize("tamper", [
    "UPDATE audit_log SET details=replace(details, '\"results\":2', '\"results\":9') WHERE id=3",
    "UPDATE audit_log SET actor='bo' WHERE id=3",
    "DELETE FROM audit_log WHERE id=3",
])
def test_verify_finds_the_edited_row(store_path, tamper):
    fill(store_path)
    con = sqlite3.connect(store_path)
    con.execute(tamper)
    con.commit()
    con.close()
    v = audit.verify(store_path)
    assert not v.ok and v.first_bad_id in (3, 4), v
    assert str(v.first_bad_id) in v.message


def test_no_biometric_details(store_path):
    with pytest.raises(ValueError, match="biometric"):
        audit.record(store_path, "ana", "search", {"photo": b"\xff\xd8"})
    with pytest.raises(ValueError, match="unknown audit action"):
        audit.record(store_path, "ana", "delete_everything", {})


def test_retention_keeps_the_chain_verifiable(store_path):
    fill(store_path, 4)
    cutoff = time.time()
    fill(store_path, 2)
    with GovernanceStore(store_path) as g:
        assert g.purge_audit_before(cutoff) == 4
    assert [r.id for r in audit.read(store_path)] == [5, 6]
    assert audit.verify(store_path).ok
    fill(store_path, 1)  # chains onto row 6
    assert audit.verify(store_path).ok
    con = sqlite3.connect(store_path)
    con.execute("DELETE FROM audit_log WHERE id=5")  # deleting the oldest remaining row is caught too
    con.commit()
    con.close()
    assert audit.verify(store_path).first_bad_id == 6
