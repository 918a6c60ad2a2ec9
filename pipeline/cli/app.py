"""Command line: ``python -m pipeline run | query | export | bench``.

    python -m pipeline run --cameras streams/demo.yaml [--db PATH] [--device auto|cpu|cuda]
                           [--max-frames N] [--save-video DIR]
    python -m pipeline query --db PATH --image suspect.jpg [--box X1 Y1 X2 Y2] [--camera ID ...]
                             [--since T] [--until T] [--top K] [--out DIR] [--device D]
    python -m pipeline export --db PATH --format mot|mtmc|reid --out DIR [--run ID]
    python -m pipeline bench [--frames N] [--cameras 1 2 4] [--device D] [--imgsz PX]

Bad input (missing or invalid file, wrong config key, unreadable image, missing store) prints
one line ``error: ...`` on stderr and exits with status 2; Ctrl-C exits with 130 after the store
has committed what was recorded.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A problem with the user's input; printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def parse_time(text: str) -> float:
    """ISO-8601 (naive = UTC) or epoch seconds -> epoch seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad time {text!r}: use ISO-8601 such as 2024-05-01T10:00:30Z or epoch seconds") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _set_quiet_env() -> None:
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")


# ----------------------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace) -> int:
    from .config import load_config

    cfg = load_config(args.cameras)  # ConfigError -> one line, before any model is loaded
    from .runner import Runner

    def _sigterm(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _sigterm)
    runner = Runner(cfg, db_path=args.db, device=args.device, max_frames=args.max_frames,
                    save_video=args.save_video, progress=not args.quiet)
    try:
        summary = runner.run()
    except KeyboardInterrupt:
        if runner.summary is not None:
            print(runner.summary.format())
        raise
    print(summary.format())
    return 0


def read_image(path: str | Path, box: Sequence[float] | None = None):
    """Decode an image file (BGR uint8) and optionally cut ``box`` (x1, y1, x2, y2 pixels) out of it."""
    import cv2
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise CliError(f"query image not found: {path}; pass a JPEG/PNG file with --image")
    image = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise CliError(f"cannot read query image {path}: not a readable JPEG/PNG image")
    if box is not None:
        h, w = image.shape[:2]
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if x2 - x1 < 2 or y2 - y1 < 2:
            raise CliError(f"--box {' '.join(str(v) for v in box)} is empty inside the {w}x{h} image")
        image = image[y1:y2, x1:x2]
    return image


def cmd_query(args: argparse.Namespace) -> int:
    from .store import TrackStore

    if not Path(args.db).is_file():
        raise CliError(f"no store at {args.db}: run `python -m pipeline run` first or check --db")
    if args.since is not None and args.until is not None and args.since > args.until:
        raise CliError("--since is later than --until: the time window is empty; swap them")
    image = read_image(args.image, args.box)
    from .embed import Embedder
    from .query import format_table, search_tracks, write_results

    with TrackStore(args.db) as store:
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
    from .export import export_store
    from .store import TrackStore

    if not Path(args.db).is_file():
        raise CliError(f"no store at {args.db}: run `python -m pipeline run` first or check --db")
    with TrackStore(args.db) as store:
        counts = export_store(store, args.format, args.out, run_id=args.run)
    print(f"exported {args.format} to {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    print(run_bench(frames=args.frames, cameras=args.cameras, device=args.device, imgsz=args.imgsz,
                    clip=args.clip))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m pipeline", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="detect, track, embed and store people from the cameras of a cams.yaml")
    r.add_argument("--cameras", required=True, metavar="CAMS_YAML", help="camera and stage settings")
    r.add_argument("--db", help="store file (default: store.path of the YAML)")
    r.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    r.add_argument("--max-frames", type=_positive_int, metavar="N", help="stop each camera after N frames")
    r.add_argument("--save-video", metavar="DIR", help="write DIR/<camera>.mp4 with boxes and ids")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)

    q = sub.add_parser("query", help="find where the person of a photo was seen")
    q.add_argument("--db", required=True, help="store written by `run`")
    q.add_argument("--image", required=True, help="photo of the person (a crop, or see --box)")
    q.add_argument("--box", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"),
                   help="cut this pixel box out of --image first")
    q.add_argument("--camera", nargs="+", action="extend", metavar="ID", help="only these cameras")
    q.add_argument("--since", type=parse_time, metavar="T", help="ISO-8601 or epoch seconds")
    q.add_argument("--until", type=parse_time, metavar="T", help="ISO-8601 or epoch seconds")
    q.add_argument("--top", type=_positive_int, default=10, metavar="K", help="identities to list (default 10)")
    q.add_argument("--out", default="query_results", metavar="DIR", help="results.json + contact_sheet.png")
    q.add_argument("--device", default="auto")
    q.set_defaults(func=cmd_query)

    e = sub.add_parser("export", help="write the store as MOTChallenge, AI City MTMC or Market-1501 data")
    e.add_argument("--db", required=True)
    e.add_argument("--format", required=True, choices=("mot", "mtmc", "reid"))
    e.add_argument("--out", required=True, metavar="DIR")
    e.add_argument("--run", type=_positive_int, metavar="ID", help="only this run of the store")
    e.set_defaults(func=cmd_export)

    b = sub.add_parser("bench", help="frames/s and per-stage ms on the demo clip for 1, 2, 4 cameras")
    b.add_argument("--frames", type=_positive_int, default=30, metavar="N", help="frames per camera (default 30)")
    b.add_argument("--cameras", type=_positive_int, nargs="+", default=[1, 2, 4], metavar="N")
    b.add_argument("--device", default="auto")
    b.add_argument("--imgsz", type=_positive_int, default=640, metavar="PX", help="detector input size")
    b.add_argument("--clip", default=None, help="video to use (default streams/vtest.avi)")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    _set_quiet_env()
    args = build_parser().parse_args(argv)
    from .config import ConfigError
    from .detect import DetectorError
    from .ingest import IngestError
    from .store import StoreError

    bad_input = (CliError, ConfigError, DetectorError, IngestError, StoreError, FileNotFoundError,
                 NotADirectoryError, IsADirectoryError, PermissionError, ValueError)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("error: interrupted; everything committed so far is kept in the store", file=sys.stderr)
        return EXIT_INTERRUPTED
    except bad_input as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - one line for users; PIPELINE_TRACEBACK=1 shows the stack
        if os.environ.get("PIPELINE_TRACEBACK"):
            raise
        print(f"error: {type(exc).__name__}: {_one_line(exc)} (set PIPELINE_TRACEBACK=1 for details)",
              file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
