"""train/batches.py: each epoch's batches are a pure function of (seed, epoch, process), cut into
global batches, per-process shares and micro-batches; the loader serves exactly those."""

from __future__ import annotations

import torch
from torch.utils.data import Subset, TensorDataset

from itnas.data.loaders import mix_seed
from itnas.train.batches import (
    LoaderBatches,
    TrainData,
    _EpochBatchSampler,
    epoch_batches,
    epoch_seed,
    limit,
)
from itnas.train.distributed import plan_batches

CPU = torch.device("cpu")


def test_epoch_seeds_are_fixed_per_seed_epoch_and_process_and_differ_between_them():
    seeds = {epoch_seed(s, e, r) for s in (0, 1) for e in (0, 1) for r in (0, 1)}
    assert len(seeds) == 8 and all(0 <= s < 2**63 for s in seeds)
    assert epoch_seed(3, 4, 1) == epoch_seed(3, 4, 1)


def test_an_epoch_is_cut_into_global_batches_shares_and_micro_batches():
    plan = plan_batches(8, 2, 2)  # two processes, 4 images each per step, in 2 micro-batches of 2
    ranks = [epoch_batches(21, plan, seed=5, epoch=0, rank=r) for r in (0, 1)]
    assert all(len(steps) == 2 and all(len(step) == 2 and all(len(m) == 2 for m in step) for step in steps)
               for steps in ranks)  # 21 // 8 = 2 steps: the partial last batch is dropped
    seen = [i for step in zip(*ranks, strict=True) for share in step for micro in share for i in micro]
    assert len(seen) == len(set(seen)) == 16 and set(seen) <= set(range(21))
    # Each global batch is one run of the epoch's shuffle, rank 0's share before rank 1's.
    order = torch.randperm(21, generator=torch.Generator().manual_seed(epoch_seed(5, 0))).tolist()
    assert seen == order[:16]


def test_the_shuffle_depends_on_the_seed_and_epoch_only():
    one, two = plan_batches(8, 1, None), plan_batches(8, 2, None)
    assert epoch_batches(32, one, 5, 1, 0) == epoch_batches(32, one, 5, 1, 0)
    assert epoch_batches(32, one, 5, 1, 0) != epoch_batches(32, one, 5, 2, 0) != epoch_batches(32, one, 6, 1, 0)
    # Two processes together take the same images per step as one process alone.
    alone = [sorted(step[0]) for step in epoch_batches(32, one, 5, 1, 0)]
    shared = [sorted(a[0] + b[0]) for a, b in zip(epoch_batches(32, two, 5, 1, 0), epoch_batches(32, two, 5, 1, 1),
                                                  strict=True)]
    assert shared == alone


def test_limit_keeps_the_first_items_or_the_whole_set():
    data = TensorDataset(torch.arange(10))
    assert limit(data, None) is data and limit(data, 10) is data and limit(data, 99) is data
    cut = limit(data, 3)
    assert isinstance(cut, Subset) and [int(cut[i][0]) for i in range(len(cut))] == [0, 1, 2]


def test_keyed_datasets_get_each_images_augmentation_seed():
    sampler = _EpochBatchSampler(8, plan_batches(4, 1, 2), seed=7, rank=0, keyed=True)
    sampler.set_epoch(3)
    keys = list(sampler)
    assert len(keys) == len(sampler) == 4  # 2 steps of 2 micro-batches
    assert all(s == mix_seed(7, 3, i) for micro in keys for i, s in micro)


def test_the_loader_serves_this_processs_micro_batches_of_the_epoch():
    images, labels = torch.arange(12.0).view(12, 1), torch.arange(12)
    data = TrainData(TensorDataset(images, labels), TensorDataset(images, labels), 12, "cifar", 1, 1, "tensors")
    plan = plan_batches(4, 2, 1)
    batches = LoaderBatches(data, plan, seed=3, rank=1, workers=0, device=CPU)
    assert batches.steps == 3 and not batches.loader.pin_memory
    served = [y.tolist() for _, y in batches.epoch(2)]
    assert served == [micro for step in epoch_batches(12, plan, 3, 2, 1) for micro in step]
