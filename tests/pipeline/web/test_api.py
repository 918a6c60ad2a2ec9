"""The web app through FastAPI's test client on a real demo store (runs the real detector once: slow)."""
from __future__ import annotations

import re
import zipfile
from io import BytesIO

import numpy as np
import pytest

from pipeline.access import audit
from pipeline.config import WebConfig
from pipeline.search import search_tracks
from pipeline.store import StoreReader

from .conftest import PASSWORD, csrf_of, login

pytestmark = pytest.mark.slow


def _search(ns, photo: bytes, **fields):
    data = {"csrf": ns.csrf, **fields}
    return ns.client.post("/api/search", data=data, files={"photo": ("suspect.jpg", photo, "image/jpeg")})


def test_login_sets_a_strict_http_only_cookie_and_logout_ends_the_session(web_app, web_store):
    from fastapi.testclient import TestClient

    with TestClient(web_app) as c:
        r, csrf = login(c, "op")
        cookie = r.headers["set-cookie"]
        assert "camreid_session=" in cookie and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
        assert c.get("/cameras").status_code == 200
        r = c.post("/logout", data={"csrf": csrf}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert c.get("/api/cameras").status_code == 401
    actions = [(e.actor, e.action) for e in audit.read(web_store, user="op")]
    assert ("op", "login") in actions and ("op", "logout") in actions


def test_wrong_password_is_refused_and_audited(web_app, web_store):
    from fastapi.testclient import TestClient

    before = len(audit.read(web_store, action="login_failed"))
    with TestClient(web_app) as c:
        r, _ = login(c, "viewer", "not the password")
        assert r.status_code == 401 and "wrong user name or password" in r.text
        assert c.get("/identities", follow_redirects=False).status_code == 303
    failed = audit.read(web_store, action="login_failed")
    assert len(failed) == before + 1 and failed[-1].details["name"] == "viewer"
    assert "not the password" not in str(failed[-1].details)


def test_search_ranks_like_the_cli_and_is_audited(client_as, web_store, suspect_jpg):
    op = client_as("op")
    r = _search(op, suspect_jpg)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["identities"], "the suspect photo matches nobody in the demo store"
    # the same ranking as `pipeline query` (search_tracks with the store's embedder)
    from pipeline.stages.embed import Embedder
    from reid_models.common import decode_image

    with StoreReader(web_store) as store:
        q = Embedder.from_spec(store.embedder_spec, device="cpu")([decode_image(suspect_jpg)])[0]
        cli = search_tracks(store, q, top=len(body["identities"]))
    cli_ranks = {}
    for s in cli:
        cli_ranks.setdefault(s.rank, s)
    assert [(h["rank"], h["global_id"], h["track_id"]) for h in body["identities"]] == \
        [(k, s.global_id, s.track_id) for k, s in sorted(cli_ranks.items())]
    assert np.isclose(body["identities"][0]["score"], cli_ranks[1].identity_score, atol=1e-5)
    for hit in body["identities"]:  # one best thumbnail per camera, best first
        cams = [c["camera_id"] for c in hit["cameras"]]
        assert len(cams) == len(set(cams))
        scores = [c["score"] for c in hit["cameras"]]
        assert scores == sorted(scores, reverse=True) and np.isclose(scores[0], hit["score"])
        for c in hit["cameras"]:
            img = op.client.get(f"/media/sample/{c['sample_id']}.jpg")
            assert img.status_code == 200 and img.content[:2] == b"\xff\xd8"
    entry = audit.read(web_store, user="op", action="search")[-1]
    assert entry.details["photo_sha256"] == body["photo_sha256"]
    assert entry.details["results"] == len(body["identities"])
    assert entry.details["filters"]["cameras"] == ["north", "south"]
    assert entry.details["identities"] == sorted(h["global_id"] for h in body["identities"]
                                          if h["global_id"] is not None)


def test_results_are_paginated_without_a_cap(web_store, suspect_jpg, tmp_path):
    from fastapi.testclient import TestClient

    from pipeline.web import create_app

    app = create_app(web_store, cfg=WebConfig(page_size=1), device="cpu", cache_dir=tmp_path)
    with TestClient(app) as c:
        _, csrf = login(c, "op")
        first = c.post("/api/search", data={"csrf": csrf},
                       files={"photo": ("s.jpg", suspect_jpg, "image/jpeg")}).json()
        pages = [first]
        while pages[-1]["has_more"]:
            pages.append(c.get(f"/api/search/{first['search_id']}", params={"page": len(pages) + 1}).json())
        html = c.get(f"/search/{first['search_id']}", params={"page": 2}).text
    ranks = [h["rank"] for p in pages for h in p["identities"]]
    with StoreReader(web_store) as store:
        n_identities = len({t.global_id if t.global_id is not None else -t.id
                            for t in store.tracks(min_samples=1)})
    assert ranks == list(range(1, n_identities + 1)), "every identity of the store, one per page, in rank order"
    assert len(pages) == n_identities >= 3
    assert 'data-rank="2"' in html and "previous" in html


def test_camera_filter_and_time_window_restrict_results(client_as, web_store, suspect_jpg):
    op = client_as("op")
    south = _search(op, suspect_jpg, cameras="south").json()
    assert south["identities"] and all(c["camera_id"] == "south" for h in south["identities"] for c in h["cameras"])
    with StoreReader(web_store) as store:
        tracks = store.tracks()
    t_mid = sorted(t.end_time for t in tracks)[len(tracks) // 2]
    late = _search(op, suspect_jpg, since=str(t_mid)).json()
    assert all(c["end_time"] >= t_mid for h in late["identities"] for c in h["cameras"])
    r = _search(op, suspect_jpg, since="2030-01-01T00:00:00", until="2020-01-01T00:00:00")
    assert r.status_code == 400 and "swap" in r.json()["error"]


def test_drawn_box_is_searched_and_too_small_a_box_is_a_clear_400(client_as, suspect_jpg):
    from reid_models.common import decode_image

    op = client_as("op")
    h, w = decode_image(suspect_jpg).shape[:2]
    r = _search(op, suspect_jpg, box=f"0,0,{w},{h}")
    assert r.status_code == 200 and r.json()["identities"]
    r = _search(op, suspect_jpg, box="0,0,5,5")
    assert r.status_code == 400 and "minimum" in r.json()["error"]


def test_identity_page_timeline_video_and_audit(client_as, web_store):
    op = client_as("op")
    with StoreReader(web_store) as store:
        gid = max(store.identities().items(), key=lambda kv: len(kv[1]))[0]
        tracks = store.tracks(global_ids=[gid])
    page = op.client.get(f"/identity/{gid}")
    assert page.status_code == 200
    for t in tracks:
        assert f'data-track="{t.id}"' in page.text and f"/media/track/{t.id}.webm" in page.text
    assert len(re.findall(r'class="lane"', page.text)) == len({t.camera_id for t in tracks})
    assert 'id="export"' in page.text and 'id="merge"' in page.text
    video = op.client.get(f"/media/track/{tracks[0].id}.webm")
    assert video.status_code == 200 and video.headers["content-type"] == "video/webm"
    assert video.content[:4] == b"\x1a\x45\xdf\xa3"  # EBML (WebM) header
    import cv2

    path = web_store.parent / "seg.webm"
    path.write_bytes(video.content)
    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert n == tracks[0].end_frame - tracks[0].start_frame + 1
    frame = op.client.get(f"/media/track/{tracks[0].id}/frame/0.jpg")
    assert frame.status_code == 200 and frame.content[:2] == b"\xff\xd8"
    entry = audit.read(web_store, user="op", action="view_identity")[-1]
    assert entry.details["identity"] == gid


def test_viewer_browses_but_sees_no_search_or_correction_controls(client_as, web_store):
    v = client_as("viewer")
    assert v.client.get("/search").status_code == 403
    with StoreReader(web_store) as store:
        gid = next(iter(store.identities()))
    page = v.client.get(f"/identity/{gid}").text
    assert "Play segment" in page and 'id="merge"' not in page and "Split out" not in page
    assert v.client.get("/identities").status_code == 200 and v.client.get("/cameras").status_code == 200


def test_cameras_page_shows_status_time_and_snapshot(client_as, web_store):
    op = client_as("op")
    cams = op.client.get("/api/cameras").json()["cameras"]
    with StoreReader(web_store) as store:
        tracks = store.tracks()
        rows = store.camera_statuses()
        last_run = store.runs()[-1][0]
    assert [c["camera_id"] for c in cams] == ["north", "south"]
    for c in cams:
        mine = [t for t in tracks if t.camera_id == c["camera_id"]]
        row = rows[c["camera_id"]]  # the demo run's heartbeat: ended, every frame of its window read
        assert (row.state, row.run_id, row.frames) == ("ended", last_run, 60)
        assert c["status"] == "ended" and c["nominal_fps"] == 10.0 and c["frames"] == 60
        assert c["last_time"] == row.last_frame_time >= max(t.end_time for t in mine) and c["n_tracks"] == len(mine)
        snap = op.client.get(f"/media/camera/{c['camera_id']}/snapshot.jpg")
        assert snap.status_code == 200 and snap.content[:2] == b"\xff\xd8"
    assert "status-ended" in op.client.get("/cameras").text


def test_corrections_are_manual_links_and_audited(demo_run, fresh_store, tmp_path):
    from fastapi.testclient import TestClient

    from pipeline.web import create_app

    with StoreReader(fresh_store) as store:
        ids = sorted(store.identities())
        keep, other = ids[0], ids[1]
        moved = [t.id for t in store.tracks(global_ids=[other])]
    app = create_app(fresh_store, device="cpu", cache_dir=tmp_path / "cache")
    with TestClient(app) as c:
        _, csrf = login(c, "op")
        r = c.post(f"/identity/{keep}/merge", data={"csrf": csrf, "other": str(other)}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == f"/identity/{keep}"
        with StoreReader(fresh_store) as store:
            assert {t.global_id for t in store.tracks(track_ids=moved)} == {keep}
            assert other not in store.identities()
            methods = {tid: m for tid, _, _, m in store.links() if tid in moved}
        assert methods and all(m == "manual" for m in methods.values())
        r = c.post(f"/track/{moved[0]}/split", data={"csrf": csrf}, follow_redirects=False)
        assert r.status_code == 303
        with StoreReader(fresh_store) as store:
            new = store.tracks(track_ids=[moved[0]])[0].global_id
        assert new not in (keep, other) and r.headers["location"] == f"/identity/{new}"
        assert c.post(f"/track/{moved[0]}/reject", data={"csrf": csrf}).status_code == 200
        with StoreReader(fresh_store) as store:
            assert store.tracks(track_ids=[moved[0]])[0].global_id is None
    kinds = [e.details["kind"] for e in audit.read(fresh_store, user="op", action="correct")]
    assert kinds == ["merge", "split", "reject"]


def test_admin_pages_users_audit_forget_and_purge(fresh_store, tmp_path):
    from fastapi.testclient import TestClient

    from pipeline.access import users
    from pipeline.web import create_app

    app = create_app(fresh_store, device="cpu", cache_dir=tmp_path / "cache")
    with TestClient(app) as c:
        _, csrf = login(c, "admin")
        page = c.get("/admin/users").text
        assert all(name in page for name in ("op", "northop", "viewer"))
        r = c.post("/admin/users", data={"csrf": csrf, "name": "carol", "role": "viewer", "password": PASSWORD,
                                          "cameras": "south"}, follow_redirects=False)
        assert r.status_code == 303 and users.get_user(fresh_store, "carol").cameras == ("south",)
        assert c.post("/admin/users/remove", data={"csrf": csrf, "name": "carol"}).status_code == 200
        assert users.get_user(fresh_store, "carol") is None
        audit_page = c.get("/admin/audit").text
        assert 'id="verdict" class="ok"' in audit_page and "login" in audit_page
        with StoreReader(fresh_store) as store:
            gid = next(iter(store.identities()))
            n_before = len(store.tracks())
            gone = len(store.tracks(global_ids=[gid]))
        r = c.post("/admin/forget", data={"csrf": csrf, "global_id": str(gid)})
        assert r.status_code == 200 and "forgotten" in r.text
        with StoreReader(fresh_store) as store:
            assert gid not in store.identities() and len(store.tracks()) == n_before - gone
        assert c.get(f"/identity/{gid}").status_code == 404
        r = c.post("/admin/purge", data={"csrf": csrf, "boxes_days": "1", "dry_run": "on"})
        assert r.status_code == 200 and "dry run" in r.text
        with StoreReader(fresh_store) as store:
            assert len(store.tracks()) == n_before - gone  # a dry run deletes nothing
    actions = [e.action for e in audit.read(fresh_store, user="admin")]
    assert actions[-3:] == ["users", "users", "forget"]  # a dry run writes nothing, not even an audit row


def test_export_evidence_returns_a_zip(fresh_store, tmp_path, suspect_jpg):
    pytest.importorskip("pipeline.access.evidence", reason="pipeline.access.evidence is not merged yet")
    from fastapi.testclient import TestClient

    from pipeline.web import create_app

    app = create_app(fresh_store, device="cpu", cache_dir=tmp_path / "cache")
    with TestClient(app) as c:
        _, csrf = login(c, "op")
        sid = c.post("/api/search", data={"csrf": csrf}, files={"photo": ("s.jpg", suspect_jpg, "image/jpeg")}).json()
        gid = next(h["global_id"] for h in sid["identities"] if h["global_id"] is not None)
        r = c.post(f"/identity/{gid}/export", data={"csrf": csrf, "search": sid["search_id"]})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(BytesIO(r.content)).namelist()
    assert names, "empty evidence archive"
    assert audit.read(fresh_store, user="op", action="export")


def test_pages_stay_usable_while_a_writer_holds_the_store(fresh_store, tmp_path):
    """A TrackStore (what `run` writes with) holds the writer lock with an open batch: pages still answer."""
    from fastapi.testclient import TestClient

    from pipeline.config import StoreConfig
    from pipeline.store import TrackStore
    from pipeline.web import create_app

    with StoreReader(fresh_store) as store:
        spec, emb_id, dim = store.embedder_spec, store.embedder_id, store.embedding_dim
        gid = next(iter(store.identities()))
    app = create_app(fresh_store, device="cpu", cache_dir=tmp_path / "cache")
    with TestClient(app) as c:
        login(c, "op")
        writer = TrackStore(StoreConfig(path=str(fresh_store)), emb_id, dim, spec)
        try:
            writer.start_run({"test": "web reads while a run writes"})
            writer.commit()
            writer.add_camera("north", "elsewhere.avi", {"kind": "file"})  # an open, uncommitted batch
            statuses = {c["camera_id"]: c["status"] for c in c.get("/api/cameras").json()["cameras"]}
            assert statuses == {"north": "ended", "south": "ended"}  # the demo run's rows until this run writes
            assert c.get("/identities").status_code == 200
            assert c.get("/media/camera/north/snapshot.jpg").status_code == 200  # the committed source
            # audited pages write an audit row: like a run, the writer commits its batch (every
            # store.commit_interval), and the row goes in between two batches
            writer.commit()
            assert c.get(f"/identity/{gid}").status_code == 200
            writer.camera_status("north", "reconnecting", 12, 0.0, 1000.0, "stream rtsp://cam dropped after 12 frames")
            writer.camera_status("south", "live", 30, 9.8, 1003.0)
            writer.commit()  # the heartbeat commits with the run's batch
            cams = {c["camera_id"]: c for c in c.get("/api/cameras").json()["cameras"]}
            assert {k: v["status"] for k, v in cams.items()} == {"north": "reconnecting", "south": "live"}
            assert cams["south"]["fps"] == 9.8 and cams["south"]["last_time"] == 1003.0
            assert cams["north"]["last_error"] == "stream rtsp://cam dropped after 12 frames"
            page = c.get("/cameras").text
            assert "status-reconnecting" in page and "status-live" in page and "dropped after 12 frames" in page
        finally:
            writer.close(discard_if_empty=True)
        # the run is gone while its rows say live/reconnecting: it died
        assert {c["status"] for c in c.get("/api/cameras").json()["cameras"]} == {"stopped"}


def test_login_form_needs_its_csrf_token(web_app):
    from fastapi.testclient import TestClient

    with TestClient(web_app) as c:
        r = c.post("/login", data={"name": "op", "password": PASSWORD}, follow_redirects=False)
        assert r.status_code == 403
        page = c.get("/login")
        assert csrf_of(page.text)


def test_cameras_without_heartbeat_rows_fall_back_to_inference(fresh_store, tmp_path):
    """A store written before schema v5 has no camera_status rows: statuses come from the stored boxes."""
    import sqlite3

    from fastapi.testclient import TestClient

    from pipeline.web import create_app

    con = sqlite3.connect(fresh_store)
    con.execute("DELETE FROM camera_status")
    con.commit()
    con.close()
    with StoreReader(fresh_store) as store:
        tracks = store.tracks()
    with TestClient(create_app(fresh_store, device="cpu", cache_dir=tmp_path / "cache")) as c:
        login(c, "op")
        for cam in c.get("/api/cameras").json()["cameras"]:
            mine = [t for t in tracks if t.camera_id == cam["camera_id"]]
            assert cam["status"] == "ended" and cam["frames"] is None
            assert cam["last_time"] == max(t.end_time for t in mine)


def test_stale_heartbeat_of_a_writing_run_reads_stopped():
    """A live row not updated for 3 commit intervals is shown stopped even while a run holds the store."""
    from pipeline.store import CameraStatusRecord
    from pipeline.web.data import stored_state

    class Reader:
        shared = False

        def runs(self):
            return [(7, 0.0, None, {"store": {"commit_interval": 2.0}})]

    row = CameraStatusRecord("north", 7, "reconnecting", 5, 0.0, 100.0, "cannot connect", updated=1000.0)
    assert stored_state(Reader(), row, active=True, now=1005.0) == "reconnecting"
    assert stored_state(Reader(), row, active=True, now=1006.5) == "stopped"  # > 3 x 2 s old
    assert stored_state(Reader(), row, active=False, now=1001.0) == "stopped"  # no run writes
    ended = CameraStatusRecord("north", 7, "ended", 5, None, 100.0, None, updated=0.0)
    assert stored_state(Reader(), ended, active=False, now=1e9) == "ended"
