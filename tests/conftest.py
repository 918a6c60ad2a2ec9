"""Shared pytest fixtures (keep each one small and documented)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def vtest_path() -> Path:
    """The real demo clip streams/vtest.avi (768x576, 10 fps, 795 frames, OpenCV sample data)."""
    path = REPO / "streams" / "vtest.avi"
    assert path.is_file(), f"missing real demo clip {path}; see streams/README.md"
    return path


# ---------------------------------------------------------------------------------------------
# A real pipeline run shared by tests/pipeline/test_runner.py, cli/test_cli.py and test_annotate.py
# (tests using it are marked slow): streams/demo.yaml settings on 60 frames per camera around the
# north/south split of the clip.
# ---------------------------------------------------------------------------------------------
os.environ.setdefault("YOLO_OFFLINE", "1")  # never reach for the network from tests
os.environ.setdefault("YOLO_AUTOINSTALL", "False")

DEMO_WINDOW = {"north": (340, 400), "south": (400, 460)}  # source frames [start, end) per camera


@pytest.fixture(scope="session")
def make_demo_yaml():
    """``make_demo_yaml(path, window=DEMO_WINDOW, db=None, **extra)`` writes a cams.yaml that is
    streams/demo.yaml with each camera's frame range replaced by ``window[camera]`` (cameras not
    in ``window`` are dropped), the store at ``db`` (default: beside the YAML) and top-level
    ``extra`` keys merged in. Returns the path."""
    import yaml

    def make(path: Path, window: dict = DEMO_WINDOW, db: Path | None = None, **extra) -> Path:
        data = yaml.safe_load((REPO / "streams" / "demo.yaml").read_text())
        cams = []
        for cam in data["cameras"]:
            if cam["id"] in window:
                cam.update(source=str(REPO / "streams" / cam["source"]), start_frame=window[cam["id"]][0],
                           end_frame=window[cam["id"]][1])
                cams.append(cam)
        data["cameras"] = cams
        keep = set(window)
        data["association"]["transit"] = [r for r in data["association"].get("transit", [])
                                          if set(r["cameras"]) <= keep]
        data["store"]["path"] = str(db if db is not None else Path(path).with_suffix(".db"))
        for key, value in extra.items():
            data[key] = value
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return make


@pytest.fixture(scope="session")
def demo_run(make_demo_yaml, tmp_path_factory):
    """One real run (bundled detector, ByteTracker, ImageNet MobileNetV2, SQLite store, association,
    --save-video) over DEMO_WINDOW. Returns a namespace: yaml, db, summary (RunSummary), video_dir."""
    from types import SimpleNamespace

    from pipeline.runner import run_pipeline

    root = tmp_path_factory.mktemp("demo_run")
    cams = make_demo_yaml(root / "cams.yaml", db=root / "demo.db")
    summary = run_pipeline(cams, device="cpu", save_video=root / "video", progress=False)
    return SimpleNamespace(yaml=cams, db=root / "demo.db", summary=summary, video_dir=root / "video")


# ---------------------------------------------------------------------------------------------
# A read-only filesystem for the read-side tests (store on a CD, a read-only mount or share).
# ---------------------------------------------------------------------------------------------
def _try(*cmd: str) -> bool:
    import subprocess

    try:
        return subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture
def read_only_view(tmp_path_factory):
    """``read_only_view(folder) -> (path, how)``: ``folder``'s files where nothing can be created.

    Root ignores permission bits, so as root it is a read-only bind mount of the folder (``mount
    --bind`` + ``remount,ro``), else the folder made immutable (``chattr +i``); as another user the
    folder loses its write bits. Skips, naming why, when none of these is possible. Undone after the test."""
    undo: list[tuple[str, ...]] = []

    def view(folder: Path) -> tuple[Path, str]:
        folder = Path(folder)
        if os.geteuid() != 0:
            mode = folder.stat().st_mode
            folder.chmod(0o555)
            undo.append(("chmod", oct(mode & 0o7777)[2:], str(folder)))
            return folder, "chmod a-w (not root)"
        mnt = tmp_path_factory.mktemp("ro_mount")
        if _try("mount", "--bind", str(folder), str(mnt)):
            undo.append(("umount", str(mnt)))
            if _try("mount", "-o", "remount,ro,bind", str(mnt)):
                return mnt, "read-only bind mount"
        if _try("chattr", "+i", str(folder)):
            undo.append(("chattr", "-i", str(folder)))
            return folder, "chattr +i"
        pytest.skip("cannot make a read-only folder here (no mount --bind/remount,ro nor chattr +i as root)")

    yield view
    for cmd in reversed(undo):
        if not _try(*cmd):
            raise RuntimeError(f"could not undo {' '.join(cmd)}")


# ---------------------------------------------------------------------------------------------
# PostgreSQL for the store tests that run on both backends.
# ---------------------------------------------------------------------------------------------
def _pg_bin(name: str) -> str | None:
    import glob
    import shutil

    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):  # Debian's layout, newest first
        if os.access(f"{folder}/{name}", os.X_OK):
            return f"{folder}/{name}"
    return shutil.which(name)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """URL of a PostgreSQL server for tests: ``$CAMREID_TEST_PG_URL`` if set, else a throwaway cluster
    (initdb in a temporary folder, listening on a Unix socket only, no TCP port; run as the
    ``postgres`` user, or ``$CAMREID_TEST_PG_USER``, when the tests run as root, since initdb refuses
    root), stopped and deleted at the end of the session. Skips, saying why, where neither is possible."""
    import pwd
    import shutil
    import subprocess
    import tempfile

    url = os.environ.get("CAMREID_TEST_PG_URL")
    if url:
        yield url
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("PostgreSQL tests need psycopg: pip install camreid[postgres] (or set CAMREID_TEST_PG_URL)")
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql, "
                    "or set CAMREID_TEST_PG_URL=postgresql://... to use a running server")
    run_as: list[str] = []
    user = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        user = os.environ.get("CAMREID_TEST_PG_USER", "postgres")
        try:
            pwd.getpwnam(user)
        except KeyError:
            pytest.skip(f"tests run as root and there is no user {user!r} to run a throwaway PostgreSQL cluster "
                        "(initdb refuses root): create one or set CAMREID_TEST_PG_USER / CAMREID_TEST_PG_URL")
        run_as = ["runuser", "-u", user, "--"]
    root = Path(tempfile.mkdtemp(prefix="camreid-pg-"))  # short: a Unix socket path has ~100 bytes
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if run_as:
        shutil.chown(root, user)
        shutil.chown(sock, user)

    def sh(*cmd: str) -> None:
        done = subprocess.run([*run_as, *cmd], capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed: {done.stderr.strip() or done.stdout.strip()}")

    sh(initdb, "-D", str(data), "-U", user, "--auth=trust", "--no-sync", "-E", "UTF8")
    options = f"-c listen_addresses='' -k {sock} -c unix_socket_permissions=0700 -c fsync=off"
    sh(pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start")
    try:
        yield f"postgresql:///postgres?host={sock}&user={user}"
    finally:
        sh(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def pg_schema(server: str, label: str):
    """Context manager: the URL of a new, empty schema on ``server`` (a store location), dropped on exit."""
    import contextlib
    import re
    import uuid

    import psycopg

    @contextlib.contextmanager
    def schema():
        name = "t_" + re.sub(r"\W", "_", label.lower())[:40] + "_" + uuid.uuid4().hex[:6]
        with psycopg.connect(server, autocommit=True) as con:
            con.execute(f"CREATE SCHEMA {name}")
        sep = "&" if "?" in server else "?"
        try:
            yield f"{server}{sep}options=-csearch_path%3D{name}"
        finally:
            with psycopg.connect(server, autocommit=True) as con:
                con.execute(f"DROP SCHEMA {name} CASCADE")

    return schema()


@pytest.fixture
def pg_url(pg_server, request):
    """A fresh, empty store location on the test server: its own schema (dropped after the test)."""
    with pg_schema(pg_server, request.node.name) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_db(request, tmp_path):
    """``(backend name, location)`` of a new store, once per backend: a file in tmp_path, or a
    PostgreSQL schema (skipped where no PostgreSQL is available, see :func:`pg_server`)."""
    if request.param == "sqlite":
        return "sqlite", tmp_path / "s.db"
    return "postgresql", request.getfixturevalue("pg_url")
