"""The data-protection commands end to end (subprocesses where stdin or exit codes matter)."""
from __future__ import annotations

import sqlite3
import subprocess
import sys

from pipeline.access import audit, users
from pipeline.cli.app import main
from pipeline.store import WriterLock
from tests.pipeline.access.conftest import people_store
from tests.pipeline.store.test_store import ROOT


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], input=stdin, capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_users_add_reads_the_password_from_stdin(tmp_path):
    db = people_store(tmp_path / "s.db")
    proc = _cli("users", "add", "ana", "--db", str(db), "--role", "operator", "--cameras", "north",
                stdin="a good password\n")
    assert proc.returncode == 0 and "added operator ana (north)" in proc.stdout, proc.stderr
    assert users.authenticate(db, "ana", "a good password").cameras == ("north",)
    proc = _cli("users", "list", "--db", str(db))
    assert "ana" in proc.stdout and "operator" in proc.stdout
    proc = _cli("users", "add", "bo", "--db", str(db), "--role", "boss", stdin="a good password\n")
    assert proc.returncode == 2 and "invalid choice: 'boss'" in proc.stderr
    assert _cli("users", "remove", "ana", "--db", str(db)).returncode == 0
    assert [e.details["op"] for e in audit.read(db, action="users")] == ["add", "remove"]


def test_audit_verify_exit_codes(tmp_path, capsys):
    db = people_store(tmp_path / "s.db")
    for k in range(3):
        audit.record(db, "ana", "view_identity", {"identity": k})
    assert main(["audit", "--db", str(db), "--verify"]) == 0
    assert "audit chain intact: 3 rows" in capsys.readouterr().out
    con = sqlite3.connect(db)
    con.execute("UPDATE audit_log SET actor='bo' WHERE id=2")
    con.commit()
    con.close()
    assert main(["audit", "--db", str(db), "--verify"]) == 1
    assert "TAMPERED: audit row 2" in capsys.readouterr().out
    assert main(["audit", "--db", str(db), "--user", "ana"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and all("view_identity" in line for line in out[1:])


def test_forget_purge_export_verify(tmp_path, capsys):
    db = people_store(tmp_path / "s.db")
    lock = WriterLock.acquire(db)
    try:
        assert main(["forget", "--db", str(db), "--identity", "1"]) == 2
        assert "needs the store to itself" in capsys.readouterr().err
    finally:
        lock.release()
    out = tmp_path / "ev"
    assert main(["export", "--db", str(db), "--format", "evidence", "--identity", "1", "--out", str(out),
                 "--query-image", str(ROOT / "streams" / "suspect.jpg")]) == 0
    assert main(["verify", str(out)]) == 0
    (out / "manifest.json").write_text((out / "manifest.json").read_text() + " ")
    assert main(["verify", str(out)]) == 1
    assert "1 changed (manifest.json)" in capsys.readouterr().out
    assert main(["forget", "--db", str(db), "--identity", "1"]) == 0
    assert "erased identity 1: 2 tracks" in capsys.readouterr().out
    yaml_path = tmp_path / "cams.yaml"
    yaml_path.write_text(f"cameras: [{{id: north, source: {ROOT / 'streams' / 'vtest.avi'}}}]\n"
                         "retention: {thumbnails_days: 1}\n")
    assert main(["purge", "--db", str(db), "--cameras", str(yaml_path), "--dry-run"]) == 0
    assert "would delete" in capsys.readouterr().out
    assert main(["purge", "--db", str(db), "--cameras", str(yaml_path)]) == 0
    assert "deleted 0 boxes, 0 samples, 9 thumbnails" in capsys.readouterr().out
    assert main(["export", "--db", str(db), "--format", "evidence", "--out", str(tmp_path / "x")]) == 2
    assert "needs --identity" in capsys.readouterr().err
    assert [e.action for e in audit.read(db)] == ["export", "forget", "purge"]


def test_the_data_protection_commands_take_a_postgresql_url(pg_url, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # where a PostgreSQL store's evidence key is made
    monkeypatch.delenv("CAMREID_EVIDENCE_KEY", raising=False)
    db = people_store(pg_url)
    assert main(["users", "list", "--db", db]) == 0
    out = tmp_path / "ev"
    assert main(["export", "--db", db, "--format", "evidence", "--identity", "1", "--out", str(out)]) == 0
    assert main(["verify", str(out)]) == 0  # the key found from the store the folder names
    assert "evidence intact" in capsys.readouterr().out
    assert main(["forget", "--db", db, "--identity", "1"]) == 0
    assert "erased identity 1: 2 tracks" in capsys.readouterr().out
    yaml_path = tmp_path / "cams.yaml"
    yaml_path.write_text(f"cameras: [{{id: north, source: {ROOT / 'streams' / 'vtest.avi'}}}]\n"
                         "retention: {thumbnails_days: 1}\n")
    assert main(["purge", "--db", db, "--cameras", str(yaml_path)]) == 0
    assert "deleted 0 boxes, 0 samples, 9 thumbnails" in capsys.readouterr().out
    assert main(["audit", "--db", db, "--verify"]) == 0
    assert [e.action for e in audit.read(db)] == ["export", "forget", "purge"]


def test_query_is_audited_under_the_os_user(tmp_path, capsys):
    """A real query (generic embedder on real crops) leaves one search row: the photo's sha256, filters,
    result count and identities, never the photo."""
    import hashlib

    import cv2

    from pipeline.config import StoreConfig
    from pipeline.stages.embed import Embedder
    from pipeline.store import TrackStore
    from tests.pipeline.store.test_store import PERSON_BOXES, add_track, clip_frames, crop

    embedder = Embedder(device="cpu")
    db = tmp_path / "s.db"
    store = TrackStore(StoreConfig(path=str(db)), embedder.embedder_id, embedder.dim, embedder.spec)
    store.start_run({})
    for person, cam in ((0, "north"), (1, "south")):
        crops = [crop(clip_frames()[k], PERSON_BOXES[person]) for k in range(3)]
        add_track(store, cam, person + 1, 10 * person, 10 * person + 5, embedder(crops), person=person)
    store.close()
    query = tmp_path / "q.png"
    cv2.imwrite(str(query), crop(clip_frames()[5], PERSON_BOXES[1]))
    assert main(["query", "--db", str(db), "--image", str(query), "--camera", "south", "--top", "1",
                 "--device", "cpu", "--out", str(tmp_path / "res")]) == 0, capsys.readouterr().err
    (row,) = audit.read(db, action="search")
    assert row.actor == audit.cli_actor()
    assert row.details["photo_sha256"] == hashlib.sha256(query.read_bytes()).hexdigest()
    assert row.details["filters"]["cameras"] == ["south"] and row.details["results"] == 1
    wal = db.with_name(db.name + "-wal")
    stored = db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert query.read_bytes()[-256:] not in stored
