"""Security properties of the web app (issue 11 part 2) on a real demo store: sessions on every
route, CSRF, roles, camera scopes, path traversal, upload limits, login rate limiting."""
from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute

from pipeline.store import StoreReader

from .conftest import PASSWORD, csrf_of, login

pytestmark = pytest.mark.slow


def store_identities(db) -> dict[int, list[str]]:
    with StoreReader(db) as store:
        return store.identities()


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_route_without_a_session_is_401_or_a_login_redirect(web_app):
    from fastapi.testclient import TestClient

    routes = [(m, r.path) for r in web_app.routes if isinstance(r, APIRoute) for m in r.methods]
    assert len(routes) >= 25
    with TestClient(web_app) as c:
        for method, path in routes:
            if path == "/login":
                continue
            r = c.request(method, _concrete(path), follow_redirects=False)
            if path.startswith(("/api/", "/media/")):
                assert r.status_code == 401, (method, path, r.status_code)
            else:
                assert r.status_code in (401, 303), (method, path, r.status_code)
                if r.status_code == 303:
                    assert r.headers["location"].startswith("/login"), (method, path)
        assert c.get("/login").status_code == 200


def test_a_post_without_or_with_a_wrong_csrf_token_is_403(client_as, web_store):
    op = client_as("op")
    with StoreReader(web_store) as store:
        a, b = sorted(store.identities())[:2]
        tid = store.tracks(global_ids=[a])[0].id
    for path, data in ((f"/identity/{a}/merge", {"other": str(b)}), (f"/track/{tid}/split", {}),
                       (f"/track/{tid}/reject", {}), ("/logout", {}), ("/api/search", {})):
        assert op.client.post(path, data=data).status_code == 403, path
        assert op.client.post(path, data={**data, "csrf": "forged"}).status_code == 403, path
    with StoreReader(web_store) as store:
        assert store.tracks(track_ids=[tid])[0].global_id == a, "a refused request changed the store"
    assert op.client.get("/cameras").status_code == 200, "the session survived (logout was refused)"


def test_viewer_cannot_search_correct_export_purge_or_forget(client_as, web_store):
    v = client_as("viewer")
    with StoreReader(web_store) as store:
        a, b = sorted(store.identities())[:2]
        tid = store.tracks(global_ids=[a])[0].id
        before = [(t.id, t.global_id) for t in store.tracks()]
    for path, data in ((f"/identity/{a}/merge", {"other": str(b)}), (f"/track/{tid}/split", {}),
                       (f"/track/{tid}/confirm", {}), (f"/track/{tid}/reject", {}), (f"/identity/{a}/export", {}),
                       ("/admin/forget", {"global_id": str(a)}), ("/admin/purge", {"boxes_days": "1"}),
                       ("/admin/users", {"name": "eve", "role": "admin", "password": PASSWORD}), ("/api/search", {})):
        assert v.client.post(path, data={**data, "csrf": v.csrf}).status_code == 403, path
    for path in ("/admin/users", "/admin/audit", "/admin/erasure", "/search"):
        assert v.client.get(path).status_code == 403, path
    op = client_as("op")
    for path, data in (("/admin/forget", {"global_id": str(a)}), ("/admin/purge", {"boxes_days": "1"})):
        assert op.client.post(path, data={**data, "csrf": op.csrf}).status_code == 403, path
    with StoreReader(web_store) as store:
        assert [(t.id, t.global_id) for t in store.tracks()] == before


def test_camera_scoped_user_never_sees_another_cameras_data(client_as, web_store, suspect_jpg):
    n = client_as("northop")
    with StoreReader(web_store) as store:
        tracks = store.tracks()
        south = [t for t in tracks if t.camera_id == "south"]
        north = [t for t in tracks if t.camera_id == "north"]
        south_samples = store.samples_of([t.id for t in south])
        north_samples = store.samples_of([t.id for t in north])
        only_south = [g for g, cams in store.identities().items() if cams == ["south"]]
        both = [g for g, cams in store.identities().items() if cams == ["north", "south"]]
    assert len(south_samples) and len(north_samples)
    for sid in south_samples.id:  # every south thumbnail id, guessed one by one
        assert n.client.get(f"/media/sample/{int(sid)}.jpg").status_code == 404
    assert n.client.get(f"/media/sample/{int(north_samples.id[0])}.jpg").status_code == 200
    for t in south:
        assert n.client.get(f"/media/track/{t.id}.webm").status_code == 404
        assert n.client.get(f"/media/track/{t.id}/frame/0.jpg").status_code == 404
        assert n.client.get(f"/track/{t.id}").status_code == 404
    assert n.client.get("/media/camera/south/snapshot.jpg").status_code == 404
    for g in only_south:
        assert n.client.get(f"/identity/{g}").status_code == 404
    for g in both:  # a cross-camera identity shows only its north tracks
        page = n.client.get(f"/identity/{g}").text
        assert all(f'data-track="{t.id}"' not in page for t in south if t.global_id == g)
        assert any(f'data-track="{t.id}"' in page for t in north if t.global_id == g)
    r = n.client.post("/api/search", data={"csrf": n.csrf}, files={"photo": ("s.jpg", suspect_jpg, "image/jpeg")})
    assert r.status_code == 200
    assert {c["camera_id"] for h in r.json()["identities"] for c in h["cameras"]} == {"north"}
    r = n.client.post("/api/search", data={"csrf": n.csrf, "cameras": "south"},
                      files={"photo": ("s.jpg", suspect_jpg, "image/jpeg")})
    assert r.status_code == 400 and "south" in r.json()["error"]
    cams = n.client.get("/api/cameras").json()["cameras"]
    assert [c["camera_id"] for c in cams] == ["north"]
    only_north = [g for g, cs in store_identities(web_store).items() if cs == ["north"]]
    if both and only_north:  # merging would move south tracks the user may not see
        r = n.client.post(f"/identity/{both[0]}/merge", data={"csrf": n.csrf, "other": str(only_north[0])})
        assert r.status_code == 403 and "south" in r.text
        assert store_identities(web_store)[only_north[0]] == ["north"], "the refused merge changed the store"
    assert "south" not in n.client.get("/identities").text


@pytest.mark.parametrize("path", ["/media/sample/..%2F..%2F..%2Fetc%2Fpasswd.jpg", "/media/sample/../../etc/passwd",
                                  "/media/track/..%2Fstore.db.webm", "/media/camera/..%2F..%2Fetc/snapshot.jpg",
                                  "/media/camera/%2E%2E/snapshot.jpg", "/static/../app.py", "/static/..%2Fapp.py",
                                  "/static/%2e%2e/%2e%2e/pipeline/web/app.py", "/media/query/..%2F..%2Fx.jpg",
                                  "/media/track/1/frame/..%2F..%2Fx.jpg"])
def test_path_traversal_in_file_routes_is_404(client_as, path):
    op = client_as("op")
    r = op.client.get(path)
    assert r.status_code == 404, (path, r.status_code)
    assert b"import" not in r.content and b"root:" not in r.content


def test_upload_over_the_limit_is_413_and_a_non_image_is_a_clear_400(web_store, tmp_path):
    from fastapi.testclient import TestClient

    from pipeline.config import WebConfig
    from pipeline.web import create_app

    app = create_app(web_store, cfg=WebConfig(upload_max_bytes=64 * 1024), device="cpu", cache_dir=tmp_path)
    with TestClient(app) as c:
        _, csrf = login(c, "op")
        big = b"\xff\xd8" + b"\0" * (200 * 1024)
        r = c.post("/api/search", data={"csrf": csrf}, files={"photo": ("big.jpg", big, "image/jpeg")})
        assert r.status_code == 413
        text = ("notes.txt", b"hello, not a photo", "text/plain")
        r = c.post("/api/search", data={"csrf": csrf}, files={"photo": text})
        assert r.status_code == 400 and "not a decodable image" in r.json()["error"]
        r = c.post("/search", data={"csrf": csrf}, files={"photo": ("notes.txt", b"%PDF-1.4", "application/pdf")})
        assert r.status_code == 400 and "not a decodable image" in r.text and 'id="search-form"' in r.text
        r = c.post("/api/search", data={"csrf": csrf})
        assert r.status_code == 400 and "no photo" in r.json()["error"]


def test_failed_logins_are_rate_limited(web_store, tmp_path):
    from fastapi.testclient import TestClient

    from pipeline.access import audit
    from pipeline.config import WebConfig
    from pipeline.web import create_app

    app = create_app(web_store, cfg=WebConfig(login_failures=3), device="cpu", cache_dir=tmp_path)
    with TestClient(app) as c:
        codes = [login(c, "admin", f"guess number {i}")[0].status_code for i in range(3)]
        assert codes == [401, 401, 401]
        r, _ = login(c, "admin", "guess number 4")
        assert r.status_code == 429 and "too many failed logins" in r.text
        r, _ = login(c, "admin")  # even the right password waits out the window
        assert r.status_code == 429
    reasons = [e.details.get("reason") for e in audit.read(web_store, action="login_failed")
               if e.details.get("name") == "admin"]
    assert reasons.count("rate limited") >= 2


def test_security_headers_and_no_session_cookie_for_static(web_app):
    from fastapi.testclient import TestClient

    with TestClient(web_app) as c:
        r = c.get("/login")
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
        assert c.get("/static/app.js").status_code == 200
        assert csrf_of(r.text)


def test_serve_with_tls_speaks_https_and_marks_cookies_secure(web_store, tmp_path):
    import os
    import shutil
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    repo = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", "--db", str(web_store), "--port", str(port),
                             "--host", "0.0.0.0", "--tls-cert", str(cert), "--tls-key", str(key)], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    try:
        deadline, page = time.monotonic() + 60, None
        while time.monotonic() < deadline and page is None:
            try:
                page = httpx.get(f"https://127.0.0.1:{port}/login", verify=False, timeout=5)
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.5)
        assert page is not None and page.status_code == 200
        assert "secure" in page.headers["set-cookie"].lower()
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the TLS port
            httpx.get(f"http://127.0.0.1:{port}/login", timeout=5)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert "warning" not in out, "TLS on: no clear-text warning"
