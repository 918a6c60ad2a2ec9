"""The web app on either backend (a store file, a PostgreSQL schema; skipped without PostgreSQL): login
sessions, search, the identity page, corrections, the cameras page, admin forget and purge, evidence
export, all through the test client.

The store is the access tests' small real store (real crops of the clip as thumbnails, generated unit
vectors as embeddings); since its embedder is those vectors, the server's embedder is replaced by one
that returns person P's own vector for the uploaded photo: what is tested is the store side of search.
"""
from __future__ import annotations

import json
import zipfile
from io import BytesIO

import numpy as np
import pytest

from pipeline.access import audit, users
from pipeline.store import StoreReader
from pipeline.store.backend import is_url
from tests.pipeline.access.conftest import people_store
from tests.pipeline.store.test_store import make_store, unit

from .conftest import PASSWORD, login


@pytest.fixture(params=["sqlite", "postgresql"])
def web_db(request, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # a PostgreSQL store's evidence key goes under ~/.config
    monkeypatch.delenv("CAMREID_EVIDENCE_KEY", raising=False)
    db = people_store(tmp_path / "s.db" if request.param == "sqlite" else request.getfixturevalue("pg_url"))
    for name, role in (("ada", "admin"), ("op", "operator"), ("vic", "viewer")):
        users.add_user(db, name, role, PASSWORD)
    return db


def person_p() -> np.ndarray:
    return unit(np.random.default_rng(7))  # people_store's first person (tracks 1 and 3)


@pytest.fixture
def client(web_db, tmp_path):
    from fastapi.testclient import TestClient

    from pipeline.web import create_app

    app = create_app(web_db, device="cpu", cache_dir=tmp_path / "cache")
    app.state.web.embedder = lambda crop: person_p()
    made = []

    def make(name):
        c = TestClient(app)
        made.append(c)
        r, csrf = login(c, name)
        assert r.status_code == 303, r.text
        return c, csrf

    yield make
    for c in made:
        c.close()


def test_search_identity_page_and_corrections(web_db, client, suspect_jpg):
    c, csrf = client("op")
    r = c.post("/api/search", data={"csrf": csrf}, files={"photo": ("s.jpg", suspect_jpg, "image/jpeg")})
    assert r.status_code == 200, r.text
    hits = r.json()["identities"]
    with StoreReader(web_db) as store:
        gid_p = store.tracks(track_ids=[1])[0].global_id
        gid_q = store.tracks(track_ids=[2])[0].global_id
    assert hits[0]["global_id"] == gid_p and {h["track_id"] for h in hits[0]["cameras"]} == {1, 3}
    assert len(audit.read(web_db, user="op", action="search")) == 1
    page = c.get(f"/identity/{gid_p}")
    assert page.status_code == 200 and "/media/sample/" in page.text
    sample = page.text.split("/media/sample/")[1].split(".jpg")[0]
    jpeg = c.get(f"/media/sample/{sample}.jpg")
    assert jpeg.status_code == 200 and jpeg.content[:2] == b"\xff\xd8"
    assert audit.read(web_db, user="op", action="view_identity")[-1].details["identity"] == gid_p
    r = c.post(f"/identity/{gid_p}/merge", data={"csrf": csrf, "other": str(gid_q)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/identity/{gid_p}"
    with StoreReader(web_db) as store:
        assert {t.global_id for t in store.tracks(track_ids=[1, 2, 3, 4])} == {gid_p}
    assert [e.details["kind"] for e in audit.read(web_db, user="op", action="correct")] == ["merge"]
    cams = c.get("/api/cameras").json()["cameras"]
    assert {s["camera_id"]: s["status"] for s in cams} == {"north": "ended", "south": "ended"}  # no live run
    with make_store(web_db) as writer:  # a live run (SQLite: its lock file's pid; PostgreSQL: its run lock)
        writer.start_run({})
        writer.commit()
        cams = c.get("/api/cameras").json()["cameras"]
        assert {s["status"] for s in cams} == {"live"}  # no heartbeat rows: inferred from the boxes
        writer.camera_status("north", "reconnecting", 3, 0.0, 1000.0, "cannot connect to rtsp://north")
        writer.camera_status("south", "live", 40, 9.5, 1004.0)
        writer.commit()
        cams = {s["camera_id"]: s for s in c.get("/api/cameras").json()["cameras"]}
        assert {k: s["status"] for k, s in cams.items()} == {"north": "reconnecting", "south": "live"}
        assert (cams["south"]["fps"], cams["south"]["frames"], cams["south"]["last_time"]) == (9.5, 40, 1004.0)
    cams = c.get("/api/cameras").json()["cameras"]  # the run closed without ending its rows: it stopped
    assert {s["camera_id"]: s["status"] for s in cams} == {"north": "stopped", "south": "stopped"}
    assert audit.verify(web_db).ok


def test_admin_forget_purge_and_evidence(web_db, client, tmp_path):
    c, csrf = client("ada")
    with StoreReader(web_db) as store:
        gid = store.tracks(track_ids=[1])[0].global_id
        other = store.tracks(track_ids=[2])[0].global_id
    r = c.post(f"/identity/{other}/export", data={"csrf": csrf})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    z = zipfile.ZipFile(BytesIO(r.content))
    manifest = json.loads(z.read(f"identity_{other}/manifest.json"))
    assert [s["track"] for s in manifest["sightings"]] == [2, 4]
    if is_url(web_db):
        assert "://" in manifest["store"] and (tmp_path / "home" / ".config" / "camreid" / "evidence-keys").is_dir()
    r = c.post("/admin/forget", data={"csrf": csrf, "global_id": str(gid)})
    assert r.status_code == 200 and "forgotten" in r.text
    assert c.get(f"/identity/{gid}").status_code == 404
    with StoreReader(web_db) as store:
        assert store.tracks(track_ids=[1, 3]) == [] and len(store.samples_of([1, 3])) == 0
    r = c.post("/admin/purge", data={"csrf": csrf, "thumbnails_days": "1"})
    assert r.status_code == 200 and "purged" in r.text
    with StoreReader(web_db) as store:
        s = store.samples_of([2, 4, 5], thumbnails=True)
        assert len(s) == 9 and not any(s.thumbnails)  # thumbnails older than a day are gone, vectors kept
    assert [e.action for e in audit.read(web_db, user="ada")][-3:] == ["export", "forget", "purge"]
    assert audit.verify(web_db).ok
    viewer, vcsrf = client("vic")
    assert viewer.post("/admin/forget", data={"csrf": vcsrf, "global_id": str(other)}).status_code == 403
