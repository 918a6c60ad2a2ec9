"""The ``python -m pipeline`` commands: each takes the parsed arguments and returns an exit status.

Heavy modules (torch, ultralytics) are imported inside the commands, after the cheap checks, so a
bad argument fails at once.
"""
from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path


class CliError(Exception):
    """A problem with the user's input; printed as one line."""


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.config import load_config

    cfg = load_config(args.cameras)  # ConfigError -> one line, before any model is loaded
    if args.workers > len(cfg.cameras):
        raise CliError(f"--workers {args.workers} but {args.cameras} has {len(cfg.cameras)} camera(s): "
                       f"use at most --workers {len(cfg.cameras)}")
    if args.workers > 1 and args.save_video is not None:
        raise CliError("--save-video needs --workers 1 (the annotated videos are written by one process)")
    from pipeline.runner import Runner

    def _sigterm(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _sigterm)
    runner = Runner(cfg, db_path=args.db, device=args.device, max_frames=args.max_frames,
                    save_video=args.save_video, progress=not args.quiet, workers=args.workers)
    try:
        summary = runner.run()
    except KeyboardInterrupt:
        if runner.summary is not None:
            print(runner.summary.format())
        raise
    print(summary.format())
    for cam, why in summary.video_errors.items():  # the store is complete; the video asked for is not
        print(f"error: video of camera {cam} could not be written: {why}", file=sys.stderr)
    return 1 if summary.video_errors or summary.worker_errors else 0  # worker errors were printed as they came


def read_query_image(path: str | Path, box: Sequence[float] | None = None):
    """Decode an image file (BGR uint8) and optionally cut ``box`` (x1, y1, x2, y2 pixels) out of it;
    the crop must be a person-sized one (``pipeline.search.MIN_QUERY_HEIGHT``)."""
    from pipeline.search import check_query_crop
    from reid_models.common import read_image_bgr

    path = Path(path)
    if not path.is_file():
        raise CliError(f"query image not found: {path}; pass a JPEG/PNG file with --image")
    image = read_image_bgr(path, "query image")
    if box is None:
        check_query_crop(image, f"query image {path}")
        return image
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    shown = " ".join(f"{v:g}" for v in box)
    if x2 - x1 < 1 or y2 - y1 < 1:
        raise CliError(f"--box {shown} is empty inside the {w}x{h} image")
    image = image[y1:y2, x1:x2]
    check_query_crop(image, f"--box {shown} of the {w}x{h} image")
    return image


def _check_out_folder(out: str | Path) -> None:
    if Path(out).exists() and not Path(out).is_dir():
        raise CliError(f"--out {out} is a file; pass a folder")


def read_query_vector(path: str | Path, dim: int):
    """A (D,) query embedding from a numpy ``.npy`` file; CliError naming the problem otherwise."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise CliError(f"query vector not found: {path}; pass a .npy file written by numpy.save with --vector")
    try:
        vec = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CliError(f"cannot read query vector {path} ({e}): pass a .npy file written by numpy.save") from None
    vec = np.asarray(vec, np.float32).reshape(-1) if vec.size == dim else None
    if vec is None or not np.isfinite(vec).all() or not np.linalg.norm(vec) > 0:
        raise CliError(f"query vector {path} is not a finite, non-zero {dim}-d vector (the store's dimension)")
    return vec


def cmd_query(args: argparse.Namespace) -> int:
    from pipeline.store import StoreReader, is_url

    with StoreReader(args.db) as store:  # "no store at ..." before the image and the embedder
        if args.since is not None and args.until is not None and args.since > args.until:
            raise CliError("--since is later than --until: the time window is empty; swap them")
        store.check_cameras(args.camera)
        _check_out_folder(args.out)
        image = None
        if args.vector is not None:
            query = read_query_vector(args.vector, store.embedding_dim)
        else:
            image = read_query_image(args.image, args.box)
            from pipeline.search.index import embedder_dir
            from pipeline.stages.embed_onnx import OnnxEmbedder

            # the store's embedder as ONNX (written by run/index/reembed): no torch to import, same vectors
            embedder = OnnxEmbedder.load(embedder_dir(args.db), store.embedder_id) if args.device in (
                "auto", "cpu") else None
            if embedder is None:
                from pipeline.stages.embed import Embedder

                embedder = Embedder.from_spec(store.embedder_spec, device=args.device)
            if embedder.embedder_id != store.embedder_id:  # a spec without an id rebuilds the default embedder
                raise CliError(f"store {args.db} was built with embedder {store.embedder_id}, which cannot be "
                               f"rebuilt from its spec (got {embedder.embedder_id}): query it with that embedder")
            query = embedder([image])[0]
        from pipeline.search import format_table, search_tracks, write_results

        info: dict = {}
        sightings = search_tracks(store, query, cameras=args.camera, since=args.since, until=args.until,
                                  top=args.top, method="exact" if args.exact else "auto", info=info)
        if info.get("index"):
            print(f"note: {info['index']}; searched the store directly (exact, slower on a large store): "
                  f"python -m pipeline index --db {store.path if is_url(args.db) else args.db} builds it",
                  file=sys.stderr)
        from pipeline.access.audit import search_details

        query_bytes = Path(args.image if args.vector is None else args.vector).read_bytes()
        _audit(args.db, "search", search_details(
            query_bytes, {"box": args.box, "cameras": args.camera, "since": args.since,
                          "until": args.until, "top": args.top, "vector": args.vector is not None,
                          "exact": args.exact}, sightings))
        print(format_table(sightings))
        paths = write_results(sightings, args.out, query_image=image)
    print(f"wrote {paths['json']} and {paths['contact_sheet']}")
    return 0


def _audit(db: str | Path, action: str, details: dict) -> None:
    """Record a command-line action in the store's audit log under ``os:<login>``. A store that cannot be
    written (a read-only filesystem) cannot record it: said on stderr, the command goes on."""
    import os

    from pipeline.access import audit
    from pipeline.store import is_url

    if is_url(db):  # a PostgreSQL store: recorded on the server (pipeline.store.governance)
        audit.record(db, audit.cli_actor(), action, details)
        return
    db = Path(db)
    if not (os.access(db, os.W_OK) and os.access(db.parent, os.W_OK | os.X_OK)):
        print(f"warning: store {db} is read-only: this {action} is not recorded in its audit log", file=sys.stderr)
        return
    audit.record(db, audit.cli_actor(), action, details)


def cmd_index(args: argparse.Namespace) -> int:
    from pipeline.search.index import export_query_embedder, update_index
    from pipeline.store.governance import GovernanceStore

    with GovernanceStore(args.db):  # migrates a store of an older schema (what the read-only query refuses)
        pass
    report = update_index(args.db, rebuild=args.rebuild, progress=not args.quiet)
    print(report.format())
    note = export_query_embedder(args.db)
    if note:
        print(f"note: {note}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pipeline.export import export_store
    from pipeline.store import StoreReader

    if args.format == "evidence":
        return _export_evidence(args)
    if args.identity is not None or args.query_image is not None:
        raise CliError("--identity and --query-image go with --format evidence only")
    with StoreReader(args.db) as store:
        counts = export_store(store, args.format, args.out, run_id=args.run, cameras=args.camera)
    _audit(args.db, "export", {"format": args.format, "out": str(args.out), "run": args.run,
                               "cameras": args.camera, "counts": counts})
    print(f"exported {args.format} to {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from pipeline.score_store import evaluate_store, format_report

    gt = dict(args.gt)
    if len(gt) != len(args.gt):
        raise CliError("a camera is given twice in --gt: give each camera one ground-truth file")
    report = evaluate_store(args.db, gt, run_id=args.run, out_dir=args.out)
    _audit(args.db, "evaluate", {"run": report["run"], "gt": {cam: str(path) for cam, path in gt.items()},
                                 "out": str(args.out), "idf1": report["global"].get("IDF1")})
    print(format_report(report))
    print(f"wrote {Path(args.out) / 'metrics.json'} and {len(report['plots'])} identity plot(s) in {args.out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.store:
        from pipeline.bench_store import run_store_bench

        print(run_store_bench(args.db, frames=args.rows))
        return 0
    from pipeline.store import is_url

    if args.db and not (args.query and len(args.db) == 1 and is_url(args.db[0])):
        raise CliError("--db is for bench --store, or one postgresql:// URL for bench --query")
    if args.query:
        from pipeline.bench_query import format_figures, run_query_bench

        figures = run_query_bench(args.samples, args.dim, out_dir=args.out or "runs/bench-query",
                                  queries=args.queries, json_path=args.json, reuse=args.reuse,
                                  url=args.db[0] if args.db else None)
        print(format_figures(figures))
        if args.json:
            print(f"wrote {args.json}")
        return 0
    if args.speed:
        from pipeline.bench_speed import run_speed_bench

        table, path = run_speed_bench(frames=args.frames or 200, threads=args.threads, repeats=args.repeats,
                                      imgsz=args.imgsz or 960, clip=args.clip, out_dir=args.out or "runs/bench")
        print(table)
        print(f"wrote {path}")
        return 0
    if args.accuracy:
        from pipeline.bench_accuracy import run_accuracy_bench

        table, path = run_accuracy_bench(frames=args.frames, device=args.device, imgsz=args.imgsz or 640,
                                         clip=args.clip, out_dir=args.out or "runs/bench")
        print(table)
        print(f"wrote {path}")
        return 0
    from pipeline.bench import run_bench

    print(run_bench(frames=args.frames or 30, cameras=args.cameras, device=args.device, imgsz=args.imgsz or 640,
                    clip=args.clip, workers=args.workers, out=args.out))
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    import dataclasses

    from pipeline.store import require_store

    require_store(args.db)  # "no store at ..." before any model is loaded
    if args.base != "default" and not Path(args.base).is_file():
        raise CliError(f"--base checkpoint not found: {args.base}; pass a reid_models .pt or 'default'")
    from pipeline.adapt import AdaptConfig, adapt_store

    changes = {k: v for k, v in (("epochs", args.epochs), ("negatives", args.negatives)) if v is not None}
    cfg = dataclasses.replace(AdaptConfig(), cluster=bool(args.cluster), **changes)
    result = adapt_store(args.db, args.out, base=args.base, cfg=cfg, device=args.device, progress=not args.quiet)
    _audit(args.db, "adapt", {"out": str(Path(args.out).resolve()), "base": result.base, "tracks": result.tracks,
                              "crops": result.crops, "settings": dataclasses.asdict(cfg)})
    print(result.format())
    return 0


def cmd_reembed(args: argparse.Namespace) -> int:
    from pipeline.store import require_store

    require_store(args.db)
    if args.checkpoint != "default" and not Path(args.checkpoint).is_file():
        raise CliError(f"--checkpoint not found: {args.checkpoint}; pass a reid_models .pt or 'default'")
    from pipeline.reembed import reembed_store

    result = reembed_store(args.db, args.checkpoint, device=args.device, threshold=args.threshold,
                           batch=args.batch, progress=not args.quiet)
    _audit(args.db, "reembed", {"checkpoint": str(args.checkpoint), "old": result.old, "new": result.new,
                                "from_video": result.from_video, "from_thumbnail": result.from_thumbnail,
                                "identities": result.identities})
    print(result.format())
    return 0


def cmd_associate(args: argparse.Namespace) -> int:
    from pipeline.config import load_association

    config = load_association(args.config) if args.config else None  # ConfigError first, one line
    from pipeline.associate import associate_store

    def _sigterm(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _sigterm)
    if args.follow:
        print(f"following store {_shown(args.db)}: linking every {args.interval:g} s (Ctrl-C to stop)", flush=True)
    result = associate_store(args.db, config, follow=args.follow, interval=args.interval)
    print(result.format())
    return 0


def _shown(db: str) -> str:
    from pipeline.store import is_url

    if is_url(db):
        from pipeline.store.postgres import redact

        return redact(db)
    return db
# ----------------------------------------------------------------------------- data protection (issue 11)
# The command line acts as the OS user that runs it (audited as ``os:<login>``): its access control is
# the store file's permissions. Store users and roles are for the web UI.
def _require_any_store(db: str) -> None:
    """A store file must exist (StoreError naming it); a PostgreSQL URL is checked when it is opened."""
    from pipeline.store import is_url, require_store

    if not is_url(db):
        require_store(db)


def _export_evidence(args: argparse.Namespace) -> int:
    from pipeline.access import audit, evidence
    _require_any_store(args.db)
    if args.identity is None:
        raise CliError("--format evidence needs --identity G (a global identity of the store)")
    if args.run is not None or args.camera:
        raise CliError("--run and --camera do not apply to --format evidence (it holds every sighting of G)")
    photo = None
    if args.query_image is not None:
        read_query_image(args.query_image)  # a real, person-sized image
        photo = Path(args.query_image).read_bytes()
    out = evidence.export_evidence(args.db, args.identity, args.out, audit.cli_actor(), query_photo=photo,
                                   query_details={"image": str(args.query_image)} if photo else None)
    verdict = evidence.verify_evidence(out)
    print(f"exported evidence of identity {args.identity} to {out}: {verdict.files} files signed "
          f"(key {evidence.key_id(evidence.store_key(args.db))}; check with: python -m pipeline verify {out})")
    return 0


def _read_password(name: str) -> str:
    import getpass

    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"password for {name}: ")
    if getpass.getpass("again: ") != first:
        raise CliError("the two passwords differ; run users add again")
    return first


def cmd_users(args: argparse.Namespace) -> int:
    from pipeline.access import audit, users
    _require_any_store(args.db)
    if args.users_command == "list":
        rows = users.list_users(args.db)
        print(f"{'name':<20}  {'role':<9}  cameras")
        for u in rows:
            print(f"{u.name:<20}  {u.role:<9}  {'all' if u.cameras is None else ', '.join(u.cameras)}")
        return 0
    users.check_name(args.name)
    if args.users_command == "add":
        user = users.add_user(args.db, args.name, args.role, _read_password(args.name), cameras=args.cameras)
        cams = None if user.cameras is None else list(user.cameras)
        audit.record(args.db, audit.cli_actor(), "users", {"op": "add", "name": user.name, "role": user.role,
                                                            "cameras": cams})
        print(f"added {user.role} {user.name} ({'all cameras' if user.cameras is None else ', '.join(user.cameras)})")
    else:
        users.remove_user(args.db, args.name)
        audit.record(args.db, audit.cli_actor(), "users", {"op": "remove", "name": args.name})
        print(f"removed {args.name}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from pipeline.access import audit
    _require_any_store(args.db)
    if args.verify:
        verdict = audit.verify(args.db)
        print(verdict.message if verdict.ok else f"TAMPERED: {verdict.message} ({verdict.rows} rows before it verify)")
        return 0 if verdict.ok else 1
    if args.action is not None and args.action not in audit.ACTIONS:
        raise CliError(f"unknown --action {args.action}; one of {', '.join(audit.ACTIONS)}")
    print(audit.format_entries(audit.read(args.db, since=args.since, user=args.user, action=args.action)))
    return 0


def _retention(args: argparse.Namespace):
    from pipeline.config import RetentionConfig, load_config
    from pipeline.store.governance import GovernanceStore

    if args.cameras is not None:
        return load_config(args.cameras).retention, f"retention: of {args.cameras}"
    with GovernanceStore(args.db) as g:
        last = g.last_run_config()
    section = (last or {}).get("retention") or {}
    try:
        return RetentionConfig(**section), "retention: of the store's last run"
    except TypeError as e:
        raise CliError(f"the last run's retention: section cannot be read ({e}): pass --cameras CAMS_YAML") from None


def cmd_purge(args: argparse.Namespace) -> int:
    from pipeline.access import audit, erasure
    _require_any_store(args.db)
    retention, where = _retention(args)
    report = erasure.purge(args.db, retention, audit.cli_actor(), dry_run=args.dry_run)
    print(f"{where}: {report.format()}")
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    from pipeline.access import audit, erasure
    _require_any_store(args.db)
    report = erasure.forget_identity(args.db, args.identity, audit.cli_actor())
    print(report.format())
    if report.index_removed:
        print(f"removed search index {', '.join(report.index_removed)} (rebuilt by the next query)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from pipeline.access import evidence

    if args.key is not None and not Path(args.key).is_file():
        raise CliError(f"--key {args.key} not found; pass the store's <db>.evidence-key file")
    verdict = evidence.verify_evidence(args.folder, key=args.key)
    print(verdict.message)
    return 0 if verdict.ok else 1


def cmd_serve(args: argparse.Namespace) -> int:
    _require_any_store(args.db)  # "no store at ..." before the web stack is imported
    from pipeline.web.serve import serve

    serve(args.db, host=args.host, port=args.port, tls_cert=args.tls_cert, tls_key=args.tls_key, device=args.device)
    return 0
