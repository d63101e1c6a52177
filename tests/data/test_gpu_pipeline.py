"""The device-resident pipeline (run here on the CPU; on CUDA too when one is present)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from itnas.data.gpu_pipeline import DeviceDataset, DeviceLoader
from itnas.data.loaders import build_dataset, epoch_loader
from itnas.data.registry import get_spec
from itnas.errors import UserError

NAME = "synthetic-cifar10"
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture
def data(standin_root, device):
    return DeviceDataset.from_name(NAME, standin_root, "train", device)


def collect(loader, limit=None):
    return [(x.cpu(), y.cpu()) for x, y in itertools.islice(loader, limit)]


def test_without_augmentation_equals_the_standard_loader_bit_for_bit(standin_root, data):
    for epoch in (0, 1):
        device_loader = DeviceLoader(data, 100, seed=9, augment=False)
        device_loader.set_epoch(epoch)
        standard = epoch_loader(build_dataset(NAME, standin_root, "train", augment=False), 100,
                                seed=9, epoch=epoch)
        got, want = collect(device_loader), collect(standard)
        assert len(got) == len(want) == 20
        for (x1, y1), (x2, y2) in zip(got, want):
            assert torch.equal(y1, y2) and torch.equal(x1, x2)


def test_augmented_batches_are_deterministic_given_seed_and_epoch(data):
    def run(seed, epoch):
        loader = DeviceLoader(data, 64, seed=seed, cutout=16)
        loader.set_epoch(epoch)
        return collect(loader, limit=4)

    a, b = run(1, 2), run(1, 2)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    assert not torch.equal(a[0][0], run(1, 3)[0][0])
    assert not torch.equal(a[0][0], run(2, 2)[0][0])


def test_shapes_lengths_and_subsets(data):
    loader = DeviceLoader(data, 64, seed=0, drop_last=True)
    out = collect(loader)
    assert len(out) == len(loader) == 2000 // 64
    x, y = out[0]
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    half = list(range(0, 2000, 2))
    seen = torch.cat([y for _, y in collect(DeviceLoader(data, 100, seed=0, indices=half))])
    assert len(seen) == 1000
    assert torch.equal(seen.sort().values, data.labels.cpu()[half].sort().values)


def test_each_augmented_image_is_a_padded_crop_maybe_flipped(data):
    spec = get_spec(NAME)
    loader = DeviceLoader(data, 16, seed=3, shuffle=False)
    x, _ = next(iter(loader))
    plain, _ = next(iter(DeviceLoader(data, 16, seed=3, shuffle=False, augment=False)))
    black = (-torch.tensor(spec.mean) / torch.tensor(spec.std)).view(3, 1, 1)
    for i in range(16):
        padded = black.expand(3, 40, 40).clone()
        padded[:, 4:36, 4:36] = plain[i].cpu()
        assert any(torch.equal(x[i].cpu(), c) for oy in range(9) for ox in range(9)
                   for crop in [padded[:, oy:oy + 32, ox:ox + 32]]
                   for c in (crop, crop.flip(2))), f"image {i}"


def test_augmentation_statistics_match_the_standard_loader(standin_root, data):
    """Same distribution (not the same draws): pixel mean/std and the cutout area agree."""
    standard = torch.cat([x for x, _ in epoch_loader(
        build_dataset(NAME, standin_root, "train", augment=True, cutout=16), 500, seed=0,
        epoch=0)])
    device = torch.cat([x.cpu() for x, _ in DeviceLoader(data, 500, seed=0, cutout=16)])
    assert standard.shape == device.shape
    assert abs(standard.mean() - device.mean()) < 0.02
    assert abs(standard.std() - device.std()) < 0.02

    def cut_fraction(x):
        return (x == 0).all(1).float().mean().item()

    # A 16-px square centred uniformly on a 32-px image covers 3/16 of it on average.
    assert abs(cut_fraction(standard) - 0.1875) < 0.01
    assert abs(cut_fraction(device) - 0.1875) < 0.01

    # Crop offsets are uniform in both: the black padding appears with equal frequency.
    spec = get_spec(NAME)
    black = (-torch.tensor(spec.mean) / torch.tensor(spec.std)).view(1, 3, 1, 1)

    def pad_fraction(x):
        return (x - black).abs().lt(1e-6).all(1).float().mean().item()

    assert abs(pad_fraction(standard) - pad_fraction(device)) < 0.01


def test_raw_arrays_work_without_a_registry_entry():
    images = np.zeros((10, 8, 8, 3), dtype=np.uint8)
    data = DeviceDataset(images, np.arange(10), (0.5,) * 3, (0.25,) * 3)
    x, y = next(iter(DeviceLoader(data, 4, seed=0, augment=False, shuffle=False)))
    assert torch.equal(x, torch.full((4, 3, 8, 8), -2.0)) and y.tolist() == [0, 1, 2, 3]
    with pytest.raises(UserError):
        DeviceDataset(images.astype(np.float32), np.arange(10), (0.5,) * 3, (0.25,) * 3)


def test_imagenet_protocol_is_refused(standin_root):
    with pytest.raises(UserError, match="CIFAR protocol"):
        DeviceDataset.from_name("synthetic-imagenet", standin_root, "train")
