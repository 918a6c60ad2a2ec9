"""Evaluate a trained re-ID checkpoint on a dataset's query/gallery split (Market-1501 protocol).

    python -m reid_models.evaluate --checkpoint runs/reid/bot_r50-market1501/best.pt \
        --data-root DATA --dataset market1501 [--output DIR] [--no-rerank] [--flip]
    python -m reid_models.evaluate --checkpoint default --dataset mot --data-root DIR  # video + gt/gt.txt

Writes ``metrics.json`` (rank1/5/10/20, mAP, mINP in percent, without and with k-reciprocal
re-ranking), ``cmc.png`` (both CMC curves) and ``ranked_results.png`` (top-10 gallery matches of a
few queries, correct ones framed green) and ``identities.png`` (a strip of crops per gallery identity, to
spot ids that are one person). The work is reid_models.engine.evaluator (shared with
training); this module is its command line (also ``python -m reid_models evaluate``).
"""
from __future__ import annotations

import argparse
import os
import sys

from .cli import ArgumentParser, command
from .engine.evaluator import main

__all__ = ["cli", "get_args_parser", "main"]


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = ArgumentParser(description="Evaluate a re-ID checkpoint (CMC, mAP, mINP)", add_help=add_help)
    parser.add_argument("--checkpoint", required=True,
                        help="a .pt written by reid_models.train (or reid_models.convert); "
                             "'default' = the untrained generic embedder the pipeline uses without a checkpoint")
    parser.add_argument("--data-root", required=True, help="folder holding the dataset")
    parser.add_argument("--dataset", required=True,
                        help="dataset name, e.g. market1501, dukemtmc, partial_reid, or mot (annotated video: "
                             "--data-root holds the video and gt/gt.txt)")
    parser.add_argument("--same-person", nargs="+", default=None, metavar="ID=ID[=ID...]",
                        help="--dataset mot only: ground-truth ids that are one person (MOTChallenge gives a "
                             "person who comes back a new id), e.g. --same-person 2=13 8=14=15; find them in "
                             "identities.png")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    parser.add_argument("--output", default=None,
                        help="output folder (default: the checkpoint's folder/eval-<dataset>)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="DataLoader worker processes (default: 4, at most one per CPU)")
    parser.add_argument("--rerank", action=argparse.BooleanOptionalAction, default=True,
                        help="also report k-reciprocal re-ranked metrics (default on)")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="average the embeddings of each image and its mirror "
                             "(default: the recipe's eval.flip stored in the checkpoint)")
    parser.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "off"),
                        help="autocast dtype on CUDA (ignored on CPU)")
    return parser


cli = command(get_args_parser, main)


if __name__ == "__main__":
    sys.exit(cli())
