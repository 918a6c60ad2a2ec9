"""Fixtures of the web app tests: a copy of the session's real demo store (tests/conftest.py
``demo_run``) with one user per role, and logged-in test clients."""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

PASSWORD = "correct horse 42"
USERS = {"admin": ("admin", None), "op": ("operator", None), "northop": ("operator", ["north"]),
         "viewer": ("viewer", None)}


def copy_store(src: Path, dst_dir: Path) -> Path:
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / "store.db"
    for suffix in ("", "-wal"):
        if Path(str(src) + suffix).is_file():
            shutil.copy(str(src) + suffix, str(dst) + suffix)
    return dst


def make_web_store(demo_run, folder: Path) -> Path:
    """A copy of the demo store with the USERS added (the copy is migrated to the access schema)."""
    from pipeline.access import users

    db = copy_store(demo_run.db, folder)
    for name, (role, cams) in USERS.items():
        users.add_user(db, name, role, PASSWORD, cams)
    return db


@pytest.fixture(scope="session")
def web_store(demo_run, tmp_path_factory) -> Path:
    """Store shared by the read-only tests (nothing may correct or erase in it)."""
    return make_web_store(demo_run, tmp_path_factory.mktemp("web_store"))


@pytest.fixture
def fresh_store(demo_run, tmp_path) -> Path:
    """A private copy for tests that change the store (corrections, erasure)."""
    return make_web_store(demo_run, tmp_path / "store")


@pytest.fixture(scope="session")
def web_app(web_store, tmp_path_factory):
    from pipeline.web import create_app

    return create_app(web_store, device="cpu", cache_dir=tmp_path_factory.mktemp("web_cache"))


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def login(client, name: str, password: str = PASSWORD):
    """Log ``client`` in through the login form; returns (response, csrf token of the session)."""
    page = client.get("/login")
    r = client.post("/login", data={"name": name, "password": password, "csrf": csrf_of(page.text), "next": "/cameras"},
                    follow_redirects=False)
    if r.status_code != 303:
        return r, None
    return r, csrf_of(client.get("/cameras").text)


@pytest.fixture
def client_as(web_app):
    """``client_as(name) -> SimpleNamespace(client, csrf)``: a TestClient logged in as that user."""
    from fastapi.testclient import TestClient

    made = []

    def make(name: str, app=None):
        c = TestClient(app or web_app)
        made.append(c)
        r, csrf = login(c, name)
        assert r.status_code == 303, r.text
        return SimpleNamespace(client=c, csrf=csrf)

    yield make
    for c in made:
        c.close()


@pytest.fixture(scope="session")
def suspect_jpg() -> bytes:
    return (Path(__file__).resolve().parents[3] / "streams" / "suspect.jpg").read_bytes()
