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
