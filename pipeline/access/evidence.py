"""Evidence export of one identity (``pipeline export --format evidence``) and its check (``pipeline verify``).

The folder (new or empty; written whole or not at all):

- ``sightings/T<track>/sample_<id>.jpg``: every stored thumbnail of each sighting (track);
  ``sightings/T<track>/frame_<n>.jpg``: the source frame of the track's best box with the box drawn
  (when the source video is still readable; otherwise the manifest says why not);
- ``query.jpg``: the query photo, when the export comes from a search;
- ``manifest.json``: identity, store, who exported it and when, cameras, every sighting (camera,
  times, frames, scores, how its link was made: automatic ``match``/``cluster``/``new`` with its
  score, or ``manual`` and by whom, with the whole link history), the query's details and sha256,
  the audit entries about this identity and its tracks (the export's own included), and the audit
  chain head at export time;
- ``SIGNATURE.json``: the sha256 of every other file and an HMAC-SHA256 over that list, keyed with
  the store's evidence key (32 random bytes, mode 0600, made on first export; see :func:`key_path`).

Where the key lives: ``$CAMREID_EVIDENCE_KEY`` (a key file path) when set, for any store; else a store
file's key is ``<db>.evidence-key`` beside it, and a PostgreSQL store's is a file of the exporting
machine's user, ``~/.config/camreid/evidence-keys/<sha256 of the URL without password, 16 hex>.key``
(folder 0700, file 0600). Never in the database: whoever can write the database could then re-sign
edited evidence. Workers exporting from one PostgreSQL store on several machines share one key by
pointing ``CAMREID_EVIDENCE_KEY`` at the same (copied) file.

What :func:`verify_evidence` proves: with the key, that no file was changed, added or removed since
a holder of that store's key signed the folder. Only the key's holders can verify (and could also
sign): HMAC is symmetric. Hand a verifier the key (or have the store's owner run ``pipeline verify``);
the ``key_id`` (first 16 hex of sha256(key)) names which key signed. Without the key only the file
hashes are checked, which shows accidental damage but not deliberate edits; ``ok`` is then False.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.ingest import IngestError, read_frames
from pipeline.store import StoreReader, is_url, store_location
from pipeline.store.governance import GovernanceStore
from reid_models.common import UserError, atomic_output, file_sha256, iso_time

from . import audit
from .users import authorize

FORMAT = "camreid-evidence/1"
SIGNATURE = "SIGNATURE.json"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class EvidenceVerdict:
    """ok: every file matches and the signature verified. signature_ok: None when no key was available.
    bad / missing / extra: files changed, listed but gone, present but not listed."""

    ok: bool
    files: int
    signature_ok: bool | None
    bad: tuple[str, ...]
    missing: tuple[str, ...]
    extra: tuple[str, ...]
    message: str


KEY_ENV = "CAMREID_EVIDENCE_KEY"


def key_path(db: str | Path) -> Path:
    """The evidence key file of store ``db`` (see module docstring): ``$CAMREID_EVIDENCE_KEY``, else
    ``<db>.evidence-key`` beside a store file, else (a PostgreSQL URL) a per-URL file under
    ``~/.config/camreid/evidence-keys/``."""
    env = os.environ.get(KEY_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    if is_url(db):
        from pipeline.store.postgres import redact

        name = hashlib.sha256(redact(str(db).strip()).encode("utf-8")).hexdigest()[:16]
        return Path.home() / ".config" / "camreid" / "evidence-keys" / f"{name}.key"
    db = Path(db)
    return db.with_name(db.name + ".evidence-key")


def store_key(db: str | Path, create: bool = True) -> bytes:
    """The store's evidence key (32 bytes), made with mode 0600 on first use when ``create``."""
    path = key_path(db)
    if not path.exists() and create:
        if is_url(db) and not os.environ.get(KEY_ENV, "").strip():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(32))
    try:
        key = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read the evidence key {path} ({e.strerror}): run as the store's owner") from None
    if len(key) < 32:
        raise UserError(f"evidence key {path} is damaged ({len(key)} bytes): restore it from a backup")
    return key


def _store_name(db: str | Path) -> str:
    """The store as the manifest and signature name it: a file's absolute path, a URL without its password."""
    if is_url(db):
        from pipeline.store.postgres import redact

        return redact(str(db).strip())
    return str(Path(db).resolve())


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def _mac(key: bytes, files: dict[str, str], kid: str) -> str:
    body = audit.canonical({"format": FORMAT, "key_id": kid, "files": files})
    return hmac.new(key, body.encode("utf-8"), hashlib.sha256).hexdigest()


def _draw(image: np.ndarray, box, label: str) -> np.ndarray:
    import cv2

    out = image.copy()
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    thick = max(2, round(min(out.shape[:2]) / 300))
    cv2.rectangle(out, (x1, y1), (x2, y2), (0, 0, 255), thick)
    cv2.putText(out, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1, cv2.LINE_AA)
    return out


def _relevant(entry: audit.AuditEntry, gid: int, tracks: set[int]) -> bool:
    d = entry.details
    ids = {d.get(k) for k in ("identity", "keep", "other", "from", "to")}
    return gid in ids or gid in (d.get("identities") or []) or d.get("track") in tracks \
        or bool(tracks & set(d.get("tracks") or []))


def export_evidence(db: str | Path, gid: int, out_dir: str | Path, actor: str, query_photo: bytes | None = None,
                    query_details: dict | None = None) -> Path:
    """Write the evidence folder of identity ``gid`` (see module docstring); returns its path.

    actor: a user allowed to ``export`` (a camera-scoped user gets only the sightings of its cameras)
    or ``os:<name>``. query_photo: JPEG/PNG bytes of the search photo; query_details: its filters etc.
    UserError if the identity has no (visible) sightings or ``out_dir`` is a non-empty folder or a file."""
    db, out = store_location(db), Path(out_dir)
    shown = _store_name(db)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} exists and is not an empty folder: pass a new folder")
    user = authorize(db, actor, "export")
    with StoreReader(db) as reader:
        tracks = [t for t in reader.tracks(global_ids=[int(gid)]) if user is None or user.sees(t.camera_id)]
        if not tracks:
            raise UserError(f"identity {gid} has no sightings in store {shown}" + (" you may see" if user else ""))
        cameras = {c: (src, meta) for c, src, meta in reader.cameras()}
        history = reader.link_history([t.id for t in tracks])
        samples = reader.samples_of([t.id for t in tracks], thumbnails=True)
        boxes = reader.boxes([t.id for t in tracks])
    photo_sha = hashlib.sha256(query_photo).hexdigest() if query_photo else None
    export_id = audit.record(db, actor, "export", {"format": "evidence", "identity": int(gid), "out": str(out),
                                                   "tracks": [t.id for t in tracks], "query_sha256": photo_sha})
    key = store_key(db)
    with GovernanceStore(db) as g:
        track_set = {t.id for t in tracks}
        entries = [e for e in audit.read(db) if _relevant(e, int(gid), track_set)]
        head = g.audit_rows()[-1].row_hash
    with atomic_output(out) as tmp:
        tmp.mkdir()
        sightings = []
        for t in tracks:
            folder = tmp / "sightings" / f"T{t.id}"
            folder.mkdir(parents=True)
            rows = np.flatnonzero(samples.track_id == t.id)
            sample_docs = []
            for i in rows:
                doc = {"id": int(samples.id[i]), "time": iso_time(float(samples.time[i])),
                       "frame": int(samples.frame[i]),
                       "box": [round(float(v), 2) for v in samples.xyxy[i]],
                       "confidence": round(float(samples.confidence[i]), 4), "file": None}
                if samples.thumbnails[i]:
                    name = f"sightings/T{t.id}/sample_{int(samples.id[i])}.jpg"
                    (tmp / name).write_bytes(samples.thumbnails[i])
                    doc["file"] = name
                sample_docs.append(doc)
            frame_doc = _source_frame(tmp, t, boxes, cameras.get(t.camera_id, ("", {}))[0], int(gid))
            links = history.get(t.id, [])
            last = links[-1] if links else None
            sightings.append({
                "track": t.id, "camera": t.camera_id, "run": t.run_id, "local_id": t.local_id,
                "start": iso_time(t.start_time), "end": iso_time(t.end_time), "start_epoch": t.start_time,
                "end_epoch": t.end_time, "frames": [t.start_frame, t.end_frame], "n_boxes": t.n_boxes,
                "n_samples": t.n_samples,
                "link": None if last is None else _link_doc(last),
                "link_history": [_link_doc(x) for x in links],
                "samples": sample_docs, "source_frame": frame_doc})
        query = None
        if query_photo:
            (tmp / "query.jpg").write_bytes(query_photo)
            query = {"file": "query.jpg", "sha256": photo_sha, "details": query_details or {}}
        manifest = {
            "format": FORMAT, "identity": int(gid), "store": shown, "exported_at": iso_time(time.time()),
            "exported_by": actor, "export_audit_id": export_id,
            "cameras": [{"id": c, "source": cameras.get(c, ("", {}))[0]}
                        for c in sorted({t.camera_id for t in tracks})],
            "sightings": sightings, "query": query,
            "audit": [{"id": e.id, "time": iso_time(e.time), "actor": e.actor, "action": e.action,
                       "details": e.details, "row_hash": e.row_hash} for e in entries],
            "audit_head": head}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        files = {p.relative_to(tmp).as_posix(): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        kid = key_id(key)
        (tmp / SIGNATURE).write_text(json.dumps({"format": FORMAT, "algorithm": "HMAC-SHA256", "key_id": kid,
                                                 "store": shown, "files": files,
                                                 "hmac": _mac(key, files, kid)}, indent=2) + "\n")
    return out


def _link_doc(link: tuple) -> dict:
    gid, score, method, actor, created = link
    return {"identity": gid, "method": method, "automatic": method != "manual",
            "score": None if score is None else round(float(score), 4), "by": actor, "time": iso_time(created)}


def _source_frame(tmp: Path, track, boxes, source: str, gid: int) -> dict:
    """Write the frame of the track's most confident box, the box drawn; what was written (or why not)."""
    rows = np.flatnonzero(boxes.track_id == track.id)
    if not len(rows):
        return {"file": None, "why": "no box kept (retention)"}
    best = rows[int(np.argmax(boxes.confidence[rows]))]
    frame, box = int(boxes.frame[best]), boxes.xyxy[best]
    try:
        got = dict(read_frames(source, [frame]))
    except IngestError as e:
        return {"file": None, "frame": frame, "why": str(e)}
    if frame not in got:
        return {"file": None, "frame": frame, "why": f"source {source} no longer has frame {frame}"}
    import cv2

    name = f"sightings/T{track.id}/frame_{frame}.jpg"
    image = _draw(got[frame], box, f"G{gid} T{track.id} {track.camera_id} {iso_time(float(boxes.time[best]))[:19]}")
    cv2.imwrite(str(tmp / name), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return {"file": name, "frame": frame, "box": [round(float(v), 2) for v in box],
            "confidence": round(float(boxes.confidence[best]), 4)}


def verify_evidence(folder: str | Path, key: bytes | str | Path | None = None) -> EvidenceVerdict:
    """Check an evidence folder: every file's sha256 against SIGNATURE.json, no file missing or added, and
    the HMAC with ``key`` (bytes, or a key file; default: the key beside the store it names, if readable)."""
    folder = Path(folder)
    sig_path = folder / SIGNATURE
    if not sig_path.is_file():
        raise UserError(f"{folder} is not an evidence folder (no {SIGNATURE}): pass the folder export wrote")
    try:
        sig = json.loads(sig_path.read_text())
        files: dict[str, str] = sig["files"]
    except (ValueError, KeyError, TypeError) as e:
        return EvidenceVerdict(False, 0, False, (SIGNATURE,), (), (), f"{SIGNATURE} is damaged ({e})")
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {SIGNATURE}
    missing = tuple(sorted(set(files) - present))
    extra = tuple(sorted(present - set(files)))
    bad = tuple(sorted(f for f in set(files) & present if file_sha256(folder / f) != files[f]))
    if key is None:
        candidate = key_path(sig.get("store", ""))
        key = candidate.read_bytes() if sig.get("store") and os.access(candidate, os.R_OK) else None
    elif not isinstance(key, bytes):
        key = Path(key).read_bytes()
    signature_ok = None
    if key is not None:
        signature_ok = key_id(key) == sig.get("key_id") and hmac.compare_digest(
            _mac(key, files, str(sig.get("key_id"))), str(sig.get("hmac")))
    ok = signature_ok is True and not (bad or missing or extra)
    problems = [f"{len(names)} {what} ({', '.join(names)})"
                for names, what in ((bad, "changed"), (missing, "missing"), (extra, "added")) if names]
    if signature_ok is None:
        problems.append(f"signature not checked: no key (pass --key {key_path(sig.get('store') or 'STORE')})")
    elif not signature_ok:
        problems.append(f"signature does not verify with key {key_id(key)} (signed by {sig.get('key_id')})")
    message = (f"evidence intact: {len(files)} files, signature verified (key {sig.get('key_id')})" if ok else
               "evidence NOT verified: " + "; ".join(problems))
    return EvidenceVerdict(ok, len(files), signature_ok, bad, missing, extra, message)
