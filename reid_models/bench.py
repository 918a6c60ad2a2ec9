"""Embedding throughput (crops/s) of every re-ID network on the current device.

    python -m reid_models.bench [--models bot_r50 mfa_r50] [--batch-sizes 1 8 32] \
        [--device auto|cpu|cuda] [--iters 20] [--input-size 256 128]

Each model is built with random weights (throughput does not depend on them) in eval mode with
channels_last memory format, and timed on a random batch after warm-up: fp32 everywhere, plus
fp16 and bf16 autocast on CUDA. One line per measurement as it finishes, then a table.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch

from .evaluate import resolve_device
from .registry import create_model, list_models

DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class BenchResult:
    """One measurement: ``crops_per_s`` = batch * iters / seconds (0 when it did not fit: ``note``)."""

    model: str
    params_m: float
    batch: int
    dtype: str
    ms_per_batch: float
    crops_per_s: float
    note: str = ""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def time_model(model: torch.nn.Module, batch: int, input_size: tuple[int, int], device: torch.device,
               dtype: torch.dtype | None, iters: int, warmup: int, channels_last: bool = True) -> float:
    """Seconds per forward pass of a (batch, 3, H, W) input (mean over ``iters`` after ``warmup``)."""
    x = torch.randn(batch, 3, *input_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        for _ in range(warmup):
            model(x)
        _sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            model(x)
        _sync(device)
    return (time.perf_counter() - start) / iters


def bench(models: list[str], batch_sizes: list[int], device: torch.device, dtypes: list[str], iters: int,
          warmup: int, input_size: tuple[int, int] | None = None, channels_last: bool = True,
          num_classes: int = 751) -> list[BenchResult]:
    """Measure every (model, batch, dtype); prints one line per result as it comes."""
    results = []
    for name in models:
        kwargs = {"input_size": input_size} if input_size else {}
        model = create_model(name, num_classes=num_classes, **kwargs).eval().to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        size = tuple(input_size or getattr(model, "input_size", (256, 128)))
        params = sum(p.numel() for p in model.parameters()) / 1e6
        for batch in batch_sizes:
            for dtype_name in dtypes:
                try:
                    seconds = time_model(model, batch, size, device, DTYPES[dtype_name], iters, warmup, channels_last)
                    result = BenchResult(name, params, batch, dtype_name, 1000 * seconds, batch / seconds)
                except torch.cuda.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    result = BenchResult(name, params, batch, dtype_name, 0.0, 0.0, "out of memory")
                results.append(result)
                print(f"{name} {size[0]}x{size[1]} batch {batch} {dtype_name}: "
                      + (f"{result.crops_per_s:.1f} crops/s ({result.ms_per_batch:.1f} ms/batch)"
                         if not result.note else result.note), flush=True)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


def format_table(results: list[BenchResult], device_name: str) -> str:
    """Markdown table: model | params (M) | batch | dtype | ms/batch | crops/s."""
    lines = [f"device: {device_name}", "", "| model | params (M) | batch | dtype | ms/batch | crops/s |",
             "|---|---:|---:|---|---:|---:|"]
    for r in results:
        timing = (f"{r.ms_per_batch:.1f} | {r.crops_per_s:.1f}" if not r.note else f"- | {r.note}")
        lines.append(f"| {r.model} | {r.params_m:.2f} | {r.batch} | {r.dtype} | {timing} |")
    return "\n".join(lines)


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}, torch {torch.__version__})"
    return f"CPU, {torch.get_num_threads()} threads (torch {torch.__version__})"


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Embedding throughput (crops/s) per model and batch size",
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
    return parser


def main(args: argparse.Namespace) -> list[BenchResult]:
    device = resolve_device(args.device)
    models = args.models or list_models()
    unknown = [m for m in models if m not in list_models()]
    if unknown:
        raise SystemExit(f"error: unknown model {unknown[0]!r}; choose from {', '.join(list_models())}")
    dtypes = args.dtypes or (["fp32", "fp16", "bf16"] if device.type == "cuda" else ["fp32"])
    if device.type != "cuda" and any(d != "fp32" for d in dtypes):
        raise SystemExit("error: fp16/bf16 are measured on CUDA only; use --dtypes fp32 on the CPU")
    input_size = tuple(args.input_size) if args.input_size else None
    results = bench(models, args.batch_sizes, device, dtypes, args.iters, args.warmup, input_size,
                    args.channels_last)
    print()
    print(format_table(results, device_description(device)))
    return results


if __name__ == "__main__":
    main(get_args_parser().parse_args())
