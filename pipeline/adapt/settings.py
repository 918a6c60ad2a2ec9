"""Settings of site adaptation (``python -m pipeline adapt``): the one home of their defaults and ranges."""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import checks as c

NEGATIVES = ("cooccurring", "all")


@dataclass(frozen=True)
class AdaptConfig:
    """How ``adapt`` turns a store's tracks into training data and trains on them.

    Crops: every ``box_stride``-th box of a track, at most ``max_crops_per_track`` (spread over the track),
    boxes at least ``min_height`` px tall with confidence >= ``min_confidence`` and clear of the frame
    edges; tracks with fewer than ``min_crops_per_track`` crops are left out.
    Training: ``epochs`` passes of P x K batches (``batch_tracks`` identities x ``crops_per_track``
    crops), Adam at ``lr`` (``weight_decay``) on the network's top (for the generic embedder its
    MobileNetV2 blocks from ``train_from`` on; the trunk below is frozen and run once per crop);
    loss = identity softmax against a memory of identity centroids (``temperature``, centroids moved
    by ``memory_momentum``) + batch-hard triplet (``triplet_margin`` on unit vectors). ``negatives``:
    ``cooccurring`` contrasts an identity only with identities seen in the same frame (certainly other
    people), ``all`` with every other identity (cluster-contrast style). ``cluster``: before each epoch
    merge tracks into identities (mutual nearest neighbours more alike than ``cluster_quantile`` of the
    co-occurring pairs, never co-occurring ones). ``flip``: also train on mirrored crops.
    """

    epochs: int = 6
    box_stride: int = 3
    max_crops_per_track: int = 40
    min_crops_per_track: int = 4
    min_height: float = 40.0
    min_confidence: float = 0.3
    batch_tracks: int = 16
    crops_per_track: int = 4
    lr: float = 1e-4
    weight_decay: float = 5e-4
    temperature: float = 0.05
    memory_momentum: float = 0.2
    triplet_margin: float = 0.3
    negatives: str = "cooccurring"
    cluster: bool = False
    cluster_quantile: float = 0.99
    train_from: int = 14
    flip: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        o = "AdaptConfig"
        for name in ("epochs", "box_stride", "max_crops_per_track", "crops_per_track", "train_from"):
            c.integer(o, name, getattr(self, name), lo=1)
        c.integer(o, "min_crops_per_track", self.min_crops_per_track, lo=2)
        c.integer(o, "batch_tracks", self.batch_tracks, lo=2)
        c.integer(o, "seed", self.seed, lo=0)
        c.number(o, "min_height", self.min_height, lo=1)
        c.number(o, "min_confidence", self.min_confidence, lo=0, hi=1)
        c.number(o, "lr", self.lr, lo=0, lo_open=True)
        c.number(o, "weight_decay", self.weight_decay, lo=0)
        c.number(o, "temperature", self.temperature, lo=0, lo_open=True)
        c.number(o, "memory_momentum", self.memory_momentum, lo=0, hi=1)
        c.number(o, "triplet_margin", self.triplet_margin, lo=0)
        c.number(o, "cluster_quantile", self.cluster_quantile, lo=0, hi=1)
        c.boolean(o, "cluster", self.cluster)
        c.boolean(o, "flip", self.flip)
        if self.negatives not in NEGATIVES:
            c.fail(o, "negatives", f"expected one of {', '.join(NEGATIVES)}, got {c.show(self.negatives)}")
