"""What a training run trains on: the data (`TrainData`), each epoch's batches for every process
(`epoch_batches`, a pure function of seed, epoch and process), and who serves them (a DataLoader,
or the GPU-resident pipeline).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from itnas.data.gpu_pipeline import DeviceDataset, DeviceLoader, use_device_pipeline
from itnas.data.loaders import KeyedSubset, build_dataset, mix_seed, seed_worker, subset
from itnas.data.registry import get_spec
from itnas.runtime import Runtime
from itnas.train.distributed import BatchPlan


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A well-mixed seed per (run seed, epoch, process)."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)


def epoch_batches(n: int, plan: BatchPlan, seed: int, epoch: int, rank: int) -> list[list[list[int]]]:
    """This process's micro-batches for every step of one epoch: a shuffle of all `n` indices that
    depends only on (seed, epoch), cut into global batches (the last partial one dropped), each
    split into `world_size` contiguous shares and each share into `accumulation` micro-batches."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch))).tolist()
    steps = n // plan.global_batch
    out = []
    for s in range(steps):
        start = s * plan.global_batch + rank * plan.per_process
        share = order[start:start + plan.per_process]
        out.append([share[k * plan.micro_batch:(k + 1) * plan.micro_batch] for k in range(plan.accumulation)])
    return out


@dataclass
class TrainData:
    """What the loop trains on and evaluates against (the test set, or a held-out split).

    `keyed` datasets (those of `itnas.data`) take `(index, sample_seed)` keys and draw their
    augmentation from the sample seed; plain datasets (tests) take indices. `device_train`, when
    set, is a `DeviceDataset` holding the training images on the GPU, `device_indices` the part
    of it that `train` stands for.
    """

    train: Dataset
    evaluation: Dataset
    num_classes: int
    protocol: str
    in_channels: int
    image_size: int
    dataset: str
    standin: bool = False
    benchmark: str | None = None
    keyed: bool = False
    device_train: Any = None
    device_indices: list[int] | None = None
    cutout: int = 0


def make_data(spec: Any, cfg: dict, rt: Runtime, train: Dataset, train_indices: list[int] | None,
              evaluation: Dataset) -> TrainData:
    """TrainData over `train_indices` of `train`, the augmented training set (None: all of it)."""
    if train_indices is not None:
        train = KeyedSubset(train, train_indices)
    data = TrainData(train, evaluation, spec.num_classes, spec.protocol, spec.channels, spec.image_size,
                     spec.name, bool(spec.standin), spec.benchmark, keyed=True, cutout=cfg["data"]["cutout"])
    if use_device_pipeline(rt.pipeline, spec, rt.device, key="runtime.pipeline"):
        data.device_train = DeviceDataset.from_name(spec.name, cfg["data_root"], "train", rt.device)
        data.device_indices = train_indices
    return data


def load_data(dataset: str, cfg: dict, rt: Runtime, seed: int = 0) -> TrainData:
    """The training set (at most `data.max_train_samples`, a seeded choice) and the test set (its
    first `data.max_test_samples`) of `dataset`, with the protocol's augmentation on the training set."""
    spec = get_spec(dataset)
    d = cfg["data"]
    train = build_dataset(spec.name, cfg["data_root"], "train", augment=True, cutout=d["cutout"])
    chosen = getattr(subset(train, d["max_train_samples"], seed), "indices", None)
    test = limit(build_dataset(spec.name, cfg["data_root"], "test", augment=False), d["max_test_samples"])
    return make_data(spec, cfg, rt, train, chosen, test)


def limit(dataset: Dataset, n: int | None) -> Dataset:
    """The first `n` items (smoke runs); the whole set when `n` is None or larger."""
    if n is None or n >= len(dataset):
        return dataset
    return Subset(dataset, range(n))


class _EpochBatchSampler:
    """This process's micro-batches of one epoch (`epoch_batches`), as sampler keys."""

    def __init__(self, n: int, plan: BatchPlan, seed: int, rank: int, keyed: bool):
        self.n, self.plan, self.seed, self.rank, self.keyed = n, plan, seed, rank, keyed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        for step in epoch_batches(self.n, self.plan, self.seed, self.epoch, self.rank):
            for micro in step:
                # The sample seed is the one `itnas.data`'s EpochSampler would give: augmentation
                # is a function of (seed, epoch, index) only, whichever process reads the image.
                yield [(i, mix_seed(self.seed, self.epoch, i)) for i in micro] if self.keyed else micro

    def __len__(self) -> int:
        return (self.n // self.plan.global_batch) * self.plan.accumulation


class LoaderBatches:
    """Training micro-batches through a DataLoader; workers persist across epochs."""

    def __init__(self, data: TrainData, plan: BatchPlan, seed: int, rank: int, workers: int,
                 device: torch.device):
        self.steps = len(data.train) // plan.global_batch
        self.sampler = _EpochBatchSampler(len(data.train), plan, seed, rank, data.keyed)
        self.loader = data_loader(data.train, self.sampler, workers, device, seed)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.set_epoch(epoch)
        return iter(self.loader)


class DeviceBatches:
    """Training micro-batches from a GPU-resident dataset: every process draws the whole global
    batch (cheap on the device, and identical everywhere) and keeps its share."""

    def __init__(self, data: TrainData, plan: BatchPlan, seed: int, rank: int):
        self.plan, self.rank = plan, rank
        self.steps = len(data.train) // plan.global_batch
        self.loader = DeviceLoader(data.device_train, plan.global_batch, seed, shuffle=True, augment=True,
                                   cutout=data.cutout, drop_last=True, indices=data.device_indices)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.loader.set_epoch(epoch)
        plan = self.plan
        for x, y in self.loader:
            lo = self.rank * plan.per_process
            for k in range(plan.accumulation):
                a, b = lo + k * plan.micro_batch, lo + (k + 1) * plan.micro_batch
                yield x[a:b], y[a:b]


def data_loader(dataset: Dataset, batch_sampler: Any, workers: int, device: torch.device, seed: int) -> DataLoader:
    extra: dict[str, Any] = {}
    if workers > 0:
        extra = {"persistent_workers": True, "worker_init_fn": seed_worker, "prefetch_factor": 4}
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers,
                      pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed), **extra)
