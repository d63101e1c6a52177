"""Batches for the search: the training set split 50/50 by a seeded shuffle, one half for the
weights and one for the architecture, served as pairs of batches per step.

Batch order is a pure function of (seed, epoch), so a resumed run sees the same batches as an
uninterrupted one. The architecture half doubles as the validation set reported per epoch
(as in DARTS). On CUDA the 32-px datasets can live on the device (`data.pipeline`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

EPOCH_SEED_STRIDE = 1_000_003


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed * EPOCH_SEED_STRIDE + epoch * 7919 + stream)


@dataclass
class SearchBatches:
    spec: Any
    weight_set: Any
    arch_set: Any
    batch_size: int
    seed: int
    workers: int
    pin_memory: bool

    @property
    def steps_per_epoch(self) -> int:
        return min(len(self.weight_set), len(self.arch_set)) // self.batch_size or 1

    def _loader(self, dataset, shuffle: bool, generator: torch.Generator | None) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, generator=generator,
                          num_workers=self.workers, pin_memory=self.pin_memory, drop_last=False,
                          persistent_workers=False)

    def epoch(self, epoch: int) -> Iterator[tuple[Any, Any]]:
        """Pairs (weight batch, arch batch) for one epoch; as many as the smaller half allows."""
        a = self._loader(self.weight_set, True, epoch_generator(self.seed, epoch, 0))
        b = self._loader(self.arch_set, True, epoch_generator(self.seed, epoch, 1))
        for n, pair in enumerate(zip(a, b)):
            if n >= self.steps_per_epoch:
                break
            yield pair

    def validation(self) -> DataLoader:
        return self._loader(self.arch_set, False, None)


def search_batches(cfg: dict, seed: int, device: torch.device) -> SearchBatches:
    from itnas.data import build_dataset, get_spec, split_indices

    spec = get_spec(cfg["dataset"])
    dataset = build_dataset(spec.name, cfg["data_root"], "train", augment=True, cutout=0)
    n = len(dataset)
    limit = cfg["data"]["max_samples"]
    if limit is not None and limit < n:
        # A seeded subset for smoke runs; the split below then halves it.
        n = limit
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n].tolist()
        dataset = Subset(dataset, order)
    first, second = split_indices(n, cfg["data"]["train_portion"], seed)
    batch = cfg["data"]["batch_size"]
    return SearchBatches(spec=spec, weight_set=Subset(dataset, list(first)), arch_set=Subset(dataset, list(second)),
                         batch_size=batch, seed=seed, workers=cfg["data"]["workers"],
                         pin_memory=device.type == "cuda")
