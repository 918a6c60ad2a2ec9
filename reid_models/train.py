"""Train a re-ID network with one paper's recipe (torchvision-references style).

    python -m reid_models.train --config configs/reid/bot_r50.yaml --data-root DATA \
        --dataset market1501 [--dataset-option KEY=VALUE] [--epochs N] [--device auto|cpu|cuda] [--output DIR] \
        [--resume CKPT] [--pretrained PATH|download|none] [--eval-every N] [--set KEY=VALUE] \
        [--init CKPT] [--batch-size N] [--num-workers N] [--input-size H W] [--max-iters N]

PCB's second stage (RPP) for convnext_ap, from the first stage's weights:

    python -m reid_models.train --config configs/reid/convnext_ap.yaml --data-root DATA \
        --dataset market1501 --init runs/reid/convnext_ap-market1501/last.pt \
        --set model.kwargs.rpp=true --set schedule.epochs=20 --set schedule.warmup_epochs=0 \
        --set schedule.type=step --set "schedule.milestones=[10]" --set optimizer.lr=0.01 \
        --output runs/reid/convnext_ap_rpp-market1501

Every epoch writes ``last.pt`` (model, optimizer, scheduler, scaler, epoch) and, after each
evaluation, ``best.pt`` (highest mAP without re-ranking), ``metrics.json``, ``cmc.png`` and
``ranked_results.png``; ``log.jsonl`` has one line per epoch. The loop is reid_models.engine.trainer;
this module is its command line (also ``python -m reid_models train``).
"""
from __future__ import annotations

import argparse
import os
import sys

from .cli import ArgumentParser, command
from .engine.trainer import main

__all__ = ["cli", "get_args_parser", "main"]


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = ArgumentParser(description="Train a re-ID network with a paper's recipe", add_help=add_help)
    parser.add_argument("--config", default=None, help="recipe YAML, e.g. configs/reid/bot_r50.yaml "
                                                       "(optional with --resume: the checkpoint's recipe)")
    parser.add_argument("--data-root", required=True, help="folder holding the dataset")
    parser.add_argument("--dataset", required=True, help="market1501 | dukemtmc | cuhk03 | msmt17 | custom ...")
    parser.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE",
                        help="reader option, e.g. include_val=true (MSMT17: train on list_train + list_val), "
                             "version=v2; repeatable")
    parser.add_argument("--epochs", type=int, default=None, help="override schedule.epochs")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    parser.add_argument("--output", default=None, help="run folder (default runs/reid/<config>-<dataset>)")
    parser.add_argument("--resume", default=None, help="last.pt to continue from (model, optimizer, epoch, ...)")
    parser.add_argument("--pretrained", default="download",
                        help="ImageNet init: a local torchvision .pth file, 'download' (needs internet) or 'none'")
    parser.add_argument("--eval-every", type=int, default=None, help="override eval.every (epochs)")
    parser.add_argument("--batch-size", type=int, default=None, help="override sampler.batch_size (P x K)")
    parser.add_argument("--num-instances", type=int, default=None, help="override sampler.num_instances (K)")
    parser.add_argument("--num-workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--input-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="override input.size")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any recipe value, e.g. --set model.kwargs.rpp=true --set optimizer.lr=0.01")
    parser.add_argument("--init", default=None, metavar="CKPT",
                        help="start from this checkpoint's weights (non-strict: new layers such as RPP's part "
                             "classifier stay fresh); optimizer and epoch start anew")
    parser.add_argument("--max-iters", type=int, default=None, help="at most N batches per epoch (smoke runs)")
    parser.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "off"),
                        help="autocast on CUDA: auto = bf16 where supported, else fp16 (ignored on CPU)")
    parser.add_argument("--no-rerank", dest="rerank", action="store_false", default=None,
                        help="skip the re-ranked metrics (override eval.rerank)")
    return parser


cli = command(get_args_parser, main)


if __name__ == "__main__":
    sys.exit(cli())
