"""RandomIdentitySampler: every batch is P identities x K images, deterministically per seed."""
from __future__ import annotations

from collections import Counter

import pytest

from reid_models.sampler import RandomIdentitySampler

# 7 ids with 1..9 images each (id 3 has fewer than K), two cameras.
ITEMS = [(f"{pid:04d}_c{i % 2 + 1}_{i}.jpg", pid, i % 2) for pid in range(7) for i in range([5, 9, 4, 1, 6, 8, 4][pid])]


def batches(sampler: RandomIdentitySampler) -> list[list[int]]:
    order = list(sampler)
    size = sampler.batch_size
    assert len(order) % size == 0
    return [order[i : i + size] for i in range(0, len(order), size)]


@pytest.mark.parametrize("p,k", [(2, 4), (3, 2), (7, 1)])
def test_every_batch_is_p_ids_times_k_instances(p, k):
    sampler = RandomIdentitySampler(ITEMS, batch_size=p * k, num_instances=k, seed=1)
    expected_len = len(sampler)
    chunks = batches(sampler)
    assert len(chunks) * p * k == expected_len > 0
    for chunk in chunks:
        counts = Counter(ITEMS[i][1] for i in chunk)
        assert len(counts) == p and set(counts.values()) == {k}
        for pid in counts:  # distinct images whenever the id has at least K of them
            indices = [i for i in chunk if ITEMS[i][1] == pid]
            if sum(item[1] == pid for item in ITEMS) >= k:
                assert len(set(indices)) == k


def test_deterministic_per_seed_and_epoch():
    make = lambda seed: RandomIdentitySampler(ITEMS, batch_size=8, num_instances=4, seed=seed)  # noqa: E731
    first, again = make(0), make(0)
    epoch0, epoch1 = list(first), list(first)
    assert epoch0 == list(again) and epoch1 == list(again)
    assert epoch0 != epoch1  # a new order each epoch
    assert list(make(5)) != epoch0
    first.set_epoch(0)
    assert list(first) == epoch0


def test_ids_with_few_images_are_sampled_with_replacement():
    # P = all 7 ids, K = 2: id 3 (one image) fills its group with a copy; one batch per epoch
    sampler = RandomIdentitySampler(ITEMS, batch_size=14, num_instances=2, seed=0)
    order = list(sampler)
    assert len(order) == len(sampler) == 14
    only_image = ITEMS.index(next(item for item in ITEMS if item[1] == 3))
    assert [i for i in order if ITEMS[i][1] == 3] == [only_image, only_image]


def test_rejects_bad_batch_shapes():
    with pytest.raises(ValueError, match="multiple of num_instances"):
        RandomIdentitySampler(ITEMS, batch_size=10, num_instances=4)
    with pytest.raises(ValueError, match="needs at least P=8 identities, the data has 7"):
        RandomIdentitySampler(ITEMS, batch_size=16, num_instances=2)
