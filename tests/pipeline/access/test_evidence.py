"""Evidence export: thumbnails, source frames with the box, manifest with link provenance and audit
entries, signed hashes; verify finds a changed, removed or added file and a wrong key."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from pipeline.access import audit, corrections, evidence, users
from pipeline.access.users import AccessDenied
from pipeline.store import StoreReader
from pipeline.store.backend import is_url
from pipeline.store.postgres import redact
from reid_models.common import UserError
from tests.pipeline.store.test_store import ROOT


@pytest.fixture
def exported(any_store, tmp_path, monkeypatch):
    """An evidence export of P from the store of either backend (a PostgreSQL store's key: under ~/.config)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(evidence.KEY_ENV, raising=False)
    store_path = any_store
    with StoreReader(store_path) as r:
        gid = r.tracks(track_ids=[1])[0].global_id
    corrections.confirm_link(store_path, 3, "os:tester")
    photo = (ROOT / "streams" / "suspect.jpg").read_bytes()
    out = evidence.export_evidence(store_path, gid, tmp_path / "ev", "os:tester", query_photo=photo,
                                   query_details={"top": 5})
    return store_path, gid, out, photo


def test_export_contents(exported):
    db, gid, out, photo = exported
    m = json.loads((out / "manifest.json").read_text())
    assert m["identity"] == gid and [s["track"] for s in m["sightings"]] == [1, 3]
    assert [c["id"] for c in m["cameras"]] == ["north", "south"]
    s1, s3 = m["sightings"]
    assert s1["link"]["automatic"] and s1["link"]["method"] in ("match", "cluster") and s1["link"]["by"] is None
    assert s3["link"] == {**s3["link"], "method": "manual", "automatic": False, "by": "os:tester"}
    assert len(s1["samples"]) == 3 and all((out / d["file"]).is_file() for d in s1["samples"])
    frame = cv2.imread(str(out / s1["source_frame"]["file"]))
    assert frame.shape == (576, 768, 3)  # a real frame of the clip, box drawn
    assert (out / "query.jpg").read_bytes() == photo and m["query"]["details"] == {"top": 5}
    actions = [e["action"] for e in m["audit"]]
    assert actions == ["correct", "export"]
    assert audit.read(db, action="export")[0].details["query_sha256"] == m["query"]["sha256"]
    assert m["audit_head"] == audit.read(db)[-1].row_hash
    v = evidence.verify_evidence(out)
    assert v.ok and v.signature_ok and v.files == len([p for p in out.rglob("*") if p.is_file()]) - 1 == 10, v.message
    key = evidence.key_path(db)
    assert key.stat().st_mode & 0o777 == 0o600
    if is_url(db):  # never in the database, never beside nothing: a file of the exporting user
        assert key.parent == Path.home() / ".config" / "camreid" / "evidence-keys"
        assert key.parent.stat().st_mode & 0o777 == 0o700
        assert m["store"] == redact(db) and m["store"].startswith("postgresql://")
    else:
        assert key == db.with_name(db.name + ".evidence-key")


def test_an_evidence_key_file_from_the_environment(store_path, tmp_path, monkeypatch):
    key = tmp_path / "shared.key"
    key.write_bytes(b"s" * 32)
    monkeypatch.setenv(evidence.KEY_ENV, str(key))
    out = evidence.export_evidence(store_path, 1, tmp_path / "ev", "os:tester")
    assert not store_path.with_name(store_path.name + ".evidence-key").exists()
    v = evidence.verify_evidence(out)
    assert v.ok and json.loads((out / "SIGNATURE.json").read_text())["key_id"] == evidence.key_id(b"s" * 32)
    monkeypatch.delenv(evidence.KEY_ENV)
    assert evidence.verify_evidence(out).signature_ok is None  # the default key file does not exist
    assert evidence.verify_evidence(out, key=key).ok


def test_verify_detects_a_modified_file(exported):
    _, _, out, _ = exported
    thumb = next((out / "sightings" / "T1").glob("sample_*.jpg"))
    data = bytearray(thumb.read_bytes())
    data[200] ^= 0xFF
    thumb.write_bytes(bytes(data))
    v = evidence.verify_evidence(out)
    assert not v.ok and v.bad == (thumb.relative_to(out).as_posix(),) and "changed" in v.message


def test_verify_detects_rehashed_edits_missing_and_added_files(exported, tmp_path):
    db, _, out, _ = exported
    manifest = out / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"os:tester"', '"someone else"'))
    sig = json.loads((out / "SIGNATURE.json").read_text())
    from reid_models.common import file_sha256
    sig["files"]["manifest.json"] = file_sha256(manifest)  # hashes redone, but no key: the HMAC fails
    (out / "SIGNATURE.json").write_text(json.dumps(sig))
    v = evidence.verify_evidence(out)
    assert not v.ok and v.bad == () and v.signature_ok is False
    (out / "query.jpg").unlink()
    (out / "extra.txt").write_text("x")
    v = evidence.verify_evidence(out)
    assert v.missing == ("query.jpg",) and v.extra == ("extra.txt",)
    other = tmp_path / "other.key"
    other.write_bytes(b"k" * 32)
    assert evidence.verify_evidence(out, key=other).signature_ok is False


def test_scope_and_bad_input(store_path, tmp_path):
    users.add_user(store_path, "vic", "viewer", "long enough")
    users.add_user(store_path, "nora", "operator", "long enough", cameras=["north"])
    with pytest.raises(AccessDenied, match="viewer"):
        evidence.export_evidence(store_path, 1, tmp_path / "a", "vic")
    out = evidence.export_evidence(store_path, 1, tmp_path / "b", "nora")
    m = json.loads((out / "manifest.json").read_text())
    assert {s["camera"] for s in m["sightings"]} == {"north"}  # never the south sighting
    with pytest.raises(UserError, match="not an empty folder"):
        evidence.export_evidence(store_path, 1, tmp_path / "b", "nora")
    with pytest.raises(UserError, match="no sightings"):
        evidence.export_evidence(store_path, 999, tmp_path / "c", "nora")
