"""Datasets, transforms and data loaders shared by the search and the evaluation training.

Reproducibility: every random choice is a pure function of (seed, epoch, sample index).
- Order: `EpochSampler` permutes the indices by a hash of (seed, epoch), so epoch e has the
  same order in a fresh process as in the run that was interrupted; a trainer resuming at
  epoch e calls `set_epoch(e)` and gets exactly the batches it would have had.
- Augmentation: the sampler hands each dataset access a key `(index, sample_seed)` with
  `sample_seed = mix_seed(seed, epoch, index)`; the dataset seeds a private generator with
  it. Which worker process serves a sample, how many workers there are and what ran
  before cannot change its crop, flip or cutout, and the trainer's global torch RNG is
  never touched. Samplers run in the main process, so this holds with persistent workers,
  whose copy of the dataset never sees `set_epoch`.
Two runs with the same seed therefore see identical batches, with any number of workers.
"""

from __future__ import annotations

import bisect
import math
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from itnas.data.manifest import check_present
from itnas.data.registry import DatasetSpec, get_spec
from itnas.errors import UserError

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _splitmix64(x: int) -> int:
    x = (x + _GOLDEN) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mix_seed(*values: int) -> int:
    """A 63-bit seed from integers; nearby inputs give unrelated seeds (splitmix64 chain)."""
    h = 0
    for v in values:
        h = _splitmix64(h ^ (int(v) & _MASK64))
    return h >> 1


def _hash_permutation(n: int, *key: int) -> np.ndarray:
    """A permutation of range(n) that depends only on `key`: indices sorted by a hash.

    Plain uint64 arithmetic, so it is the same on every platform and library version.
    """
    with np.errstate(over="ignore"):
        x = np.arange(n, dtype=np.uint64) * np.uint64(_GOLDEN) + np.uint64(mix_seed(*key))
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return np.argsort(x, kind="stable")


def split_indices(n: int, portion: float, seed: int) -> tuple[list[int], list[int]]:
    """Shuffle range(n) by `seed` and cut it: the first `floor(portion * n)` indices, the rest.

    The search uses portion 0.5: one half trains the weights, the other the architecture.
    """
    if not 0.0 <= portion <= 1.0:
        raise UserError(f"split portion must be in [0, 1], got {portion}")
    perm = _hash_permutation(n, seed, 0x5B117).tolist()
    cut = int(math.floor(portion * n))
    return perm[:cut], perm[cut:]


# ---------------------------------------------------------------------------------------
# transforms

def normalisation_table(mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(C, 256) float32: the normalised value of every uint8 level in every channel."""
    levels = torch.arange(256, dtype=torch.float64) / 255
    mean64 = torch.tensor(mean, dtype=torch.float64)[:, None]
    std64 = torch.tensor(std, dtype=torch.float64)[:, None]
    return ((levels - mean64) / std64).float()


def _normalise(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """uint8 (..., C, H, W) -> normalised float32 by table look-up.

    Arithmetic would not do: CUDA divides by a scalar as a multiplication by its reciprocal,
    so (x / 255 - mean) / std differs in the last bit between CPU and GPU. A look-up gives
    the same floats on every device, which lets the GPU pipeline match this loader exactly.
    """
    c = x.shape[-3]
    offsets = torch.arange(0, 256 * c, 256, device=x.device).view(c, 1, 1)
    return table.view(-1).take(x.long() + offsets)


class Cutout:
    """DeVries & Taylor cutout as DARTS applies it: zero a `length` square (clipped at the
    border) centred on a uniformly drawn pixel of the normalised CHW tensor."""

    def __init__(self, length: int):
        self.length = int(length)

    def __call__(self, img: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.length <= 0:
            return img
        h, w = img.shape[-2:]
        cy = int(torch.randint(h, (1,), generator=generator))
        cx = int(torch.randint(w, (1,), generator=generator))
        half = self.length // 2
        img[..., max(0, cy - half):min(h, cy + half), max(0, cx - half):min(w, cx + half)] = 0
        return img

    def __repr__(self) -> str:
        return f"Cutout(length={self.length})"


class CifarTransform:
    """CIFAR protocol on uint8 HWC arrays: pad-4 random crop, horizontal flip, normalise,
    cutout (training); normalise only (evaluation). Pure torch, no PIL round trip."""

    def __init__(self, spec: DatasetSpec, augment: bool, cutout: int = 0, padding: int = 4):
        self.augment, self.padding, self.hflip = augment, padding, spec.hflip
        self.table = normalisation_table(spec.mean, spec.std)
        self.cutout = Cutout(cutout) if augment and cutout > 0 else None

    def __call__(self, img: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        # A copy: memory-mapped arrays are read-only, and the sample is tiny.
        x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)
        if self.augment:
            p = self.padding
            h, w = x.shape[1:]
            # Zero padding = black pixels before normalisation, as torchvision's RandomCrop.
            x = torch.nn.functional.pad(x, (p, p, p, p))
            oy, ox = torch.randint(2 * p + 1, (2,), generator=generator).tolist()
            x = x[:, oy:oy + h, ox:ox + w]
            flip = bool(torch.rand((), generator=generator) < 0.5)
            if self.hflip and flip:
                x = x.flip(2)
        x = _normalise(x, self.table)
        if self.cutout is not None:
            x = self.cutout(x, generator)
        return x


class ImagenetTransform:
    """ImageNet protocol as in DARTS: RandomResizedCrop, flip, ColorJitter(0.4, 0.4, 0.4, 0.2),
    normalise (training); resize to size*256/224 and centre crop (evaluation).

    torchvision draws from the global torch RNG, so each call runs inside `fork_rng` seeded
    with the sample's seed: reproducible per sample, and the caller's RNG is left untouched.
    """

    def __init__(self, spec: DatasetSpec, augment: bool, cutout: int = 0):
        from torchvision import transforms as T

        size = spec.image_size
        norm = [T.ToTensor(), T.Normalize(spec.mean, spec.std)]
        if augment:
            ops = [T.RandomResizedCrop(size, scale=spec.crop_scale)]
            if spec.hflip:
                ops.append(T.RandomHorizontalFlip())
            ops.append(T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2))
        else:
            ops = [T.Resize(round(size * 256 / 224)), T.CenterCrop(size)]
        self.pipeline = T.Compose(ops + norm)
        self.augment = augment
        self.cutout = Cutout(cutout) if augment and cutout > 0 else None

    def __call__(self, img, generator: torch.Generator) -> torch.Tensor:
        from PIL import Image

        if isinstance(img, np.ndarray):
            img = Image.fromarray(img)
        if not self.augment:
            return self.pipeline(img)
        seed = int(torch.randint(2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            x = self.pipeline(img)
        if self.cutout is not None:
            x = self.cutout(x, generator)
        return x


def build_transform(spec: DatasetSpec, augment: bool, cutout: int = 0):
    if spec.protocol == "cifar":
        return CifarTransform(spec, augment, cutout)
    return ImagenetTransform(spec, augment, cutout)


# ---------------------------------------------------------------------------------------
# datasets

def _split_key(key) -> tuple[int, int]:
    """(index, sample_seed) from a sampler key, or from a plain index (epoch 0, seed 0)."""
    if isinstance(key, tuple):
        return int(key[0]), int(key[1])
    index = int(key)
    return index, mix_seed(0, 0, index)


class ArrayDataset(Dataset):
    """uint8 NHWC arrays on disk (one or more parts), memory-mapped lazily in each process.

    Opening lazily keeps worker start-up cheap and means a pickled dataset (spawned workers)
    carries paths, not gigabytes of pixels.
    """

    def __init__(self, spec: DatasetSpec, folder: Path, parts: Sequence[str], transform):
        self.spec, self.folder, self.parts, self.transform = spec, Path(folder), list(parts), transform
        labels = [np.load(self.folder / f"{p}_labels.npy", allow_pickle=False) for p in self.parts]
        self.targets = np.concatenate(labels)
        self._offsets = np.cumsum([0] + [len(part) for part in labels]).tolist()
        self._arrays: list[np.ndarray] | None = None

    def _images(self) -> list[np.ndarray]:
        if self._arrays is None:
            self._arrays = [np.load(self.folder / f"{p}_images.npy", mmap_mode="r",
                                    allow_pickle=False) for p in self.parts]
        return self._arrays

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_arrays"] = None
        return state

    def __len__(self) -> int:
        return self._offsets[-1]

    def raw(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} examples")
        part = bisect.bisect_right(self._offsets, index) - 1
        return self._images()[part][index - self._offsets[part]]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All images (N, H, W, C uint8, in memory) and labels: for the GPU pipeline."""
        images = self._images()
        return (images[0].copy() if len(images) == 1 else np.concatenate(images)), self.targets

    def __getitem__(self, key):
        index, sample_seed = _split_key(key)
        generator = torch.Generator().manual_seed(sample_seed)
        return self.transform(self.raw(index), generator), int(self.targets[index])


class FolderDataset(Dataset):
    """Class folders of images (ImageNet): torchvision's ImageFolder behind sampler keys."""

    def __init__(self, spec: DatasetSpec, folder: Path, parts: Sequence[str], transform):
        from torchvision.datasets import ImageFolder

        self.spec, self.transform = spec, transform
        self.folders = [ImageFolder(str(Path(folder) / p)) for p in parts]
        classes = {tuple(f.classes) for f in self.folders}
        if len(classes) != 1 or len(next(iter(classes))) != spec.num_classes:
            raise UserError(f"{folder}: expected {spec.num_classes} class folders in each of "
                            f"{', '.join(parts)}")
        self._offsets = np.cumsum([0] + [len(f) for f in self.folders]).tolist()
        self.targets = np.concatenate([np.asarray(f.targets, dtype=np.int64) for f in self.folders])

    def __len__(self) -> int:
        return self._offsets[-1]

    def __getitem__(self, key):
        index, sample_seed = _split_key(key)
        part = bisect.bisect_right(self._offsets, index) - 1
        path, label = self.folders[part].samples[index - self._offsets[part]]
        img = self.folders[part].loader(path)
        return self.transform(img, torch.Generator().manual_seed(sample_seed)), int(label)


class KeyedSubset(Dataset):
    """A subset that passes sampler keys through, mapping the index to the parent's."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]):
        self.dataset, self.indices = dataset, list(indices)
        self.spec = getattr(dataset, "spec", None)
        targets = getattr(dataset, "targets", None)
        self.targets = None if targets is None else np.asarray(targets)[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        index, sample_seed = _split_key(key)
        return self.dataset[(self.indices[index], sample_seed)]


def resolve_parts(spec: DatasetSpec, split: str) -> tuple[str, ...]:
    if split == "train":
        return spec.train_parts
    if split == "test":
        return spec.test_parts
    if split in spec.splits:
        return (split,)
    raise UserError(f"unknown split '{split}' for {spec.name} (expected train, test or one of: "
                    f"{', '.join(spec.splits)})")


def build_dataset(name: str, root: str | os.PathLike, split: str, augment: bool,
                  cutout: int = 0) -> Dataset:
    """The `split` ('train' or 'test'; or a published part such as 'extra') of dataset `name`
    under `root`, yielding (normalised float CHW tensor, int label).

    `split='train'` is the dataset's training composition (e.g. SVHN train+extra). A missing
    or incomplete dataset is a one-line DataError naming the folder and the fetch command.
    """
    spec = get_spec(name)
    parts = resolve_parts(spec, split)
    folder = check_present(name, root)
    transform = build_transform(spec, augment, cutout)
    if spec.storage == "arrays":
        return ArrayDataset(spec, folder, parts, transform)
    return FolderDataset(spec, folder, parts, transform)


def subset(dataset: Dataset, n: int | None, seed: int) -> Dataset:
    """At most `n` examples of `dataset`, chosen by `seed` (`max_samples`); all if n is None."""
    if n is None or n >= len(dataset):
        return dataset
    if n <= 0:
        raise UserError(f"max_samples must be positive, got {n}")
    chosen = sorted(_hash_permutation(len(dataset), seed, 0x5AB5E7)[:n].tolist())
    return KeyedSubset(dataset, chosen)


# ---------------------------------------------------------------------------------------
# sampling and loading

class EpochSampler(Sampler):
    """Yields `(index, sample_seed)` keys; the order is a pure function of (seed, epoch).

    `indices` restricts it to part of the dataset (the halves of `split_indices`). Call
    `set_epoch(e)` before each epoch; `start` skips the first samples of that epoch.
    """

    def __init__(self, indices: int | Sequence[int], seed: int, shuffle: bool = True):
        self.indices = np.arange(indices) if isinstance(indices, int) else np.asarray(indices)
        self.seed, self.shuffle = int(seed), shuffle
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = int(epoch), int(start)

    def order(self) -> np.ndarray:
        if not self.shuffle:
            return self.indices
        return self.indices[_hash_permutation(len(self.indices), self.seed, self.epoch)]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self.order()[self.start:].tolist():
            yield index, mix_seed(self.seed, self.epoch, index)

    def __len__(self) -> int:
        return max(0, len(self.indices) - self.start)


def seed_worker(worker_id: int) -> None:
    """Seed numpy and `random` in a worker from the seed torch gave it, for any third-party
    transform that draws from them (ours use per-sample generators)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int, workers: int,
                drop_last: bool = False, device_type: str = "cpu",
                sampler: Sampler | None = None, indices: Sequence[int] | None = None,
                prefetch_factor: int | None = None) -> DataLoader:
    """A DataLoader with reproducible order and augmentation (see the module docstring).

    Unless a `sampler` is given it uses an `EpochSampler` over `indices` (default: all);
    call `set_epoch(loader, e)` at the start of each epoch. Pinned memory on CUDA, and
    persistent workers, so worker start-up is paid once per run, not once per epoch.
    """
    if sampler is None:
        sampler = EpochSampler(len(dataset) if indices is None else indices, seed, shuffle)
    extra = {}
    if workers > 0:
        extra = {"persistent_workers": True, "worker_init_fn": seed_worker,
                 "prefetch_factor": prefetch_factor or 4}
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      drop_last=drop_last, pin_memory=device_type == "cuda",
                      generator=torch.Generator().manual_seed(int(seed)), **extra)


def set_epoch(loader: DataLoader, epoch: int, start: int = 0) -> None:
    """Set the epoch of a loader's sampler (EpochSampler or anything with `set_epoch`)."""
    if isinstance(loader.sampler, EpochSampler):
        loader.sampler.set_epoch(epoch, start)
    else:
        loader.sampler.set_epoch(epoch)


def epoch_loader(dataset: Dataset, batch_size: int, seed: int, epoch: int, *,
                 shuffle: bool = True, workers: int = 0, drop_last: bool = False,
                 device_type: str = "cpu", indices: Sequence[int] | None = None) -> DataLoader:
    """A loader already set to `epoch`; for long runs prefer one `make_loader` + `set_epoch`,
    which keeps the workers alive across epochs."""
    loader = make_loader(dataset, batch_size, shuffle, seed, workers, drop_last, device_type,
                         indices=indices)
    set_epoch(loader, epoch)
    return loader
