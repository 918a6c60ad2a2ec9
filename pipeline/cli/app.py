"""Command line: ``python -m pipeline run | query | export | eval | bench | adapt | reembed | associate``.

    python -m pipeline run --cameras streams/demo.yaml [--db PATH] [--device auto|cpu|cuda]
                           [--max-frames N] [--save-video DIR] [--workers N]
    python -m pipeline query --db PATH --image suspect.jpg [--box X1 Y1 X2 Y2] [--camera ID ...]
                             [--since T] [--until T] [--top K] [--out DIR] [--device D] [--exact]
    python -m pipeline index --db PATH|URL [--rebuild] [--index-dir DIR]
    python -m pipeline export --db PATH --format mot|mtmc|reid --out DIR [--run ID] [--camera ID ...]
    python -m pipeline eval --db PATH --gt CAMERA=GT.txt [--gt CAMERA=GT.txt ...] [--run ID] [--out DIR]
    python -m pipeline bench [--frames N] [--cameras 1 4 16] [--workers N] [--device D] [--imgsz PX] [--out DIR]
    python -m pipeline bench --accuracy [--frames N] [--imgsz PX] [--device D] [--out DIR]
    python -m pipeline bench --speed [--frames N] [--threads N ...] [--repeats N] [--imgsz PX] [--out DIR]
    python -m pipeline bench --query --samples N --dim D [--out DIR] [--json FILE]
    python -m pipeline adapt --db PATH --out CKPT [--base default|CKPT] [--epochs N] [--cluster] [--device D]
    python -m pipeline reembed --db PATH --checkpoint CKPT|default [--threshold T] [--device D]
    python -m pipeline users add NAME --db PATH --role admin|operator|viewer [--cameras ID ...]
    python -m pipeline users remove NAME --db PATH | users list --db PATH
    python -m pipeline audit --db PATH [--verify] [--since T] [--user NAME] [--action A]
    python -m pipeline purge --db PATH|URL [--dry-run] [--cameras CAMS_YAML]
    python -m pipeline forget --db PATH|URL --identity G
    python -m pipeline export --db PATH --format evidence --identity G --out DIR [--query-image IMG]
    python -m pipeline verify DIR [--key KEYFILE]
    python -m pipeline serve --db PATH [--host 127.0.0.1] [--port 8000] [--tls-cert PEM --tls-key PEM]
    python -m pipeline associate --db PATH|URL [--config CAMS_YAML] [--follow] [--interval S]
    python -m pipeline bench --store [--db PATH|URL] [--rows N]

Every --db takes a store file (SQLite, the default) or, for run, query, export, eval, associate and
bench --store, index, a PostgreSQL URL postgresql://USER@HOST:PORT/DBNAME (pip install camreid[postgres]).

Bad input (missing or invalid file, wrong config key, unreadable image, missing store, a store
another run is writing, a camera that delivers no frame) prints one line ``error: ...`` on stderr
and exits with status 2; an internal failure (a full disk included) exits with 1; Ctrl-C or SIGTERM
exits with 130 after the store has committed what was recorded. The mapping is reid_models.cli's
(:func:`reid_models.cli.run_cli`), so both command lines agree.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from reid_models.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, run_cli
from reid_models.common import parse_time

from .commands import (
    CliError,
    cmd_adapt,
    cmd_associate,
    cmd_audit,
    cmd_bench,
    cmd_eval,
    cmd_export,
    cmd_forget,
    cmd_index,
    cmd_purge,
    cmd_query,
    cmd_reembed,
    cmd_run,
    cmd_serve,
    cmd_users,
    cmd_verify,
)

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERRUPTED", "build_parser", "main", "time_argument"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def time_argument(text: str) -> float:
    """argparse type for --since/--until: ISO-8601 (naive = UTC) or epoch seconds -> epoch seconds."""
    try:
        return parse_time(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _gt_argument(text: str) -> tuple[str, str]:
    """argparse type for --gt CAMERA=PATH."""
    camera, sep, path = text.partition("=")
    if not sep or not camera.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected CAMERA=PATH (like north=gt/gt.txt), got {text!r}")
    return camera.strip(), path.strip()


def _set_quiet_env() -> None:
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own lines ("moov atom not found")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m pipeline", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="detect, track, embed and store people from the cameras of a cams.yaml")
    r.add_argument("--cameras", required=True, metavar="CAMS_YAML", help="camera and stage settings")
    r.add_argument("--db", help="store file (default: store.path of the YAML)")
    r.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    r.add_argument("--max-frames", type=_positive_int, metavar="N", help="stop each camera after N frames")
    r.add_argument("--save-video", metavar="DIR", help="write DIR/<camera>.mp4 with boxes and ids")
    r.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                   help="split the cameras into N process groups, each with its own models (default 1: one process)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)

    q = sub.add_parser("query", help="find where the person of a photo was seen")
    q.add_argument("--db", required=True, help="store written by `run`")
    what = q.add_mutually_exclusive_group(required=True)
    what.add_argument("--image", help="photo of the person (a crop, or see --box)")
    what.add_argument("--vector", metavar="NPY", help="a (D,) query embedding saved with numpy.save instead of a "
                                                      "photo (e.g. the query.npy `bench --query` writes)")
    q.add_argument("--box", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"),
                   help="cut this pixel box out of --image first")
    q.add_argument("--camera", nargs="+", action="extend", metavar="ID", help="only these cameras")
    q.add_argument("--since", type=time_argument, metavar="T", help="ISO-8601 or epoch seconds")
    q.add_argument("--until", type=time_argument, metavar="T", help="ISO-8601 or epoch seconds")
    q.add_argument("--top", type=_positive_int, default=10, metavar="K", help="identities to list (default 10)")
    q.add_argument("--out", default="query_results", metavar="DIR", help="results.json + contact_sheet.png")
    q.add_argument("--device", default="auto")
    q.add_argument("--exact", action="store_true", help="brute force over every sample, not the ANN index")
    q.add_argument("--index-dir", metavar="DIR", help=INDEX_DIR_HELP)
    q.set_defaults(func=cmd_query)

    x = sub.add_parser("index", help="bring the store's search index (<db>.index/) up to date, or rebuild it")
    x.add_argument("--db", required=True, help="store written by `run`")
    x.add_argument("--rebuild", action="store_true", help="build it again from the store")
    x.add_argument("--quiet", action="store_true", help="no progress bar")
    x.add_argument("--index-dir", metavar="DIR", help=INDEX_DIR_HELP)
    x.set_defaults(func=cmd_index)

    e = sub.add_parser("export", help="write the store as MOTChallenge, AI City MTMC or Market-1501 data, "
                                      "or one identity's signed evidence folder")
    e.add_argument("--db", required=True)
    e.add_argument("--format", required=True, choices=("mot", "mtmc", "reid", "evidence"))
    e.add_argument("--out", required=True, metavar="DIR")
    e.add_argument("--identity", type=_positive_int, metavar="G", help="evidence: the global identity")
    e.add_argument("--query-image", metavar="IMG", help="evidence: the search photo to include")
    e.add_argument("--run", type=_positive_int, metavar="ID", help="only this run of the store")
    e.add_argument("--camera", nargs="+", action="extend", metavar="ID", help="only these cameras")
    e.set_defaults(func=cmd_export)

    v = sub.add_parser("eval", help="score a run against MOTChallenge ground truth (HOTA, MOTA, IDF1, ...)")
    v.add_argument("--db", required=True, help="store written by `run`")
    v.add_argument("--gt", required=True, type=_gt_argument, action="append", metavar="CAMERA=PATH",
                   help="MOTChallenge gt.txt of a camera (1-based source frames); repeat per camera")
    v.add_argument("--run", type=_positive_int, metavar="ID",
                   help="run to score (default: the last run of each camera)")
    v.add_argument("--out", default="eval_results", metavar="DIR",
                   help="metrics.json and <camera>_identity.png (default eval_results)")
    v.set_defaults(func=cmd_eval)

    b = sub.add_parser("bench", help="frames/s, CPU%% and per-stage ms on the demo clip for 1, 4, 16 cameras; "
                                     "--accuracy: MOTA/IDF1/HOTA against ultralytics and BoxMOT trackers; "
                                     "--query: search latency and recall on a synthetic store")
    b.add_argument("--store", action="store_true",
                   help="rows/s the store writes: a temporary SQLite file and each --db (file or postgresql:// URL)")
    b.add_argument("--db", action="append", default=[], metavar="PATH|URL",
                   help="--store: also this store (PostgreSQL: into a temporary schema, dropped after); --query: "
                        "build the synthetic store on this PostgreSQL server instead (temporary schema, dropped after)")
    b.add_argument("--rows", type=_positive_int, default=2000, metavar="N",
                   help="--store: frames to write (x 8 tracks)")
    b.add_argument("--accuracy", action="store_true",
                   help="score the pipeline and peer trackers on the demo clip against its MOTChallenge ground "
                        "truth (../shared/data/mot15/PETS09-S2L1)")
    b.add_argument("--frames", type=_positive_int, default=None, metavar="N",
                   help="frames per camera (default 30; --accuracy: the whole clip)")
    b.add_argument("--out", default=None, metavar="DIR",
                   help="folder for speed.json (--accuracy: bench.json, default runs/bench; "
                        "--query: the store's folder, default runs/bench-query)")
    b.add_argument("--cameras", type=_positive_int, nargs="+", default=[1, 4, 16], metavar="N",
                   help="camera counts to measure (default 1 4 16)")
    b.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                   help="process groups the cameras are split into (at most one per camera; default 1)")
    b.add_argument("--device", default="auto")
    b.add_argument("--imgsz", type=_positive_int, default=None, metavar="PX",
                   help="detector input size (default 640; --speed: 960, what imgsz auto picks on the demo clip)")
    b.add_argument("--speed", action="store_true",
                   help="frames/s of the pipeline against ultralytics model.track, same weights, imgsz and torch "
                        "threads, each run a fresh process, A B A B (--frames default 200)")
    b.add_argument("--threads", type=_positive_int, nargs="+", default=[1, 2], metavar="N",
                   help="--speed: torch thread counts to measure (default 1 2)")
    b.add_argument("--repeats", type=_positive_int, default=2, metavar="N", help="--speed: A B pairs per thread count")
    b.add_argument("--clip", default=None, help="video to use (default streams/vtest.avi)")
    b.add_argument("--query", action="store_true",
                   help="search at scale: build a synthetic store of --samples x --dim through the store's write "
                        "path and its index, report build time, cold/warm query latency, RSS and recall@10")
    b.add_argument("--samples", type=_positive_int, default=100_000, metavar="N", help="--query: samples")
    b.add_argument("--dim", type=_positive_int, default=512, metavar="D", help="--query: vector dimension")
    b.add_argument("--queries", type=_positive_int, default=50, metavar="N", help="--query: queries timed")
    b.add_argument("--json", default=None, metavar="FILE", help="--query: also write the figures as JSON")
    b.add_argument("--reuse", action="store_true", help="--query: keep the store --out already holds")
    b.set_defaults(func=cmd_bench)

    a = sub.add_parser("adapt", help="fine-tune the re-ID network on the store's own tracks (a site model)")
    a.add_argument("--db", required=True, help="store written by `run` (its source videos are read again)")
    a.add_argument("--out", required=True, metavar="CKPT", help="checkpoint to write (.pt)")
    a.add_argument("--base", default="default", metavar="CKPT", help="start from: default (generic) or a .pt")
    a.add_argument("--epochs", type=_positive_int, metavar="N", help="passes over the crops")
    a.add_argument("--cluster", action="store_true", help="merge tracks into cross-camera identities each epoch")
    a.add_argument("--negatives", choices=("cooccurring", "all"), help="which identities a crop is pushed from")
    a.add_argument("--device", default="auto")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=cmd_adapt)

    m = sub.add_parser("reembed", help="recompute every stored sample with another embedder, then re-associate")
    m.add_argument("--db", required=True)
    m.add_argument("--checkpoint", required=True, metavar="CKPT", help="a reid_models .pt, or default")
    m.add_argument("--threshold", type=float, metavar="T",
                   help="association threshold for the new embedder (default: the checkpoint's suggestion, "
                        "else the last run's)")
    m.add_argument("--device", default="auto")
    m.add_argument("--batch", type=_positive_int, default=256, metavar="N", help="samples per committed batch")
    m.add_argument("--quiet", action="store_true", help="no progress bar")
    m.set_defaults(func=cmd_reembed)

    s = sub.add_parser("associate", help="link ended tracks into global identities; --follow: as a service")
    s.add_argument("--db", required=True, metavar="PATH|URL", help="store file or postgresql:// URL")
    s.add_argument("--config", metavar="YAML", help="a YAML whose association section to use (default: the "
                                                    "store's runs' settings: last threshold, every transit rule)")
    s.add_argument("--follow", action="store_true", help="keep linking every --interval seconds until stopped")
    s.add_argument("--interval", type=_positive_float, default=5.0, metavar="S",
                   help="seconds between passes with --follow (default 5)")
    s.set_defaults(func=cmd_associate)
    u = sub.add_parser("users", help="add, remove or list the users of a store (web logins and roles)")
    usub = u.add_subparsers(dest="users_command", required=True, parser_class=_Parser)
    ua = usub.add_parser("add", help="add a user; the password is read from stdin (or prompted on a terminal)")
    ua.add_argument("name")
    ua.add_argument("--db", required=True)
    ua.add_argument("--role", required=True, choices=("admin", "operator", "viewer"))
    ua.add_argument("--cameras", nargs="+", action="extend", metavar="ID", help="only these cameras (default all)")
    ur = usub.add_parser("remove", help="remove a user")
    ur.add_argument("name")
    ur.add_argument("--db", required=True)
    ul = usub.add_parser("list", help="list the users, roles and cameras")
    ul.add_argument("--db", required=True)
    u.set_defaults(func=cmd_users)

    au = sub.add_parser("audit", help="print the audit log, or --verify its hash chain")
    au.add_argument("--db", required=True)
    au.add_argument("--verify", action="store_true", help="check the chain (exit 1 if a row was tampered with)")
    au.add_argument("--since", type=time_argument, metavar="T", help="ISO-8601 or epoch seconds")
    au.add_argument("--user", metavar="NAME", help="only this actor (os:<login> for the command line)")
    au.add_argument("--action", metavar="A", help="only this action (login, search, export, correct, ...)")
    au.set_defaults(func=cmd_audit)

    pu = sub.add_parser("purge", help="apply the retention: section now (delete what is older)")
    pu.add_argument("--db", required=True)
    pu.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    pu.add_argument("--cameras", metavar="CAMS_YAML", help="take retention: from this file (default: the last run's)")
    pu.set_defaults(func=cmd_purge)

    fo = sub.add_parser("forget", help="erase every trace of one identity (tracks, boxes, samples, thumbnails)")
    fo.add_argument("--db", required=True)
    fo.add_argument("--identity", required=True, type=_positive_int, metavar="G")
    fo.set_defaults(func=cmd_forget)

    ve = sub.add_parser("verify", help="check an evidence folder's file hashes and signature")
    ve.add_argument("folder", metavar="DIR")
    ve.add_argument("--key", metavar="KEYFILE",
                    help="the store's evidence key file (default: $CAMREID_EVIDENCE_KEY, <db>.evidence-key beside "
                         "a store file, ~/.config/camreid/evidence-keys/ for a PostgreSQL store)")
    ve.set_defaults(func=cmd_verify)

    w = sub.add_parser("serve", help="the operator web app: search, identities, cameras, users (log in required)")
    w.add_argument("--db", required=True, help="store written by `run` (read while a run writes it)")
    w.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    w.add_argument("--port", type=_positive_int, default=8000)
    w.add_argument("--tls-cert", metavar="PEM", help="certificate file: serve HTTPS (with --tls-key)")
    w.add_argument("--tls-key", metavar="PEM", help="private key file of --tls-cert")
    w.add_argument("--device", default="auto", help="device of the query embedder")
    w.add_argument("--index-dir", metavar="DIR", help=INDEX_DIR_HELP)
    w.set_defaults(func=cmd_serve)
    return p


INDEX_DIR_HELP = ("PostgreSQL store: folder of this machine's copy of its search index and ONNX query embedder "
                  "(default $CAMREID_INDEX_DIR or ~/.cache/camreid/index; one subfolder per database)")


def main(argv: Sequence[str] | None = None) -> int:
    _set_quiet_env()
    args = build_parser().parse_args(argv)
    if getattr(args, "index_dir", None):  # read by pipeline.store.sidecar_base
        os.environ["CAMREID_INDEX_DIR"] = str(Path(args.index_dir).expanduser().resolve())
    from pipeline.config import ConfigError
    from pipeline.ingest import IngestError
    from pipeline.stages.detect import DetectorError
    from pipeline.store import StoreError

    bad_input = (CliError, ConfigError, DetectorError, IngestError, StoreError)  # + reid_models' BAD_INPUT

    def call(_argv) -> int:
        try:
            return args.func(args)
        except KeyboardInterrupt:
            print("error: interrupted; everything committed so far is kept in the store", file=sys.stderr)
            return EXIT_INTERRUPTED

    return run_cli(call, None, bad_input=bad_input)
