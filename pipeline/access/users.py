"""Users and roles of a store: they live in the store they may see (``users`` table).

Roles: ``viewer`` browses; ``operator`` also searches, corrects identities and exports; ``admin``
also manages users, retention and erasure. A user scoped to cameras (``cameras=("north",)``)
never sees other cameras' data; ``cameras=None`` sees every camera.

Passwords: scrypt (``hashlib.scrypt``, memory-hard: N=2**14, r=8, p=1, 16 MiB) with a random
16-byte salt per user; the record ``scrypt$N$r$p$salt_hex$hash_hex`` keeps its parameters, so they
can be raised later without breaking old records. :func:`authenticate` compares in constant time
and spends the same scrypt work on an unknown name, so timing does not reveal which names exist.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.store.governance import GovernanceStore
from reid_models.common import UserError

ROLES = ("viewer", "operator", "admin")
ACTIONS = ("browse", "search", "correct", "export", "admin")
_ALLOWED = {"viewer": {"browse"}, "operator": {"browse", "search", "correct", "export"}, "admin": set(ACTIONS)}
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
MIN_PASSWORD = 8
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


@dataclass(frozen=True)
class User:
    """name; role in ROLES; cameras: the camera ids it may see (None = all cameras)."""

    name: str
    role: str
    cameras: tuple[str, ...] | None

    def sees(self, camera_id: str) -> bool:
        """True if this user may see data of ``camera_id`` (results, thumbnails, videos)."""
        return self.cameras is None or camera_id in self.cameras

    def may(self, action: str) -> bool:
        """True if the role allows ``action`` (one of ACTIONS; ValueError otherwise)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
        return action in _ALLOWED[self.role]


def hash_password(password: str, salt: bytes | None = None, n: int = SCRYPT_N, r: int = SCRYPT_R,
                  p: int = SCRYPT_P) -> str:
    """The stored record ``scrypt$N$r$p$salt$hash`` of ``password`` (see module docstring)."""
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=128 * r * (n + p + 2),
                            dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def check_password(password: str, record: str) -> bool:
    """True if ``password`` matches the stored record (constant-time compare)."""
    try:
        kind, n, r, p, salt, digest = record.split("$")
        if kind != "scrypt":
            return False
        again = hash_password(password, bytes.fromhex(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(again.rsplit("$", 1)[1], digest)


_DUMMY = hash_password("not a password", b"\0" * 16)  # work spent on unknown names


def _user(row) -> User:
    return User(row.name, row.role, row.cameras)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UserError(f"bad user name {name!r}: use 1-64 letters, digits, _ . @ -")
    return name


def add_user(db: str | Path, name: str, role: str, password: str, cameras: Sequence[str] | None = None) -> User:
    """Add a user to the store; UserError if the name is taken, the role unknown, the password shorter
    than MIN_PASSWORD or a camera unknown to the store."""
    check_name(name)
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise UserError(f"password of {name} is too short: use at least {MIN_PASSWORD} characters")
    with GovernanceStore(db) as g:
        if cameras is not None:
            cameras = tuple(dict.fromkeys(str(c) for c in cameras))
            if not cameras:
                raise UserError("--cameras needs at least one camera id (leave it out for all cameras)")
            known = g.camera_ids()
            unknown = [c for c in cameras if c not in known]
            if unknown:
                raise UserError(f"unknown camera {', '.join(unknown)}; the store has {', '.join(known) or 'none'}")
        if not g.insert_user(name, role, cameras, hash_password(password)):
            raise UserError(f"user {name} exists in {g.path}: remove it first (pipeline users remove {name})")
    return User(name, role, cameras)


def remove_user(db: str | Path, name: str) -> None:
    """Remove a user; UserError if there is none of that name."""
    with GovernanceStore(db) as g:
        if not g.delete_user(name):
            raise UserError(f"no user {name} in {g.path} (pipeline users list shows them)")


def list_users(db: str | Path) -> list[User]:
    """Every user of the store, by name."""
    with GovernanceStore(db) as g:
        return [_user(r) for r in g.users()]


def get_user(db: str | Path, name: str) -> User | None:
    with GovernanceStore(db) as g:
        rows = g.users(name)
    return _user(rows[0]) if rows else None


def authenticate(db: str | Path, name: str, password: str) -> User | None:
    """The user if ``password`` is theirs, else None (unknown names cost the same scrypt work)."""
    with GovernanceStore(db) as g:
        rows = g.users(name) if isinstance(name, str) else []
    if not rows:
        check_password(password if isinstance(password, str) else "", _DUMMY)
        return None
    return _user(rows[0]) if check_password(password, rows[0].password) else None


class AccessDenied(UserError):
    """The actor may not do this (role, or camera scope); the message names both."""


def authorize(db: str | Path | GovernanceStore, actor: str, action: str,
              cameras: Sequence[str] = ()) -> User | None:
    """Check that ``actor`` may do ``action`` on data of ``cameras``; AccessDenied otherwise.

    ``os:<name>`` actors are the command line, whose access control is the store file's permissions
    (whoever can write the file can do anything): allowed, returns None. Any other actor must be a user
    of the store whose role allows the action and who sees every camera given; returns that User."""
    if actor.startswith("os:"):
        return None
    if isinstance(db, GovernanceStore):
        rows = db.users(actor)
    else:
        with GovernanceStore(db) as g:
            rows = g.users(actor)
    if not rows:
        raise AccessDenied(f"unknown user {actor!r}: not allowed to {action}")
    user = _user(rows[0])
    if not user.may(action):
        raise AccessDenied(f"user {user.name} ({user.role}) may not {action}")
    hidden = sorted({c for c in cameras if not user.sees(c)})
    if hidden:
        raise AccessDenied(f"user {user.name} may not see camera {', '.join(hidden)}")
    return user


def login(db: str | Path, name: str, password: str, source: str = "web") -> User | None:
    """:func:`authenticate` and audit it: a ``login`` row (the user) or ``login_failed`` (the name tried;
    never the password). source: where from (e.g. the client address). Returns the user or None."""
    from . import audit

    user = authenticate(db, name, password)
    shown = name if isinstance(name, str) and _NAME.fullmatch(name) else repr(name)[:66]
    if user is None:
        audit.record(db, "anonymous", "login_failed", {"name": shown, "source": source})
    else:
        audit.record(db, user.name, "login", {"role": user.role, "source": source})
    return user
