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


def cmd_query(args: argparse.Namespace) -> int:
    from pipeline.store import StoreReader

    with StoreReader(args.db) as store:  # "no store at ..." before the image and the embedder
        if args.since is not None and args.until is not None and args.since > args.until:
            raise CliError("--since is later than --until: the time window is empty; swap them")
        store.check_cameras(args.camera)
        _check_out_folder(args.out)
        image = read_query_image(args.image, args.box)
        from pipeline.search import format_table, search_tracks, write_results
        from pipeline.stages.embed import Embedder

        embedder = Embedder.from_spec(store.embedder_spec, device=args.device)
        if embedder.embedder_id != store.embedder_id:  # a spec without an id rebuilds the default embedder
            raise CliError(f"store {args.db} was built with embedder {store.embedder_id}, which cannot be "
                           f"rebuilt from its spec (got {embedder.embedder_id}): query it with that embedder")
        query = embedder([image])[0]
        sightings = search_tracks(store, query, cameras=args.camera, since=args.since, until=args.until,
                                  top=args.top)
        print(format_table(sightings))
        paths = write_results(sightings, args.out, query_image=image)
    print(f"wrote {paths['json']} and {paths['contact_sheet']}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pipeline.export import export_store
    from pipeline.store import StoreReader

    with StoreReader(args.db) as store:
        counts = export_store(store, args.format, args.out, run_id=args.run, cameras=args.camera)
    print(f"exported {args.format} to {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from pipeline.score_store import evaluate_store, format_report

    gt = dict(args.gt)
    if len(gt) != len(args.gt):
        raise CliError("a camera is given twice in --gt: give each camera one ground-truth file")
    report = evaluate_store(args.db, gt, run_id=args.run, out_dir=args.out)
    print(format_report(report))
    print(f"wrote {Path(args.out) / 'metrics.json'} and {len(report['plots'])} identity plot(s) in {args.out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.accuracy:
        from pipeline.bench_accuracy import run_accuracy_bench

        table, path = run_accuracy_bench(frames=args.frames, device=args.device, imgsz=args.imgsz,
                                         clip=args.clip, out_dir=args.out or "runs/bench")
        print(table)
        print(f"wrote {path}")
        return 0
    from pipeline.bench import run_bench

    print(run_bench(frames=args.frames or 30, cameras=args.cameras, device=args.device, imgsz=args.imgsz,
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
    print(result.format())
    return 0
