"""ONNX export of a re-ID checkpoint's embedding network with an onnxruntime parity check; ``main(args)``
is ``python -m reid_models export`` (options in reid_models/export.py).

The exported graph maps ``images`` (B, 3, H, W) float32, normalised RGB at the checkpoint's input
size, to ``embedding`` (B, D) float32 (the eval-mode ReIDOutput.embedding). The model's name, input
size, mean/std and embedding size are stored as ONNX metadata. The file is written beside the
output and renamed into place only after the parity check passes, so a failed export leaves nothing.
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checkpoint import load_model, normalization
from ..common import atomic_output

__all__ = ["EmbeddingModel", "ExportParityError", "export_onnx", "main", "onnx_max_abs_diff"]


class ExportParityError(RuntimeError):
    """onnxruntime's embeddings differ from PyTorch's by more than the tolerance (an internal failure)."""


class EmbeddingModel(nn.Module):
    """Wrap a re-ID network so that forward returns the embedding tensor only: (B,3,H,W) -> (B,D)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images).embedding


def export_onnx(model: nn.Module, input_size: tuple[int, int], path: str | Path, *, opset: int = 17,
                dynamic_batch: bool = False, batch_size: int = 1, metadata: dict[str, str] | None = None) -> Path:
    """Write ``EmbeddingModel(model)`` as ONNX (TorchScript-based exporter) with input ``images``
    (batch_size or dynamic, 3, H, W) and output ``embedding``; ``metadata`` goes into metadata_props."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = EmbeddingModel(model).cpu()
    dummy = torch.zeros(batch_size, 3, *input_size).normal_()
    axes = {"images": {0: "batch"}, "embedding": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's DeprecationWarning and tracer warnings
        torch.onnx.export(wrapper, (dummy,), str(path), dynamo=False, opset_version=opset,
                          input_names=["images"], output_names=["embedding"], dynamic_axes=axes,
                          do_constant_folding=True)
    if metadata:
        proto = onnx.load(str(path))
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, str(value)
        onnx.save(proto, str(path))
    return path


def onnx_max_abs_diff(path: str | Path, model: nn.Module, images: torch.Tensor) -> float:
    """Max |onnxruntime - PyTorch| over the embeddings of ``images`` (B, 3, H, W) on the CPU.

    (An untrained network whose BatchNorm running statistics were never updated can give
    embeddings of ~1e8 in eval mode; compare such differences with the embedding's size.)
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(["embedding"], {"images": images.numpy().astype(np.float32)})
    with torch.no_grad():
        torch_out = EmbeddingModel(model).cpu()(images).numpy()
    if onnx_out.shape != torch_out.shape:
        raise RuntimeError(f"ONNX output shape {onnx_out.shape} != PyTorch {torch_out.shape}")
    return float(np.abs(onnx_out - torch_out).max())


def main(args: argparse.Namespace) -> float:
    """Export, check, print; returns the max abs difference. ExportParityError above the tolerance
    (then nothing is written at the output path)."""
    model, info = load_model(args.checkpoint, "cpu")
    input_size = tuple(info["input_size"])
    output = Path(args.output) if args.output else Path(args.checkpoint).with_suffix(".onnx")
    mean, std = normalization(info)
    metadata = {"model": info["model"], "input_size": json.dumps(list(input_size)),
                "mean": json.dumps(list(mean)), "std": json.dumps(list(std)),
                "embedding_dim": str(getattr(model, "embedding_dim", ""))}
    check_batch = args.batch_size + 1 if args.dynamic_batch else args.batch_size
    images = torch.randn(check_batch, 3, *input_size, generator=torch.Generator().manual_seed(0))
    with atomic_output(output) as tmp:
        export_onnx(model, input_size, tmp, opset=args.opset, dynamic_batch=args.dynamic_batch,
                    batch_size=args.batch_size, metadata=metadata)
        diff = onnx_max_abs_diff(tmp, model, images)
        status = "OK" if diff <= args.tolerance else "FAILED"
        print(f"exported {info['model']} -> {output} (opset {args.opset}, input {check_batch}x3x{input_size[0]}x"
              f"{input_size[1]}{', dynamic batch' if args.dynamic_batch else ''})")
        print(f"onnxruntime vs PyTorch: max abs difference {diff:.3g} (tolerance {args.tolerance:g}) {status}")
        if diff > args.tolerance:
            raise ExportParityError(f"onnxruntime differs from PyTorch by {diff:.3g} > tolerance {args.tolerance:g}; "
                                    f"nothing written to {output}")
    return diff
