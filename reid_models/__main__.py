"""``python -m reid_models list``: the model zoo with parameter counts and compute cost.

Compute is measured with torch.utils.flop_counter.FlopCounterMode on one image at each
model's input size, in eval mode. Models are built on the "meta" device (shapes only, no
memory, no arithmetic), so listing the zoo takes seconds. The counter reports FLOPs (a multiply-add = 2 FLOPs);
papers quote multiply-accumulates, so both columns are printed: GMACs = FLOPs / 2.
"""
from __future__ import annotations

import argparse
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from .registry import create_model, list_models


def count_params(model: torch.nn.Module) -> int:
    """All parameters, trainable or not (classifiers included)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: torch.nn.Module, input_size: tuple[int, int]) -> int:
    """FLOPs of one eval-mode forward pass on a (1, 3, H, W) input (matmul/conv counted, 2 per MAC)."""
    model.eval()
    device = next(model.parameters()).device
    x = torch.zeros(1, 3, *input_size, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return counter.get_total_flops()


def model_table(num_classes: int = 751) -> list[dict]:
    """One row per registered model: name, params, embedding_dim, input_size, flops (built on "meta")."""
    rows = []
    for name in list_models():
        with torch.device("meta"):
            model = create_model(name, num_classes=num_classes)
        rows.append({"name": name, "params": count_params(model), "embedding_dim": model.embedding_dim,
                     "input_size": tuple(model.input_size), "flops": count_flops(model, model.input_size)})
        del model
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reid_models", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    lst = sub.add_parser("list", help="table of registered models: params (M), GMACs and GFLOPs")
    lst.add_argument("--num-classes", type=int, default=751, help="classifier size (751 = Market-1501 train ids)")
    args = parser.parse_args(argv)
    if args.command == "list":
        print(f"{'name':<16}{'params (M)':>11}{'embed dim':>10}{'input HxW':>11}{'GMACs':>9}{'GFLOPs':>9}")
        for row in model_table(args.num_classes):
            h, w = row["input_size"]
            print(f"{row['name']:<16}{row['params'] / 1e6:>11.2f}{row['embedding_dim']:>10}{f'{h}x{w}':>11}"
                  f"{row['flops'] / 2e9:>9.2f}{row['flops'] / 1e9:>9.2f}")
        print(f"params with num_classes={args.num_classes}; GMACs = multiply-adds (as papers quote), "
              "GFLOPs = 2 x GMACs; batch 1, eval mode, torch.utils.flop_counter.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
