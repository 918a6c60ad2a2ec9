"""Erasure of one identity (``pipeline forget``) and retention (``pipeline purge``, and ``run`` every
``retention.every_minutes``).

Deleted rows are gone, not hidden. A SQLite store: ``secure_delete`` zeroes them, then the store is
VACUUMed and its WAL checkpointed and truncated, so neither a query, an export, raw SQL nor the
file's bytes find them. A PostgreSQL store: the deletes commit in one transaction, then the tables
they touched are VACUUMed outside it (``VACUUM FULL``, which rewrites each table into new files, after
``forget`` and ``pipeline purge``; a plain ``VACUUM``, which prunes the dead rows and makes their space
reusable without making writers wait, after a run's periodic retention; a table another session
keeps in use for 30 s gets the plain one, and the report says so); the server's WAL segments
and backups hold the old bytes until they are recycled (the DBA's retention). Every search-index
sidecar beside the store is removed (:func:`pipeline.store.governance.drop_index_sidecars`, the one
index hook) so the next query rebuilds it from what remains. The audit log records that it happened
(who, which identity, how many rows of each kind), never the data.

Who may run beside whom. SQLite: both need the store to themselves: they take its writer lock
(StoreBusyError, exit 2, while a run writes it; the run applies retention itself, inside its own
lock, passing ``writer_lock``). PostgreSQL (many writers at once): both run beside the live runs,
since they delete only rows those runs no longer write: ``forget`` takes the identities lock (no
linking pass or correction interleaves) and refuses (StoreBusyError) while a track of the identity
is still being recorded by a live run, holding the other cameras' locks for its transaction;
``purge`` deletes only ended tracks' rows, one purge at a time over all workers (the ``retention``
advisory lock; a run's periodic purge skips its turn while another runs or ran within
``every_minutes``).
Files already written outside the store (exports, ``--save-video`` videos, query results) are
the operator's to delete.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import RetentionConfig
from pipeline.store import StoreBusyError, WriterLock, is_url
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
        tail = "" if self.compacted else (" (warning: a reader kept the store busy, so its deleted rows' space is "
                                          "not rewritten yet; run purge again to compact)")
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
    skipped: str | None = None  # why nothing was done (a PostgreSQL run's purge: another worker's turn)

    def format(self) -> str:
        from reid_models.common import iso_time

        if not self.cutoffs:
            return "retention keeps everything (no retention: days set); nothing purged"
        if self.skipped:
            return f"purge skipped: {self.skipped}"
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


def erase_from_index(db: str | Path) -> tuple[str, ...]:
    """The one call erasure and retention make to the search index, after their deletes are committed:
    :func:`pipeline.store.governance.drop_index_sidecars` (the index is removed, rebuilt by the next
    ``pipeline index``/run; a PostgreSQL store: this machine's local copy, other machines' copies are
    ignored by their queries once the server's sample count shows the deletion). Returns what was removed."""
    return tuple(str(p) for p in drop_index_sidecars(db))


def _check_claims(db: str, writer_lock) -> None:
    """A run's own PostgreSQL claims (WriterClaims) of store ``db``, when given."""
    if writer_lock is None:
        return
    from pipeline.store import open_backend

    if not writer_lock.held or not open_backend(db).same_lock(writer_lock):
        raise ValueError("writer_lock is not the held claims of this PostgreSQL store")


def forget_identity(db: str | Path, gid: int, actor: str, writer_lock: WriterLock | None = None) -> ForgetReport:
    """Erase every track, box, sample, embedding, thumbnail, link and index entry of identity ``gid``.

    actor: an admin user or ``os:<name>``; AccessDenied otherwise. UserError if there is no such identity.
    A SQLite store: under its writer lock (StoreBusyError while a run writes it). A PostgreSQL store: beside
    the live runs, in one transaction (see module docstring); StoreBusyError while a track of the identity
    is still being recorded by a live run."""
    if is_url(db):
        return _forget_shared(str(db), int(gid), actor, writer_lock)
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
        removed = erase_from_index(db)
    finally:
        if taken:
            lock.release()
    return ForgetReport(int(gid), counts, compacted, removed, audit_id)


def _forget_shared(db: str, gid: int, actor: str, writer_lock) -> ForgetReport:
    _check_claims(db, writer_lock)
    with GovernanceStore(db) as g:
        authorize(g, actor, "admin", [c for _, c in g.identity_tracks(gid)])
        with g.transaction():  # the identities lock: no linking pass, correction or other erasure meanwhile
            open_tracks = g.open_tracks(gid)
            busy = g.live_cameras([c for _, c in open_tracks])
            if busy:
                cam, who = next(iter(busy.items()))
                tids = [t for t, c in open_tracks if c == cam]
                raise StoreBusyError(f"forget identity {gid}: its track {tids[0]} is still being recorded on camera "
                                     f"{cam} by {who}: forget it once the track ends (seconds after the person "
                                     "leaves the view), or stop that run")
            counts = g.forget_identity(gid)
            audit_id = audit.append(g, actor, "forget", {"identity": gid, "counts": counts})
        compacted = g.compact(full=True)
    removed = erase_from_index(db)
    return ForgetReport(gid, counts, compacted, removed, audit_id)


def cutoffs(retention: RetentionConfig, now: float) -> dict[str, float]:
    """Epoch-second cutoff per kind with a limit (rows older than it go)."""
    days = {"boxes": retention.boxes_days, "samples": retention.samples_days,
            "thumbnails": retention.thumbnails_days, "audit": retention.audit_days}
    return {k: now - d * DAY for k, d in days.items() if d is not None}


def purge(db: str | Path, retention: RetentionConfig, actor: str, dry_run: bool = False, now: float | None = None,
          writer_lock: WriterLock | None = None) -> PurgeReport:
    """Apply ``retention`` now (see module docstring); ``dry_run`` only counts (no lock, nothing written).

    actor: an admin user or ``os:<name>``. now: epoch seconds (default: the clock). writer_lock: the
    caller's own writer lock (a run's periodic retention). On a PostgreSQL store a run's purge is skipped
    (``skipped`` says why) while another purge runs or when one ran less than ``every_minutes`` ago."""
    if not isinstance(retention, RetentionConfig):
        raise TypeError(f"purge takes a RetentionConfig, got {type(retention).__name__}")
    shared = is_url(db)
    db = str(db).strip() if shared else Path(db)
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
    if shared:
        return _purge_shared(db, retention, cuts, actor, now, writer_lock)
    lock, taken = _exclusive(db, writer_lock, "purge")
    try:
        with GovernanceStore(db) as g:
            counts, audit_id = _purge_rows(g, cuts, actor, now)
            compacted = g.compact()
        removed = erase_from_index(db) if counts.get("samples") or counts.get("tracks") else ()
    finally:
        if taken:
            lock.release()
    return PurgeReport(counts, cuts, False, compacted, removed, audit_id)


def _purge_rows(g: GovernanceStore, cuts: dict[str, float], actor: str, now: float) -> tuple[dict[str, int], int]:
    """Delete what ``cuts`` says and audit it, in one transaction; (counts, audit row id)."""
    with g.transaction():
        counts = g.purge_before(cuts.get("boxes"), cuts.get("samples"), cuts.get("thumbnails"))
        if "audit" in cuts:
            counts["audit"] = g.purge_audit_before(cuts["audit"])
        g.set_meta("retention_last_purge", repr(now))
        audit_id = audit.append(g, actor, "purge", {"counts": counts, "cutoffs": cuts})
    return counts, audit_id


def _purge_shared(db: str, retention: RetentionConfig, cuts: dict[str, float], actor: str, now: float,
                  writer_lock) -> PurgeReport:
    """PostgreSQL: one purge at a time over every worker (the ``retention`` advisory lock); only ended tracks'
    rows go, so live runs write on. A run's purge (``writer_lock`` given) does not wait for another one and
    skips when a purge ran within ``every_minutes``; it VACUUMs plainly (no writer waits), the others with
    VACUUM FULL."""
    _check_claims(db, writer_lock)
    by_run = writer_lock is not None
    with GovernanceStore(db) as g:
        with g.retention_turn(wait=not by_run) as turn:
            if not turn:
                return PurgeReport({}, cuts, False, skipped="another worker is applying retention to this store")
            last = g.meta("retention_last_purge")
            if by_run and last is not None and 0 <= now - float(last) < retention.every_minutes * 60:
                return PurgeReport({}, cuts, False, skipped=f"retention was applied {now - float(last):.0f} s ago")
            counts, audit_id = _purge_rows(g, cuts, actor, now)
            compacted = g.compact(full=not by_run)
    removed = erase_from_index(db) if counts.get("samples") or counts.get("tracks") else ()
    return PurgeReport(counts, cuts, False, compacted, removed, audit_id)


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
