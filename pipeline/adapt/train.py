"""Fine-tuning a re-ID network on a store's own tracks (the method is in :func:`adapt_store`'s docstring)."""
from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import EmbedderConfig, StoreConfig
from pipeline.stages.embed import Embedder
from pipeline.store import StoreReader, TrackStore, require_store
from reid_models.checkpoint import DEFAULT_CHECKPOINT, load_model, save_checkpoint
from reid_models.generic import GenericEmbedder
from reid_models.runtime import resolve_device

from .crops import collect
from .labels import CooccurrenceBatches, cluster_tracks, frame_groups, identity_negatives, negative_threshold
from .settings import AdaptConfig

BATCH = 64
"""Crops per forward pass when caching trunk features and when embedding all crops."""
ASSOCIATION_QUANTILE = 0.99
"""The association threshold the checkpoint suggests (``adapt.association_threshold``, used by
``reembed``): this quantile of the adapted cosines between co-occurring tracks (certainly two people)."""


@dataclass(frozen=True)
class AdaptResult:
    """What an adaptation did. checkpoint: the file written; base: the embedder id it started from;
    tracks / crops / identities: training material (identities after clustering); losses: mean loss per
    epoch (step_losses: per step); merges: cluster merges of the last epoch; seconds / cpu_seconds: wall
    and process CPU time; association_threshold: the one suggested for the adapted embedder."""

    checkpoint: str
    base: str
    tracks: int
    crops: int
    identities: int
    cooccurring_pairs: int
    losses: tuple[float, ...]
    step_losses: tuple[float, ...]
    merges: int
    seconds: float
    cpu_seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)
    association_threshold: float = 0.6

    def format(self) -> str:
        loss = " -> ".join(f"{v:.3f}" for v in self.losses)
        lines = [f"adapted {self.base} on {self.tracks} tracks ({self.crops} crops, {self.cooccurring_pairs} "
                 f"co-occurring pairs, {self.identities} identities"
                 + (f" after {self.merges} merges" if self.merges else "") + ")",
                 f"loss per epoch: {loss}; suggested association threshold {self.association_threshold:.3f}",
                 f"{self.seconds:.0f} s wall, {self.cpu_seconds:.0f} s CPU -> {self.checkpoint}"]
        return "\n".join(list(self.notes) + lines)


class _Network:
    """The base network split in two: a frozen trunk run once per crop (its outputs cached) and a
    trainable top. The generic embedder trains its MobileNetV2 blocks from ``train_from`` on (the
    colour part has no weights and is cached); any other network trains whole, from cached inputs."""

    def __init__(self, embedder: Embedder, cfg: AdaptConfig, device: torch.device) -> None:
        self.embedder, self.device, self.flip = embedder, device, cfg.flip
        self.model = copy.deepcopy(embedder.model).float().to(device, memory_format=torch.contiguous_format)
        self.generic = isinstance(self.model, GenericEmbedder)
        if self.generic:
            blocks = len(self.model.features)
            if cfg.train_from >= blocks:
                raise ValueError(f"train_from {cfg.train_from} is past the network's {blocks} blocks; use < {blocks}")
            self.trunk = self.model.features[:cfg.train_from]
            self.top = self.model.features[cfg.train_from:]
            for p in self.trunk.parameters():
                p.requires_grad_(False)
        else:
            self.trunk, self.top = nn.Identity(), self.model
        self.cache: dict[str, list[torch.Tensor]] = {"x": [], "colour": [], "xf": [], "colourf": []}

    def parameters(self) -> list[nn.Parameter]:
        return [p for p in self.top.parameters() if p.requires_grad]

    @torch.no_grad()
    def add(self, crops: list[np.ndarray]) -> None:
        """Cache the trunk output (fp16) of these BGR crops (and of their mirror images with ``flip``)."""
        x = self.embedder.to_tensor(self.embedder.preprocess(crops)).float().to(self.device)
        x = x.contiguous()
        for suffix, inp in (("", x), ("f", x.flip(3))) if self.flip else (("", x),):
            if self.generic:
                self.cache["x" + suffix].append(self.trunk.eval()(inp).half().cpu())
                self.cache["colour" + suffix].append(self.model.colour_part(inp).cpu())
            else:
                self.cache["x" + suffix].append(inp.half().cpu())

    def finish(self) -> None:
        self.cache = {k: torch.cat(v) if v else torch.zeros(0) for k, v in self.cache.items()}

    def embed(self, idx: np.ndarray, flipped: np.ndarray | None = None) -> torch.Tensor:
        """(B,) crop rows (mirrored where ``flipped``) -> (B, D) unit-norm embeddings (with grad in train mode)."""
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        x = self.cache["x"][idx_t]
        if flipped is not None and flipped.any():
            f = torch.as_tensor(flipped)
            x = torch.where(f.view(-1, 1, 1, 1), self.cache["xf"][idx_t], x)
        x = x.to(self.device).float()
        if not self.generic:
            return F.normalize(self.model(x).embedding.float().flatten(1), dim=1)
        colour = self.cache["colour"][idx_t]
        if flipped is not None and flipped.any():
            colour = torch.where(f.view(-1, 1), self.cache["colourf"][idx_t], colour)
        return self.model.fuse(self.model.pool_cnn(self.top(x)), colour.to(self.device))

    @torch.no_grad()
    def embed_all(self) -> torch.Tensor:
        """(N, D) embeddings of every cached crop (eval mode), on the device."""
        self.top.eval()
        n = len(self.cache["x"])
        return torch.cat([self.embed(np.arange(i, min(i + BATCH, n))) for i in range(0, n, BATCH)])

    def train_mode(self) -> None:
        """Train the top; BatchNorm keeps its (ImageNet) statistics: a site's few people would skew them."""
        self.top.train()
        for m in self.top.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def _identity_means(emb: torch.Tensor, labels: torch.Tensor, n: int) -> torch.Tensor:
    """(n, D) L2-normalised mean embedding of each identity. emb (N, D), labels (N,) in 0..n-1."""
    total = torch.zeros(n, emb.shape[1], device=emb.device).index_add_(0, labels, emb)
    return F.normalize(total, dim=1)


def _loss(emb: torch.Tensor, y: torch.Tensor, memory: torch.Tensor, neg: torch.Tensor, cfg: AdaptConfig
          ) -> tuple[torch.Tensor, dict[str, float]]:
    """Memory softmax + batch-hard triplet. emb (B, D) unit, y (B,) identities, memory (I, D), neg (I, I) bool
    certain negatives (every other identity with ``negatives='all'``)."""
    logits = emb @ memory.t() / cfg.temperature
    allowed = neg[y] | F.one_hot(y, memory.shape[0]).bool()
    ce = F.cross_entropy(logits.masked_fill(~allowed, float("-inf")), y)
    dist = torch.cdist(emb, emb).clamp_min(1e-12)
    same = y[:, None] == y[None, :]
    other = neg[y][:, y]
    has = other.any(1)
    if has.any():
        d_ap = dist.masked_fill(~same, 0.0).max(1).values[has]
        d_an = dist.masked_fill(~other, float("inf")).min(1).values[has]
        tri = F.relu(d_ap - d_an + cfg.triplet_margin).mean()
    else:
        tri = emb.sum() * 0.0
    return ce + tri, {"softmax": float(ce.detach()), "triplet": float(tri.detach())}


def adapt_store(db: str | Path, out: str | Path, base: str = DEFAULT_CHECKPOINT, cfg: AdaptConfig = AdaptConfig(),
                device: str = "auto", progress: bool = True, log=print) -> AdaptResult:
    """Fine-tune ``base`` (``default`` = the generic embedder, or a reid_models checkpoint) on the tracks of
    the store ``db`` and write the result to ``out`` as a reid_models checkpoint of the same network.

    Method: every track is a pseudo-identity; its crops are cut again from the source video through the
    stored boxes (:mod:`.crops`); tracks seen in one frame of one camera are certain negatives. Batches
    are P identities seen together x K crops (:class:`~.labels.CooccurrenceBatches`); the loss pulls a
    crop to its identity's centroid in a memory and away from the centroids of its negatives (softmax at
    ``temperature``), plus a batch-hard triplet whose negatives are the same certain negatives. With
    ``cfg.cluster`` the tracks are re-clustered before each epoch (:func:`~.labels.cluster_tracks`) so
    fragments of one person (e.g. on two cameras) become positives. Raises ValueError family errors
    (one line) on bad input: missing store, bad base checkpoint, a store without enough tracks.
    """
    t0, c0 = time.time(), time.process_time()
    dev = torch.device(resolve_device(device))
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder: pass a checkpoint file path such as {out / 'adapted.pt'}")
    base_path = None if str(base) == DEFAULT_CHECKPOINT else str(Path(base).expanduser().resolve())
    embedder = Embedder(EmbedderConfig(checkpoint=base_path), device="cpu")
    _, info = load_model(base_path or DEFAULT_CHECKPOINT, "cpu")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = _Network(embedder, cfg, dev)

    pending: list[np.ndarray] = []

    def consume(_row: int, crop: np.ndarray) -> None:
        pending.append(crop)
        if len(pending) >= BATCH:
            net.add(pending)
            pending.clear()

    TrackStore(StoreConfig(path=str(require_store(db))), None, None).close()  # migrates an older schema
    with StoreReader(db) as store:
        data = collect(store, cfg, consume=consume, progress=progress)
    if pending:
        net.add(pending)
    net.finish()
    for note in data.notes:
        log(f"warning: {note}")
    keep = torch.as_tensor(data.consumed, dtype=torch.long)
    net.cache = {k: v[keep] if len(v) else v for k, v in net.cache.items()}
    tracks = data.crops.track
    n_tracks = len(data.crops.track_ids)

    labels = np.arange(n_tracks)
    merges = 0
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses: list[float] = []
    step_losses: list[float] = []
    from tqdm import tqdm

    steps_per_epoch = max(1, len(tracks) // (min(cfg.batch_tracks, n_tracks) * cfg.crops_per_track))
    bar = tqdm(total=cfg.epochs * steps_per_epoch, desc="adapt", unit="step", dynamic_ncols=True, disable=not progress)
    for epoch in range(cfg.epochs):
        emb_all = net.embed_all()
        if cfg.cluster:
            track_mean = _identity_means(emb_all, torch.as_tensor(tracks, device=dev), n_tracks).cpu().numpy()
            clustering = cluster_tracks(track_mean, data.cooc, cfg.cluster_quantile)
            labels, merges = clustering.labels, clustering.merges
        crop_id = labels[tracks]
        n_ids = int(labels.max()) + 1
        if cfg.negatives == "cooccurring":
            neg_np = identity_negatives(labels, data.cooc)
        else:
            neg_np = ~np.eye(n_ids, dtype=bool)
        neg = torch.as_tensor(neg_np, device=dev)
        memory = _identity_means(emb_all, torch.as_tensor(crop_id, device=dev), n_ids)
        sampler = CooccurrenceBatches(crop_id, frame_groups(data.box_track, data.box_camera, data.box_frame, labels),
                                      cfg.batch_tracks, cfg.crops_per_track)
        net.train_mode()
        total, count = 0.0, 0
        for idx in sampler.epoch(rng)[:steps_per_epoch]:
            flipped = rng.random(len(idx)) < 0.5 if cfg.flip else None
            y = torch.as_tensor(crop_id[idx], device=dev)
            emb = net.embed(idx, flipped)
            loss, parts = _loss(emb, y, memory, neg, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                batch_mean = _identity_means(emb.detach(), y, n_ids)
                seen = torch.unique(y)
                memory[seen] = F.normalize(cfg.memory_momentum * memory[seen] + (1 - cfg.memory_momentum)
                                           * batch_mean[seen], dim=1)
            step_losses.append(float(loss.detach()))
            total, count = total + step_losses[-1], count + 1
            bar.update(1)
            bar.set_postfix_str(f"epoch {epoch + 1}/{cfg.epochs} loss {total / count:.3f} "
                                f"({parts['softmax']:.2f} + {parts['triplet']:.2f})", refresh=False)
        losses.append(total / max(count, 1))
    bar.close()

    net.model.eval()
    final = _identity_means(net.embed_all(), torch.as_tensor(tracks, device=dev), n_tracks).cpu().numpy()
    suggested = negative_threshold(final @ final.T, data.cooc, ASSOCIATION_QUANTILE)
    result = AdaptResult(str(out), embedder.embedder_id, n_tracks, len(tracks), int(labels.max()) + 1,
                         int(np.triu(data.cooc, 1).sum()), tuple(losses), tuple(step_losses), merges, time.time() - t0,
                         time.process_time() - c0, data.notes, suggested)
    extra = {k: v for k, v in info.items() if k in ("config", "dataset")}
    save_checkpoint(out, net.model.cpu(), model_name=str(info["model"]), model_kwargs=dict(info["model_kwargs"]),
                    num_classes=int(info["num_classes"]), input_size=tuple(info["input_size"]), **extra,
                    adapt={"store": str(Path(db).resolve()), "base": embedder.embedder_id, "settings": asdict(cfg),
                           "result": {k: v for k, v in asdict(result).items() if k not in ("notes", "step_losses")},
                           "host_cpus": os.cpu_count(), "association_threshold": suggested})
    return result
