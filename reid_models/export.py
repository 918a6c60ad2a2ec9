"""Export a trained re-ID checkpoint's embedding network to ONNX and check it against PyTorch.

    python -m reid_models.export --checkpoint runs/reid/bot_r50-market1501/best.pt --format onnx \
        [--output model.onnx] [--opset 17] [--dynamic-batch] [--tolerance 1e-3]

The exported graph maps ``images`` (B, 3, H, W) float32, ImageNet-normalised RGB at the
checkpoint's input size, to ``embedding`` (B, D) float32 (the eval-mode ReIDOutput.embedding).
The model's name, input size, mean/std and embedding size are stored as ONNX metadata.
onnxruntime then runs the file on a batch and the max abs difference to PyTorch is printed; the
command exits with status 1 when it is above the tolerance, and then writes nothing. The work is
reid_models.engine.exporter; this module is its command line (also ``python -m reid_models export``).
"""
from __future__ import annotations

import argparse
import sys

from .cli import ArgumentParser, command
from .engine.exporter import main

__all__ = ["cli", "get_args_parser", "main"]


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = ArgumentParser(description="Export a re-ID checkpoint to ONNX with a parity check",
                            add_help=add_help)
    parser.add_argument("--checkpoint", required=True, help="a .pt written by reid_models.train")
    parser.add_argument("--format", default="onnx", choices=("onnx",))
    parser.add_argument("--output", default=None, help="output file (default: the checkpoint path with .onnx)")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--dynamic-batch", action="store_true", help="variable batch size (default: fixed)")
    parser.add_argument("--batch-size", type=int, default=4, help="batch of the export and of the parity check")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="max abs difference allowed (default 1e-3)")
    return parser


cli = command(get_args_parser, main)


if __name__ == "__main__":
    sys.exit(cli())
