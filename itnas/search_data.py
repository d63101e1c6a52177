"""Batches for the search: the training set split 50/50 by a seeded shuffle, one half for the
weights and one for the architecture, served as pairs of batches per step.

Batch order and augmentation are pure functions of (seed, epoch, index) (see
`itnas.data.loaders`), so a resumed run sees the same batches as an uninterrupted one. The
architecture half doubles as the validation set reported per epoch, as in DARTS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader

ARCH_STREAM = 7919  # decorrelates the two halves' shuffles


@dataclass
class SearchBatches:
    spec: Any
    weight_loader: DataLoader
    arch_loader: DataLoader
    val_loader: DataLoader
    steps_per_epoch: int

    def epoch(self, epoch: int) -> Iterator[tuple[Any, Any]]:
        """Pairs (weight batch, arch batch) for one epoch; as many as the smaller half allows."""
        from itnas.data.loaders import set_epoch

        set_epoch(self.weight_loader, epoch)
        set_epoch(self.arch_loader, epoch)
        for n, pair in enumerate(zip(self.weight_loader, self.arch_loader)):
            if n >= self.steps_per_epoch:
                break
            yield pair

    def validation(self) -> DataLoader:
        return self.val_loader


def search_batches(cfg: dict, seed: int, device: torch.device) -> SearchBatches:
    from itnas.data import build_dataset, get_spec, split_indices
    from itnas.data.loaders import make_loader, subset

    spec = get_spec(cfg["dataset"])
    dataset = subset(build_dataset(spec.name, cfg["data_root"], "train", augment=True, cutout=0),
                     cfg["data"]["max_samples"], seed)
    weights_half, arch_half = split_indices(len(dataset), cfg["data"]["train_portion"], seed)
    batch, workers = cfg["data"]["batch_size"], cfg["data"]["workers"]
    if min(len(weights_half), len(arch_half)) < batch:
        raise_small(cfg, len(weights_half), len(arch_half))

    def loader(indices, stream: int, shuffle: bool) -> DataLoader:
        return make_loader(dataset, batch, shuffle, seed + stream, workers, device_type=device.type,
                           indices=indices)

    steps = min(len(weights_half), len(arch_half)) // batch
    return SearchBatches(spec=spec, weight_loader=loader(weights_half, 0, True),
                         arch_loader=loader(arch_half, ARCH_STREAM, True),
                         val_loader=loader(arch_half, ARCH_STREAM, False), steps_per_epoch=steps)


def raise_small(cfg: dict, a: int, b: int) -> None:
    from itnas.errors import UserError

    raise UserError(f"key 'data.batch_size': {cfg['data']['batch_size']} is larger than a half of the "
                    f"training set ({a} / {b} images); lower it or raise data.max_samples")
