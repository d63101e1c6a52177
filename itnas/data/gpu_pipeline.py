"""A device-resident input pipeline for the 32-px datasets (CIFAR protocol).

The whole uint8 split lives on the device as one tensor (CIFAR-10 train: 150 MB; SVHN
train+extra: 1.9 GB) and each batch is cropped, flipped, normalised and cut out there with
batched tensor ops, so no worker processes, PIL or host-to-device copies stand between the
GPU and its next batch. It also runs on the CPU (tests do).

Determinism: the order is the same hash permutation of (seed, epoch) as `EpochSampler`, and
the augmentation draws come from one generator seeded by (seed, epoch), consumed batch by
batch; so an epoch is a pure function of (seed, epoch, batch size). The draws differ from the
per-sample draws of the standard loader (same distributions, different numbers); without
augmentation both give bit-identical tensors, on any device (normalisation is a table look-up).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from itnas.data.loaders import (
    _hash_permutation,
    _normalise,
    build_dataset,
    mix_seed,
    normalisation_table,
)
from itnas.data.registry import DatasetSpec, get_spec
from itnas.errors import UserError


def use_device_pipeline(pipeline: str, spec: DatasetSpec, device: torch.device,
                        key: str = "pipeline") -> bool:
    """Whether a run's training batches come from this pipeline, by the setting `pipeline`
    (named `key` in errors): 'device' insists, and is refused for a dataset it cannot serve;
    'auto' takes it on CUDA for 32-px array datasets under the CIFAR protocol only, so CPU runs
    keep the DataLoader and their results. Shared by the search and the training."""
    fits = spec.protocol == "cifar" and spec.storage == "arrays"
    if pipeline == "device" and not fits:
        raise UserError(f"key '{key}': 'device' needs a 32-px array dataset under the CIFAR protocol; "
                        f"{spec.name} uses the {spec.protocol} protocol (use auto or loader)")
    return pipeline == "device" or (pipeline == "auto" and fits and device.type == "cuda")


class DeviceDataset:
    """One split as uint8 NCHW images and int64 labels on `device`, with its normalisation."""

    def __init__(self, images: np.ndarray | torch.Tensor, labels, mean: Sequence[float],
                 std: Sequence[float], device: str | torch.device = "cpu",
                 spec: DatasetSpec | None = None, hflip: bool = True):
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise UserError(f"DeviceDataset needs uint8 NHWC images, got {images.dtype} "
                            f"{tuple(images.shape)}")
        self.device = torch.device(device)
        self.images = images.to(self.device).permute(0, 3, 1, 2).contiguous()
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64).to(self.device)
        self.table = normalisation_table(mean, std).to(self.device)
        self.spec, self.hflip = spec, hflip

    @classmethod
    def from_name(cls, name: str, root: str | os.PathLike, split: str,
                  device: str | torch.device = "cpu") -> DeviceDataset:
        """Load a prepared 32-px dataset's split (as `build_dataset` resolves it)."""
        spec = get_spec(name)
        if spec.protocol != "cifar" or spec.storage != "arrays":
            raise UserError(f"the GPU pipeline implements the CIFAR protocol on array datasets; "
                            f"{name} uses the {spec.protocol} protocol")
        dataset = build_dataset(name, root, split, augment=False)
        images, labels = dataset.arrays()
        return cls(images, labels, spec.mean, spec.std, device, spec, spec.hflip)

    def __len__(self) -> int:
        return self.images.shape[0]


class DeviceLoader:
    """Batches of (normalised float NCHW, labels) from a `DeviceDataset`, augmented on device.

    Training augmentation is the CIFAR protocol: pad-`padding` random crop (zero padding),
    horizontal flip, normalise, then cutout of `cutout` pixels. `indices` restricts it to
    part of the dataset (the search's halves). Call `set_epoch(e)` before each epoch.
    """

    def __init__(self, data: DeviceDataset, batch_size: int, seed: int, *, shuffle: bool = True,
                 augment: bool = True, cutout: int = 0, drop_last: bool = False,
                 indices: Sequence[int] | None = None, padding: int = 4):
        self.data, self.batch_size, self.seed = data, int(batch_size), int(seed)
        self.shuffle, self.augment, self.cutout = shuffle, augment, int(cutout)
        self.drop_last, self.padding = drop_last, int(padding)
        self.indices = np.arange(len(data)) if indices is None else np.asarray(indices)
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """`start` skips that many samples of the epoch (resuming inside an epoch)."""
        self.epoch, self.start = int(epoch), int(start)

    def __len__(self) -> int:
        n = len(self.indices) - self.start
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _order(self) -> torch.Tensor:
        order = self.indices
        if self.shuffle:
            order = order[_hash_permutation(len(order), self.seed, self.epoch)]
        return torch.as_tensor(order[self.start:].copy(), dtype=torch.int64).to(self.data.device)

    def _crop_flip(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        b, c, h, w = x.shape
        p, dev = self.padding, x.device
        padded = torch.nn.functional.pad(x, (p, p, p, p))
        offsets = torch.randint(2 * p + 1, (b, 2), generator=g, device=dev)
        rows = offsets[:, 0:1] + torch.arange(h, device=dev)
        cols = offsets[:, 1:2] + torch.arange(w, device=dev)
        # One gather for the whole batch: index (sample, channel, row, column).
        x = padded[torch.arange(b, device=dev)[:, None, None, None],
                   torch.arange(c, device=dev)[None, :, None, None],
                   rows[:, None, :, None], cols[:, None, None, :]]
        flip = torch.rand(b, generator=g, device=dev) < 0.5
        if self.data.hflip:
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x

    def _cutout(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        dev, half = x.device, self.cutout // 2
        cy = torch.randint(h, (b, 1), generator=g, device=dev)
        cx = torch.randint(w, (b, 1), generator=g, device=dev)
        ys, xs = torch.arange(h, device=dev), torch.arange(w, device=dev)
        # Same square as Cutout's clipped slice [c - half, c + half) in each dimension.
        in_rows = (ys >= cy - half) & (ys < cy + half)
        in_cols = (xs >= cx - half) & (xs < cx + half)
        return x.masked_fill_((in_rows[:, :, None] & in_cols[:, None, :])[:, None], 0.0)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order()
        g = torch.Generator(device=self.data.device)
        g.manual_seed(mix_seed(self.seed, self.epoch, 0xA06))
        n = len(order)
        stop = n - n % self.batch_size if self.drop_last else n
        for i in range(0, stop, self.batch_size):
            idx = order[i:i + self.batch_size]
            x = self.data.images.index_select(0, idx)
            if self.augment:
                x = self._crop_flip(x, g)
            x = _normalise(x, self.data.table)
            if self.augment and self.cutout > 0:
                x = self._cutout(x, g)
            yield x, self.data.labels.index_select(0, idx)
