"""``python -m reid_models <train|evaluate|export|bench|list>``: the re-ID commands in one entry point.

``list`` prints the model zoo with parameter counts and compute cost (GMACs = multiply-adds, as
papers quote them, and GFLOPs = 2 x GMACs; batch 1, eval mode, torch.utils.flop_counter). The other
commands take the options of ``python -m reid_models.<command>``. Exit codes as the pipeline's CLI
(reid_models.cli): 0 done, 2 bad input (one ``error: ...`` line), 1 internal failure, 130 Ctrl-C;
``CAMREID_TRACEBACK=1`` prints the full traceback.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import bench, evaluate, export, train
from .cli import ArgumentParser, run_cli

COMMANDS = {"train": train, "evaluate": evaluate, "export": export, "bench": bench}


def print_model_table(args: argparse.Namespace) -> None:
    """The ``list`` table: name, params (M), embedding size, input size, GMACs and GFLOPs."""
    from .engine.benchmark import model_table

    print(f"{'name':<16}{'params (M)':>11}{'embed dim':>10}{'input HxW':>11}{'GMACs':>9}{'GFLOPs':>9}")
    for row in model_table(args.num_classes):
        h, w = row["input_size"]
        print(f"{row['name']:<16}{row['params'] / 1e6:>11.2f}{row['embedding_dim']:>10}{f'{h}x{w}':>11}"
              f"{row['flops'] / 2e9:>9.2f}{row['flops'] / 1e9:>9.2f}")
    print(f"params with num_classes={args.num_classes}; GMACs = multiply-adds (as papers quote), "
          "GFLOPs = 2 x GMACs; batch 1, eval mode, torch.utils.flop_counter.")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m reid_models", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        command = sub.add_parser(name, parents=[module.get_args_parser(add_help=False)],
                                 help=module.__doc__.splitlines()[0])
        command.set_defaults(func=module.main)
    lst = sub.add_parser("list", help="table of registered models: params (M), GMACs and GFLOPs")
    lst.add_argument("--num-classes", type=int, default=751, help="classifier size (751 = Market-1501 train ids)")
    lst.set_defaults(func=print_model_table)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (see reid_models.cli)."""
    def run(args_list: Sequence[str] | None) -> None:
        args = build_parser().parse_args(args_list)
        args.func(args)

    return run_cli(run, argv)


if __name__ == "__main__":
    sys.exit(main())
