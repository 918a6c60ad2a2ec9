"""Re-ID evaluation (Market-1501 protocol): feature extraction, ranking, metrics and their files,
shared by training and ``python -m reid_models evaluate`` (whose ``main(args)`` is here).

``evaluate`` writes ``metrics.json`` (rank1/5/10/20, mAP, mINP in percent, without and with
k-reciprocal re-ranking), ``cmc.png`` (both CMC curves) and ``ranked_results.png`` (top-10 gallery
matches of a few queries, correct ones framed green).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .. import runtime
from ..checkpoint import DEFAULT_CHECKPOINT, load_model, normalization
from ..common import UserError
from ..metrics import compute_distmat, evaluate_rank
from ..runtime import resolve_amp

__all__ = ["METRIC_KEYS", "FeatureSet", "evaluate", "extract_features", "format_metrics", "main", "rank_metrics",
           "reranked_distmat", "resolve_device", "write_outputs"]

RANKS = (1, 5, 10, 20)
METRIC_KEYS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")
RERANK_MAX_BYTES = 8 << 30  # q_q + g_g float32 matrices re-ranking needs (MSMT17's gallery: 27 GB)


@dataclass(frozen=True)
class FeatureSet:
    """Embeddings of one split with their labels, row-aligned.

    feats: (N, D) float32; pids: (N,) int64; camids: (N,) int64; paths: N image paths.
    """

    feats: np.ndarray
    pids: np.ndarray
    camids: np.ndarray
    paths: list[str]


def resolve_device(name: str) -> torch.device:
    """The ``--device`` of the commands as a torch.device (see reid_models.runtime); a device that is
    unknown or absent (``cuda`` without a GPU) is a one-line DeviceError naming the option."""
    try:
        return torch.device(runtime.resolve_device(name))
    except runtime.DeviceError as exc:
        raise runtime.DeviceError(f"--device: {exc}") from None


@torch.inference_mode()
def extract_features(model: torch.nn.Module, loader: DataLoader, device: torch.device, *,
                     flip: bool = False, amp_dtype: torch.dtype | None = None,
                     channels_last: bool = False, desc: str = "features") -> FeatureSet:
    """Eval-mode embeddings of every batch ``(images (B,3,H,W), pids, camids, paths)``.

    flip: average the embedding of each image and of its horizontal mirror.
    Returns a FeatureSet with feats (N, D) float32 on the CPU.
    """
    model.eval()
    feats, pids, camids, paths = [], [], [], []
    for images, batch_pids, batch_camids, batch_paths in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True):
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            emb = model(images).embedding.float()
            if flip:
                emb = (emb + model(torch.flip(images, dims=[3])).embedding.float()) / 2
        feats.append(emb.cpu())
        pids.append(torch.as_tensor(batch_pids))
        camids.append(torch.as_tensor(batch_camids))
        paths.extend(batch_paths)
    return FeatureSet(torch.cat(feats).numpy(), torch.cat(pids).numpy().astype(np.int64),
                      torch.cat(camids).numpy().astype(np.int64), list(paths))


def rank_metrics(distmat: np.ndarray, query: FeatureSet, gallery: FeatureSet) -> tuple[dict[str, float], np.ndarray]:
    """Market-1501 metrics of a (Q, G) distance matrix: ({rank1..rank20, mAP, mINP} in percent, cmc (50,))."""
    cmc, mean_ap, minp = evaluate_rank(distmat, query.pids, gallery.pids, query.camids, gallery.camids, max_rank=50)
    metrics = {f"rank{k}": 100.0 * float(cmc[k - 1]) for k in RANKS}
    metrics.update(mAP=100.0 * float(mean_ap), mINP=100.0 * float(minp))
    return metrics, cmc


def reranked_distmat(query: FeatureSet, gallery: FeatureSet, q_g: np.ndarray | None = None) -> np.ndarray:
    """k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3) of cosine distances: (Q, G).
    ``q_g``: the (Q, G) cosine distances when already computed."""
    from ..rerank import re_ranking

    if q_g is None:
        q_g = compute_distmat(query.feats, gallery.feats, metric="cosine")
    q_q = compute_distmat(query.feats, query.feats, metric="cosine")
    g_g = compute_distmat(gallery.feats, gallery.feats, metric="cosine")
    return re_ranking(q_g, q_q, g_g, k1=20, k2=6, lambda_value=0.3)


def evaluate(model: torch.nn.Module, query_loader: DataLoader, gallery_loader: DataLoader,
             device: torch.device, *, output_dir: str | Path | None = None, rerank: bool = True,
             flip: bool = False, amp_dtype: torch.dtype | None = None, channels_last: bool = False,
             info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Extract features, rank the gallery for every query, and report (and write) the metrics.

    Returns ``{"without_rerank": {rank1, rank5, rank10, rank20, mAP, mINP}, "with_rerank": {...}
    or None, "num_query", "num_gallery", **info}`` with metrics in percent. With ``output_dir``
    also writes metrics.json, cmc.png and ranked_results.png there.
    """
    query = extract_features(model, query_loader, device, flip=flip, amp_dtype=amp_dtype,
                             channels_last=channels_last, desc="query")
    gallery = extract_features(model, gallery_loader, device, flip=flip, amp_dtype=amp_dtype,
                               channels_last=channels_last, desc="gallery")
    distmat = compute_distmat(query.feats, gallery.feats, metric="cosine")
    plain, cmc = rank_metrics(distmat, query, gallery)
    curves = {"without re-ranking": cmc}
    reranked = None
    needed = 4 * (len(query.pids) ** 2 + len(gallery.pids) ** 2)
    if rerank and needed > RERANK_MAX_BYTES:
        print(f"re-ranking skipped: its query-query and gallery-gallery distances need {needed / 2**30:.1f} GiB "
              f"(limit {RERANK_MAX_BYTES / 2**30:.0f} GiB); with_rerank is null", file=sys.stderr)
    elif rerank:  # re_ranking never builds the (Q+G)^2 matrix, but needs q_q (Q, Q) and g_g (G, G)
        reranked, cmc_rr = rank_metrics(reranked_distmat(query, gallery, distmat), query, gallery)
        curves["with re-ranking"] = cmc_rr
    result = {**(info or {}), "num_query": int(len(query.pids)), "num_gallery": int(len(gallery.pids)),
              "embedding_dim": int(query.feats.shape[1]), "flip": bool(flip), "distance": "cosine",
              "units": "percent", "without_rerank": plain, "with_rerank": reranked}
    if output_dir is not None:
        write_outputs(Path(output_dir), result, curves, distmat, query, gallery)
    return result


def write_outputs(out: Path, result: dict[str, Any], curves: dict[str, np.ndarray], distmat: np.ndarray,
                  query: FeatureSet, gallery: FeatureSet) -> None:
    """metrics.json, cmc.png (every curve in ``curves``), ranked_results.png and identities.png under ``out``."""
    from ..plots import plot_cmc, plot_identities, plot_ranked_results

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out / "metrics.json")
    plot_cmc(curves, out / "cmc.png")
    plot_ranked_results(query.paths, gallery.paths, distmat, query.pids, gallery.pids, query.camids,
                        gallery.camids, out / "ranked_results.png", top=10, n_queries=5)
    plot_identities(gallery.paths, gallery.pids, gallery.camids, out / "identities.png")


def format_metrics(result: dict[str, Any]) -> str:
    """A small table of the metrics (percent), one row per re-ranking mode."""
    lines = [" " * 16 + "  ".join(f"{k:>6}" for k in METRIC_KEYS)]
    for mode, label in (("without_rerank", "no re-ranking"), ("with_rerank", "re-ranking")):
        if result.get(mode):
            lines.append(f"{label:<16}" + "  ".join(f"{result[mode][k]:6.2f}" for k in METRIC_KEYS))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate ``args.checkpoint`` on ``args.dataset`` (see reid_models/evaluate.py); returns the metrics."""
    from ..config import InputConfig
    from ..data import build_test_loaders
    from ..datasets import build_dataset
    from ..transforms import build_test_transforms

    device = resolve_device(args.device)
    model, info = load_model(args.checkpoint, device)
    config = info.get("config") or {}
    mean, std = normalization(info)
    input_size = tuple(info["input_size"])
    flip = bool(config.get("eval", {}).get("flip", False)) if args.flip is None else args.flip
    options = {}
    if args.same_person:
        if args.dataset != "mot":
            raise UserError(f"--same-person applies to --dataset mot only, not {args.dataset}; drop it")
        from ..datasets.mot import parse_same_person

        try:
            options["same_person"] = parse_same_person(",".join(args.same_person))
        except ValueError as exc:
            raise UserError(f"--same-person: {exc}") from None
    dataset = build_dataset(args.dataset, args.data_root, **options)  # an id not in gt.txt: one-line ValueError
    if not dataset.query or not dataset.gallery:
        raise UserError(f"dataset {args.dataset} at {args.data_root} has no query/gallery split to evaluate")
    channels_last = device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    transform = build_test_transforms(InputConfig(size=input_size, mean=mean, std=std))
    query_loader, gallery_loader = build_test_loaders(dataset, transform, args.batch_size, args.num_workers,
                                                      pin_memory=device.type == "cuda")
    if args.output:
        output = Path(args.output)
    elif str(args.checkpoint) == DEFAULT_CHECKPOINT:
        output = Path("runs") / "reid" / DEFAULT_CHECKPOINT / f"eval-{args.dataset}"
    else:
        output = Path(args.checkpoint).parent / f"eval-{args.dataset}"
    print(f"evaluating {info['model']} ({args.checkpoint}) on {args.dataset}: "
          f"{len(dataset.query)} query, {len(dataset.gallery)} gallery images, input {input_size[0]}x{input_size[1]}")
    result = evaluate(model, query_loader, gallery_loader, device, output_dir=output, rerank=args.rerank,
                      flip=flip, amp_dtype=resolve_amp(args.amp, device), channels_last=channels_last,
                      info={"model": info["model"], "dataset": args.dataset, "checkpoint": str(args.checkpoint),
                            "epoch": info.get("epoch"),
                            **({"same_person": ["=".join(map(str, g)) for g in options["same_person"]]}
                               if options else {})})
    print(format_metrics(result))
    print(f"wrote {output / 'metrics.json'}, cmc.png, ranked_results.png, identities.png")
    return result
