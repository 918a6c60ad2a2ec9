"""The audit log: an append-only, hash-chained table of who did what (``audit_log``).

Each row holds time (epoch s), actor (a user, or ``os:<name>`` for the command line), action,
details (canonical JSON: sorted keys, no spaces), ``prev_hash`` (the row before's ``row_hash``) and
``row_hash = sha256(prev_hash + canonical(time, actor, action, details))``. Editing, deleting or
reordering a row breaks the chain at that row, which :func:`verify` reports. (A chain proves
nothing against someone who rewrites every later row too: note the head hash that ``pipeline
audit --verify`` prints somewhere else, and compare it later; evidence exports carry it.)

Retention deletes the oldest rows only, and keeps the last deleted row's hash as the anchor
(``meta.audit_anchor``) that the first remaining row must chain onto.

Never put biometric data in details (no embeddings, thumbnails or photos): a photo's sha256 only.
"""
from __future__ import annotations

import getpass
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.store.governance import GENESIS_HASH, AuditRow, GovernanceStore

ACTIONS = ("login", "login_failed", "logout", "search", "view_identity", "export", "correct", "purge",
           "forget", "users", "evaluate", "adapt", "reembed")
_BIOMETRIC = {"embedding", "embeddings", "thumbnail", "thumbnails", "photo", "image", "crop"}


@dataclass(frozen=True)
class AuditEntry:
    """One audit row; time in epoch seconds; details as recorded."""

    id: int
    time: float
    actor: str
    action: str
    details: dict
    row_hash: str


@dataclass(frozen=True)
class AuditVerdict:
    """ok: the chain is intact; rows: rows checked; first_bad_id: the first row that breaks it; head: last row_hash."""

    ok: bool
    rows: int
    first_bad_id: int | None
    message: str
    head: str | None = None


def cli_actor() -> str:
    """The actor of command-line actions: ``os:<login name>`` (the CLI's access control is the file's permissions)."""
    try:
        return f"os:{getpass.getuser()}"
    except (KeyError, OSError):
        import os

        return f"os:uid{os.getuid()}"


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def row_hash(prev_hash: str, when: float, actor: str, action: str, details: str) -> str:
    body = canonical({"time": repr(float(when)), "actor": actor, "action": action, "details": details})
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def _check_details(details: dict) -> None:
    if not isinstance(details, dict):
        raise TypeError(f"audit details must be a dict, got {type(details).__name__}")
    for key, value in details.items():
        if key in _BIOMETRIC or isinstance(value, (bytes, bytearray, memoryview)):
            raise ValueError(f"audit details may not hold biometric data ({key!r}); record a sha256 instead")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"audit detail {key!r} is {value}")
        if hasattr(value, "shape"):
            raise ValueError(f"audit detail {key!r} is an array; record counts or a sha256 instead")


def append(store: GovernanceStore, actor: str, action: str, details: dict, when: float | None = None) -> int:
    """Append a row through an open GovernanceStore (inside its transaction if one is open); its id."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}; one of {', '.join(ACTIONS)}")
    if not isinstance(actor, str) or not actor:
        raise ValueError("audit rows need an actor")
    _check_details(details)
    when = time.time() if when is None else float(when)
    text = canonical(details)
    return store.append_audit(when, actor, action, text, lambda prev: row_hash(prev, when, actor, action, text))


def record(db: str | Path, actor: str, action: str, details: dict) -> int:
    """Append one audit row to the store ``db`` in its own short transaction; returns its id."""
    with GovernanceStore(db) as g:
        return append(g, actor, action, details)


def search_details(photo: bytes, filters: dict, sightings) -> dict:
    """The details of a ``search`` row, the same from the CLI and the web UI: the photo's sha256 (never
    the photo), the filters, the number of results and the identities they show (``sightings``:
    objects with ``global_id``, as ``pipeline.search`` returns)."""
    return {"photo_sha256": hashlib.sha256(photo).hexdigest(), "filters": filters, "results": len(sightings),
            "identities": sorted({int(s.global_id) for s in sightings if s.global_id is not None})}


def _entry(r: AuditRow) -> AuditEntry:
    return AuditEntry(r.id, r.time, r.actor, r.action, json.loads(r.details), r.row_hash)


def read(db: str | Path, since: float | None = None, user: str | None = None,
         action: str | None = None) -> list[AuditEntry]:
    """Audit rows (oldest first) at or after ``since``, of actor ``user``, of ``action``."""
    with GovernanceStore(db) as g:
        return [_entry(r) for r in g.audit_rows(since, user, action)]


def verify(db: str | Path) -> AuditVerdict:
    """Recompute the chain from the anchor (or the genesis hash); the first row whose prev_hash or
    row_hash does not match is reported."""
    with GovernanceStore(db) as g:
        anchor = g.audit_anchor()
        rows = g.audit_rows()
    prev = anchor[1] if anchor else GENESIS_HASH
    start = f"anchor row {anchor[0]}" if anchor else "the start"
    for k, r in enumerate(rows):
        if r.prev_hash != prev:
            return AuditVerdict(False, k, r.id, f"audit row {r.id}: prev_hash does not match the row before "
                                                f"(a row was deleted, inserted or reordered)", prev)
        if row_hash(prev, r.time, r.actor, r.action, r.details) != r.row_hash:
            return AuditVerdict(False, k, r.id, f"audit row {r.id}: its content does not match its hash (edited)",
                                prev)
        prev = r.row_hash
    return AuditVerdict(True, len(rows), None, f"audit chain intact: {len(rows)} rows from {start}, head {prev}", prev)


def format_entries(entries: list[AuditEntry]) -> str:
    """A table: id, UTC time, actor, action, details."""
    from reid_models.common import iso_time

    lines = [f"{'id':>6}  {'time (UTC)':<20}  {'actor':<16}  {'action':<13}  details"]
    for e in entries:
        lines.append(f"{e.id:>6}  {iso_time(e.time)[:19]:<20}  {e.actor:<16}  {e.action:<13}  {canonical(e.details)}")
    return "\n".join(lines)
