"""Measuring the networks: embedding throughput (crops/s) per model, batch and dtype (``main(args)`` is
``python -m reid_models bench``), and the zoo table of parameters and compute (``python -m reid_models list``).

Throughput: each model is built with random weights (throughput does not depend on them) in eval
mode with channels_last memory format, and timed on a random batch after warm-up: fp32 everywhere,
plus fp16 and bf16 autocast on CUDA. One line per measurement as it finishes, then a table.

Compute is measured with torch.utils.flop_counter.FlopCounterMode on one image at each model's input
size, in eval mode, on models built on the "meta" device (shapes only), so listing the zoo takes
seconds. The counter reports FLOPs (a multiply-add = 2 FLOPs); papers quote multiply-accumulates.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..common import UserError
from ..registry import create_model, list_models
from .evaluator import resolve_device

__all__ = ["BenchResult", "bench", "count_flops", "count_params", "device_description", "format_table", "main",
           "model_table", "time_model"]

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


def main(args: argparse.Namespace) -> list[BenchResult]:
    device = resolve_device(args.device)
    models = args.models or list_models()
    unknown = [m for m in models if m not in list_models()]
    if unknown:
        raise UserError(f"unknown model {unknown[0]!r}; choose from {', '.join(list_models())}")
    dtypes = args.dtypes or (["fp32", "fp16", "bf16"] if device.type == "cuda" else ["fp32"])
    if device.type != "cuda" and any(d != "fp32" for d in dtypes):
        raise UserError("fp16/bf16 are measured on CUDA only; use --dtypes fp32 on the CPU")
    input_size = tuple(args.input_size) if args.input_size else None
    results = bench(models, args.batch_sizes, device, dtypes, args.iters, args.warmup, input_size,
                    args.channels_last)
    print()
    print(format_table(results, device_description(device)))
    if getattr(args, "json", None):
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"device": device_description(device),
                                   "results": [dataclasses.asdict(r) for r in results]}, indent=2))
        print(f"wrote {out}")
    return results
