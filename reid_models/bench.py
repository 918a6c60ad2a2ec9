"""Embedding throughput (crops/s) of every re-ID network on the current device.

    python -m reid_models.bench [--models bot_r50 mfa_r50] [--batch-sizes 1 8 32] \
        [--device auto|cpu|cuda] [--iters 20] [--input-size 256 128] [--dtypes fp32 fp16 bf16] [--json FILE]

Each model is built with random weights (throughput does not depend on them) in eval mode with
channels_last memory format, and timed on a random batch after warm-up: fp32 everywhere, plus
fp16 and bf16 autocast on CUDA. One line per measurement as it finishes, then a table. The work is
reid_models.engine.benchmark; this module is its command line (also ``python -m reid_models bench``).
"""
from __future__ import annotations

import argparse
import sys

from .cli import ArgumentParser, command
from .engine.benchmark import DTYPES, main

__all__ = ["cli", "get_args_parser", "main"]


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = ArgumentParser(description="Embedding throughput (crops/s) per model and batch size",
                            add_help=add_help)
    parser.add_argument("--models", nargs="+", default=None, help="registry names (default: all)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--iters", type=int, default=20, help="timed forward passes per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed forward passes first")
    parser.add_argument("--input-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="crop size (default: each model's own, 256x128)")
    parser.add_argument("--dtypes", nargs="+", default=None, choices=tuple(DTYPES),
                        help="default: fp32 on CPU; fp32 fp16 bf16 on CUDA")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the results to FILE as JSON")
    return parser


cli = command(get_args_parser, main)


if __name__ == "__main__":
    sys.exit(cli())
