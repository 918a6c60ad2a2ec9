"""Manual identity corrections by an operator, each stored as manual links (``links.method =
'manual'``, ``links.actor`` = who, ``links.created`` = when) and audited as ``correct``.

- :func:`merge_identities`: every track of ``other`` moves to ``keep``; pairs rejected for ``other``
  are rejected for ``keep`` too.
- :func:`split_track`: the track gets a new identity of its own; the old pair is rejected.
- :func:`confirm_link`: the track's current link becomes manual.
- :func:`reject_link`: the track leaves its identity, and the pair is rejected; it is linked anew by
  the next association (a running ``run`` does that within seconds), never to that identity.

Later association (``run``, ``reembed``) respects them: it links only tracks without an identity,
never a rejected pair, and ``reembed`` keeps every track whose last link is manual. They may be made
while a run writes the store (short transactions; see :mod:`pipeline.store.governance`).
``actor`` is a store user (its role must allow ``correct`` and it must see the cameras involved:
:class:`~pipeline.access.users.AccessDenied` otherwise) or ``os:<name>`` for the command line.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.store.governance import GovernanceStore

from . import audit
from .users import authorize


def merge_identities(db: str | Path, keep: int, other: int, actor: str) -> list[int]:
    """Merge identity ``other`` into ``keep``; returns the moved track ids."""
    with GovernanceStore(db) as g, g.transaction():
        authorize(g, actor, "correct", [c for gid in (keep, other) for _, c in g.identity_tracks(gid)])
        moved = g.merge_identities(int(keep), int(other), actor)
        audit.append(g, actor, "correct", {"kind": "merge", "keep": int(keep), "other": int(other),
                                           "tracks": moved})
    return moved


def split_track(db: str | Path, track_id: int, actor: str) -> int:
    """Move a track out of its identity into a new one; returns the new identity id."""
    with GovernanceStore(db) as g, g.transaction():
        authorize(g, actor, "correct", g.track_cameras([track_id]))
        old, new = g.split_track(int(track_id), actor)
        audit.append(g, actor, "correct", {"kind": "split", "track": int(track_id), "from": old, "to": new})
    return new


def confirm_link(db: str | Path, track_id: int, actor: str) -> int:
    """Confirm a track's identity (kept as a manual link); returns that identity."""
    with GovernanceStore(db) as g, g.transaction():
        authorize(g, actor, "correct", g.track_cameras([track_id]))
        gid = g.confirm_link(int(track_id), actor)
        audit.append(g, actor, "correct", {"kind": "confirm", "track": int(track_id), "identity": gid})
    return gid


def reject_link(db: str | Path, track_id: int, actor: str) -> int:
    """Reject a track's identity (unlinked; never linked to it automatically again); returns that identity."""
    with GovernanceStore(db) as g, g.transaction():
        authorize(g, actor, "correct", g.track_cameras([track_id]))
        gid = g.reject_link(int(track_id), actor)
        audit.append(g, actor, "correct", {"kind": "reject", "track": int(track_id), "identity": gid})
    return gid
