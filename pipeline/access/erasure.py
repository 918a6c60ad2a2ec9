"""Erasure of one identity (``pipeline forget``) and retention (``pipeline purge``, and ``run`` every
``retention.every_minutes``).

Deleted rows are gone, not hidden: SQLite's ``secure_delete`` zeroes them, then the store is
VACUUMed and its WAL checkpointed and truncated, so neither a query, an export, raw SQL nor the
file's bytes find them; every search-index sidecar beside the store is removed
(:func:`pipeline.store.governance.drop_index_sidecars`, the one index hook) so the next query
rebuilds it from what remains. The audit log records that it happened (who, which identity, how
many rows of each kind), never the data.

Both need the store to themselves: they take its writer lock (StoreBusyError, exit 2, while a run
writes it; the run applies retention itself, inside its own lock, passing ``writer_lock``).
Files already written outside the store (exports, ``--save-video`` videos, query results) are
the operator's to delete.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import RetentionConfig
from pipeline.store import StoreBusyError, WriterLock
from pipeline.store.governance import GovernanceStore, drop_index_sidecars

from . import audit
from .users import authorize

DAY = 86400.0


@dataclass(frozen=True)
class ForgetReport:
    """identity: the erased global id; counts: rows deleted per kind (tracks, boxes, samples, embeddings,
    thumbnails); compacted: the WAL was emptied after VACUUM; index_removed: sidecar files removed."""

    identity: int
    counts: dict[str, int]
    compacted: bool
    index_removed: tuple[str, ...] = ()
    audit_id: int | None = None

    def format(self) -> str:
        what = ", ".join(f"{n} {k}" for k, n in self.counts.items())
        tail = "" if self.compacted else " (warning: a reader kept the WAL open; run purge again to compact)"
        return f"erased identity {self.identity}: {what}; store vacuumed{tail}"


@dataclass(frozen=True)
class PurgeReport:
    """counts: rows deleted (or, dry_run, that would be) per kind; cutoffs: epoch seconds per kind."""

    counts: dict[str, int]
    cutoffs: dict[str, float]
    dry_run: bool
    compacted: bool = False
    index_removed: tuple[str, ...] = ()
    audit_id: int | None = None

    def format(self) -> str:
        from reid_models.common import iso_time

        if not self.cutoffs:
            return "retention keeps everything (no retention: days set); nothing purged"
        verb = "would delete" if self.dry_run else "deleted"
        cuts = ", ".join(f"{k} before {iso_time(t)[:19]}" for k, t in self.cutoffs.items())
        return f"purge ({cuts}): {verb} " + ", ".join(f"{n} {k}" for k, n in self.counts.items())


def _exclusive(db: Path, writer_lock: WriterLock | None, what: str) -> tuple[WriterLock | None, bool]:
    """The store's writer lock (taken here unless the caller holds it); (lock, taken here)."""
    if writer_lock is not None:
        if not writer_lock.held or Path(writer_lock.db_path).resolve() != db.resolve():
            raise ValueError(f"writer_lock is not a held lock of {db}")
        return writer_lock, False
    try:
        return WriterLock.acquire(db), True
    except StoreBusyError as e:
        raise StoreBusyError(f"{what} needs the store to itself: {e}") from None


def forget_identity(db: str | Path, gid: int, actor: str, writer_lock: WriterLock | None = None) -> ForgetReport:
    """Erase every track, box, sample, embedding, thumbnail, link and index entry of identity ``gid``.

    actor: an admin user or ``os:<name>``; AccessDenied otherwise. UserError if there is no such identity."""
    db = Path(db)
    with GovernanceStore(db) as g:
        authorize(g, actor, "admin", [c for _, c in g.identity_tracks(gid)])
    lock, taken = _exclusive(db, writer_lock, f"forget identity {gid}")
    try:
        with GovernanceStore(db) as g:
            with g.transaction():
                counts = g.forget_identity(int(gid))
                audit_id = audit.append(g, actor, "forget", {"identity": int(gid), "counts": counts})
            compacted = g.compact()
        removed = drop_index_sidecars(db)
    finally:
        if taken:
            lock.release()
    return ForgetReport(int(gid), counts, compacted, tuple(str(p) for p in removed), audit_id)


def cutoffs(retention: RetentionConfig, now: float) -> dict[str, float]:
    """Epoch-second cutoff per kind with a limit (rows older than it go)."""
    days = {"boxes": retention.boxes_days, "samples": retention.samples_days,
            "thumbnails": retention.thumbnails_days, "audit": retention.audit_days}
    return {k: now - d * DAY for k, d in days.items() if d is not None}


def purge(db: str | Path, retention: RetentionConfig, actor: str, dry_run: bool = False, now: float | None = None,
          writer_lock: WriterLock | None = None) -> PurgeReport:
    """Apply ``retention`` now (see module docstring); ``dry_run`` only counts (no lock, nothing written).

    actor: an admin user or ``os:<name>``. now: epoch seconds (default: the clock)."""
    if not isinstance(retention, RetentionConfig):
        raise TypeError(f"purge takes a RetentionConfig, got {type(retention).__name__}")
    db = Path(db)
    now = time.time() if now is None else float(now)
    cuts = cutoffs(retention, now)
    authorize(db, actor, "admin")
    if not cuts:
        return PurgeReport({}, {}, dry_run)
    if dry_run:
        with GovernanceStore(db) as g, g.transaction():
            counts = g.purge_before(cuts.get("boxes"), cuts.get("samples"), cuts.get("thumbnails"), dry_run=True)
            if "audit" in cuts:
                counts["audit"] = g.purge_audit_before(cuts["audit"], dry_run=True)
        return PurgeReport(counts, cuts, True)
    lock, taken = _exclusive(db, writer_lock, "purge")
    try:
        with GovernanceStore(db) as g:
            with g.transaction():
                counts = g.purge_before(cuts.get("boxes"), cuts.get("samples"), cuts.get("thumbnails"))
                if "audit" in cuts:
                    counts["audit"] = g.purge_audit_before(cuts["audit"])
                g.set_meta("retention_last_purge", repr(now))
                audit_id = audit.append(g, actor, "purge", {"counts": counts, "cutoffs": cuts})
            compacted = g.compact()
        removed = drop_index_sidecars(db) if counts.get("samples") or counts.get("tracks") else []
    finally:
        if taken:
            lock.release()
    return PurgeReport(counts, cuts, False, compacted, tuple(str(p) for p in removed), audit_id)


@dataclass
class RetentionTimer:
    """When a run applies retention: at start, then every ``retention.every_minutes`` of wall time."""

    retention: RetentionConfig
    last: float = field(default=-float("inf"))

    def due(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if not self.retention.active or now - self.last < self.retention.every_minutes * 60:
            return False
        self.last = now
        return True
