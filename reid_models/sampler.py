"""P x K identity sampler for metric-learning batches (Hermans et al. 2017, "In Defense of the
Triplet Loss"): every batch holds P identities with K images each.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class RandomIdentitySampler(Sampler[int]):
    """Yield dataset indices so that each consecutive ``batch_size`` chunk is P ids x K images.

    items: the train list of ``(path, pid, camid)``. batch_size = P * K, num_instances = K.
    Per epoch: each id's images are shuffled and cut into groups of K (an id with fewer than K
    images is drawn with replacement up to K; leftovers short of K are dropped); then P ids with
    groups left are drawn at random, one group each, until fewer than P ids have groups left.
    Deterministic for a given ``seed`` and epoch; the epoch advances after each full pass, or is
    set with ``set_epoch``. ``len`` is the exact number of indices of the coming epoch.
    """

    def __init__(self, items: Sequence[tuple[str, int, int]], batch_size: int, num_instances: int, seed: int = 0):
        if num_instances < 1 or batch_size < num_instances or batch_size % num_instances:
            raise ValueError(
                f"batch_size ({batch_size}) must be a positive multiple of num_instances ({num_instances})"
            )
        self.batch_size = batch_size
        self.num_instances = num_instances
        self.num_pids_per_batch = batch_size // num_instances
        self.seed = seed
        self.epoch = 0
        index_by_pid: dict[int, list[int]] = defaultdict(list)
        for index, (_, pid, _) in enumerate(items):
            index_by_pid[pid].append(index)
        self.index_by_pid = {pid: np.asarray(indices) for pid, indices in sorted(index_by_pid.items())}
        if len(self.index_by_pid) < self.num_pids_per_batch:
            raise ValueError(
                f"P x K sampling needs at least P={self.num_pids_per_batch} identities, the data has "
                f"{len(self.index_by_pid)}; lower batch_size or raise num_instances"
            )
        self._cache: tuple[int, list[int]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose (deterministic) order the next iteration yields."""
        self.epoch = epoch

    def _epoch_indices(self, epoch: int) -> list[int]:
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        k = self.num_instances
        groups: dict[int, list[np.ndarray]] = {}
        for pid, indices in self.index_by_pid.items():
            if len(indices) < k:
                chosen = rng.choice(indices, size=k, replace=True)
            else:
                chosen = rng.permutation(indices)
            groups[pid] = [chosen[i : i + k] for i in range(0, len(chosen) - k + 1, k)]
        order: list[int] = []
        available = [pid for pid, pid_groups in groups.items() if pid_groups]
        while len(available) >= self.num_pids_per_batch:
            for pid in rng.choice(available, size=self.num_pids_per_batch, replace=False):
                order.extend(int(i) for i in groups[int(pid)].pop())
            available = [pid for pid in available if groups[pid]]
        self._cache = (epoch, order)
        return order

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch
        self.epoch += 1
        return iter(self._epoch_indices(epoch))

    def __len__(self) -> int:
        return len(self._epoch_indices(self.epoch))
