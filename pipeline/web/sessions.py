"""Login sessions, CSRF tokens and the failed-login limiter of the web app (all in the server's memory).

A session is a random 256-bit token in an HttpOnly, SameSite=Strict cookie (``Secure`` too when the
server runs with TLS); the server keeps, per token, the user name, a CSRF token, and when it began
and was last used. The user's role and cameras are read again from the store on every request, so
removing a user or changing a role takes effect at once. A server restart logs everyone out.
"""
from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from pipeline.config import WebConfig

SESSION_COOKIE = "camreid_session"
LOGIN_COOKIE = "camreid_login"  # pre-session CSRF token of the login form (double-submit)
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


@dataclass
class Session:
    """One logged-in browser: user name, CSRF token, start and last use (epoch seconds)."""

    token: str
    user: str
    csrf: str
    started: float
    last_seen: float
    searches: dict = field(default_factory=dict)  # search id -> web.search.SavedSearch


class SessionStore:
    """Sessions by token; expired ones (idle or too old, see :class:`WebConfig`) are dropped on lookup."""

    MAX_SEARCHES = 20  # saved searches kept per session (oldest dropped)

    def __init__(self, cfg: WebConfig, clock=time.time) -> None:
        self.cfg, self.clock = cfg, clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, user: str) -> Session:
        now = self.clock()
        s = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._sessions[s.token] = s
        return s

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        now = self.clock()
        with self._lock:
            s = self._sessions.get(token)
            if s is None:
                return None
            if (now - s.last_seen > self.cfg.session_idle_minutes * 60
                    or now - s.started > self.cfg.session_max_hours * 3600):
                del self._sessions[token]
                return None
            s.last_seen = now
            return s

    def end(self, token: str | None) -> Session | None:
        with self._lock:
            return self._sessions.pop(token, None) if token else None

    def end_user(self, user: str) -> None:
        """Log a user out everywhere (the user was removed)."""
        with self._lock:
            for token in [t for t, s in self._sessions.items() if s.user == user]:
                del self._sessions[token]

    def save_search(self, session: Session, search_id: str, saved) -> None:
        with self._lock:
            session.searches[search_id] = saved
            while len(session.searches) > self.MAX_SEARCHES:
                session.searches.pop(next(iter(session.searches)))


def same_token(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two tokens; False when either is missing."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


class LoginLimiter:
    """At most ``cfg.login_failures`` failed logins per key (user name, client address) per
    ``cfg.login_window_seconds``; :meth:`blocked` gives the seconds left to wait (0 when allowed)."""

    def __init__(self, cfg: WebConfig, clock=time.monotonic) -> None:
        self.cfg, self.clock = cfg, clock
        self._fails: dict[str, deque] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque:
        q = self._fails.setdefault(key, deque())
        while q and now - q[0] > self.cfg.login_window_seconds:
            q.popleft()
        return q

    def blocked(self, *keys: str) -> float:
        now = self.clock()
        with self._lock:
            wait = 0.0
            for key in keys:
                q = self._recent(key, now)
                if len(q) >= self.cfg.login_failures:
                    wait = max(wait, self.cfg.login_window_seconds - (now - q[0]))
            return wait

    def failed(self, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, user_key: str) -> None:
        with self._lock:
            self._fails.pop(user_key, None)
