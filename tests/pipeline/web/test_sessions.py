"""Sessions, the failed-login limiter and the serve checks: fast, no store needed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import ConfigError, WebConfig
from pipeline.web.search import UploadError, decode_query
from pipeline.web.serve import check_tls, exposure_warning, is_loopback
from pipeline.web.sessions import LoginLimiter, SessionStore, same_token
from reid_models.common import UserError

REPO = Path(__file__).resolve().parents[3]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_sessions_expire_when_idle_or_too_old_and_tokens_are_unguessable():
    clock = Clock()
    store = SessionStore(WebConfig(session_idle_minutes=10, session_max_hours=1), clock=clock)
    a, b = store.create("ann"), store.create("ann")
    assert a.token != b.token and a.csrf != b.csrf and len(a.token) >= 43  # 32 random bytes
    assert store.get(a.token) is a and store.get("forged") is None and store.get(None) is None
    clock.t += 9 * 60
    assert store.get(a.token) is a  # used: the idle clock restarts
    clock.t += 11 * 60
    assert store.get(a.token) is None and store.get(b.token) is None  # b idle 20 min
    c = store.create("bob")
    for _ in range(7):
        clock.t += 9 * 60
        store.get(c.token)
    assert store.get(c.token) is None, "a session kept busy still ends after session_max_hours"
    d = store.create("carl")
    store.end_user("carl")
    assert store.get(d.token) is None


def test_same_token_refuses_missing_tokens():
    assert same_token("abc", "abc") and not same_token("abc", "abd")
    assert not same_token("", "") and not same_token(None, None) and not same_token("x", None)


def test_login_limiter_blocks_after_the_failures_until_the_window_passes():
    clock = Clock()
    lim = LoginLimiter(WebConfig(login_failures=3, login_window_seconds=60), clock=clock)
    for _ in range(3):
        assert lim.blocked("user:a", "addr:1") == 0
        lim.failed("user:a", "addr:1")
    assert 59 < lim.blocked("user:a", "addr:1") <= 60
    assert lim.blocked("user:b", "addr:1") > 0, "the address is blocked for every name"
    assert lim.blocked("user:b", "addr:2") == 0
    clock.t += 61
    assert lim.blocked("user:a", "addr:1") == 0


def test_web_config_is_checked():
    with pytest.raises(ConfigError, match="upload_max_bytes"):
        WebConfig(upload_max_bytes=10)
    with pytest.raises(ConfigError, match="login_failures"):
        WebConfig(login_failures=0)


def test_binding_beyond_loopback_without_tls_warns_naming_the_risk():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
    assert exposure_warning("127.0.0.1", tls=False) is None and exposure_warning("0.0.0.0", tls=True) is None
    text = exposure_warning("0.0.0.0", tls=False)
    assert "without TLS" in text and "clear text" in text and "--tls-cert" in text


def test_tls_files_go_together(tmp_path):
    assert check_tls(None, None) is False
    with pytest.raises(UserError, match="go together"):
        check_tls(str(tmp_path / "c.pem"), None)
    with pytest.raises(UserError, match="not found"):
        check_tls(str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))


def test_query_upload_errors_are_one_clear_line():
    photo = (REPO / "streams" / "suspect.jpg").read_bytes()
    assert decode_query(photo).shape == (196, 104, 3)
    assert decode_query(photo, (10, 20, 90, 190)).shape == (170, 80, 3)
    with pytest.raises(UploadError, match="not a decodable image"):
        decode_query(b"GIF89a but not really")
    with pytest.raises(UploadError, match="empty inside the 104x196 photo"):
        decode_query(photo, (500, 500, 600, 600))
    with pytest.raises(UserError, match="minimum"):
        decode_query(photo, (0, 0, 20, 20))


def test_serve_refuses_a_missing_store_and_half_tls_in_one_line(tmp_path):
    run = [sys.executable, "-m", "pipeline", "serve", "--db", str(tmp_path / "none.db")]
    r = subprocess.run(run, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().startswith("error: no store at")
    assert len(r.stderr.strip().splitlines()) == 1
