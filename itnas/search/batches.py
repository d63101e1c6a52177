"""Batches for the search: the training set split 50/50 by a seeded shuffle, one half for the
weights and one for the architecture, served as pairs of batches per step.

Batch order and augmentation are pure functions of (seed, epoch, index) (see
`itnas.data.loaders`), so a resumed run sees the same batches as an uninterrupted one. The
architecture half doubles as the validation set reported per epoch, as in DARTS.

`runtime.pipeline` picks who serves them (`itnas.data.gpu_pipeline.use_device_pipeline`): the
DataLoader, or the device pipeline, which holds the 32-px training set on the device and crops
and flips there. Both use the same split; their augmentation draws differ (same distributions).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from itnas.data.gpu_pipeline import DeviceDataset, DeviceLoader, use_device_pipeline
from itnas.data.loaders import (
    KeyedSubset,
    build_dataset,
    make_loader,
    set_epoch,
    split_indices,
    subset,
)
from itnas.data.registry import get_spec
from itnas.errors import UserError
from itnas.runtime import Runtime

ARCH_STREAM = 7919  # decorrelates the two halves' shuffles


@dataclass
class SearchBatches:
    """The loaders are DataLoaders, or `DeviceLoader`s when `pipeline` is 'device'."""

    spec: Any
    weight_loader: Any
    arch_loader: Any
    val_loader: Any
    steps_per_epoch: int
    pipeline: str = "loader"

    def epoch(self, epoch: int) -> Iterator[tuple[Any, Any]]:
        """Pairs (weight batch, arch batch) for one epoch; as many as the smaller half allows."""
        _set_epoch(self.weight_loader, epoch)
        _set_epoch(self.arch_loader, epoch)
        # islice stops before drawing a batch past the last step (on the device, a wasted one).
        yield from itertools.islice(zip(self.weight_loader, self.arch_loader), self.steps_per_epoch)

    def validation(self) -> Any:
        """The architecture half in its stored order; never set to an epoch, so every pass sees
        the same images with the same augmentation."""
        return self.val_loader


def _set_epoch(loader: Any, epoch: int) -> None:
    if isinstance(loader, DataLoader):
        set_epoch(loader, epoch)
    else:
        loader.set_epoch(epoch)


def search_batches(cfg: dict, seed: int, rt: Runtime) -> SearchBatches:
    spec = get_spec(cfg["dataset"])
    # Decided first, so a refused 'device' costs no data reading.
    on_device = use_device_pipeline(rt.pipeline, spec, rt.device, key="runtime.pipeline")
    dataset = subset(build_dataset(spec.name, cfg["data_root"], "train", augment=True, cutout=0),
                     cfg["data"]["max_samples"], seed)
    weights_half, arch_half = split_indices(len(dataset), cfg["data"]["train_portion"], seed)
    batch = cfg["data"]["batch_size"]
    if min(len(weights_half), len(arch_half)) < batch:
        raise_small(cfg, len(weights_half), len(arch_half))
    steps = min(len(weights_half), len(arch_half)) // batch
    loader = (_device_loader if on_device else _data_loader)(cfg, spec.name, dataset, seed, rt)
    return SearchBatches(spec=spec, weight_loader=loader(weights_half, 0, True, batch),
                         arch_loader=loader(arch_half, ARCH_STREAM, True, batch),
                         val_loader=loader(arch_half, ARCH_STREAM, False, rt.eval_batch_size or batch),
                         steps_per_epoch=steps, pipeline="device" if on_device else "loader")


def _data_loader(cfg, name, dataset, seed, rt: Runtime) -> Callable[..., DataLoader]:
    """loader(indices, stream, shuffle, batch): a DataLoader over `indices` of `dataset`."""

    def loader(indices, stream: int, shuffle: bool, batch: int) -> DataLoader:
        return make_loader(dataset, batch, shuffle, seed + stream, rt.workers,
                           device_type=rt.device.type, indices=indices)

    return loader


def _device_loader(cfg, name, dataset, seed, rt: Runtime) -> Callable[..., Any]:
    """loader(indices, stream, shuffle, batch): a `DeviceLoader` over the same images, held on
    the run's device."""
    data = DeviceDataset.from_name(name, cfg["data_root"], "train", rt.device)
    # The halves index `dataset`, which `data.max_samples` may have cut to a subset of the
    # split; the device copy holds the whole split, so map them to the split's indices.
    parent = np.asarray(dataset.indices if isinstance(dataset, KeyedSubset) else range(len(dataset)))

    def loader(indices, stream: int, shuffle: bool, batch: int) -> DeviceLoader:
        # Crop and flip, no cutout (DARTS's search augmentation, as the DataLoader path has it);
        # training streams drop the partial batch, which the steps per epoch never reach anyway.
        return DeviceLoader(data, batch, seed + stream, shuffle=shuffle, augment=True, cutout=0,
                            drop_last=shuffle, indices=parent[np.asarray(indices, dtype=np.int64)])

    return loader


def raise_small(cfg: dict, a: int, b: int) -> None:
    raise UserError(f"key 'data.batch_size': {cfg['data']['batch_size']} is larger than a half of the "
                    f"training set ({a} / {b} images); lower it or raise data.max_samples")
