"""Loaders: seeded splits, batches that depend only on (seed, epoch), the two protocols."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from itnas.data.loaders import (
    CifarTransform,
    Cutout,
    EpochSampler,
    build_dataset,
    epoch_loader,
    make_loader,
    mix_seed,
    set_epoch,
    split_indices,
    subset,
)
from itnas.data.registry import get_spec
from itnas.errors import DataError, UserError

NAME = "synthetic-cifar10"


def batches(loader, limit=None):
    out = []
    for i, (x, y) in enumerate(loader):
        if limit is not None and i >= limit:
            break
        out.append((x.clone(), y.clone()))
    return out


def same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(y1, y2)
                                    for (x1, y1), (x2, y2) in zip(a, b))


# --- split_indices -----------------------------------------------------------------------

@pytest.mark.parametrize("n, portion", [(50000, 0.5), (2000, 0.5), (101, 0.3), (7, 0.0)])
def test_split_indices_is_disjoint_complete_and_seeded(n, portion):
    a, b = split_indices(n, portion, seed=3)
    assert len(a) == int(portion * n) and len(a) + len(b) == n
    assert not set(a) & set(b) and sorted(a + b) == list(range(n))
    assert (a, b) == split_indices(n, portion, seed=3)
    if n > 100 and portion > 0:
        assert a != split_indices(n, portion, seed=4)[0]
        assert a != sorted(a)  # shuffled, not the first half


def test_split_indices_rejects_bad_portion():
    with pytest.raises(UserError):
        split_indices(10, 1.5, 0)


# --- order and augmentation reproducibility ----------------------------------------------

def test_two_runs_give_identical_batches(standin_root):
    def run():
        ds = build_dataset(NAME, standin_root, "train", augment=True, cutout=16)
        loader = make_loader(ds, 32, shuffle=True, seed=7, workers=0)
        out = []
        for epoch in range(2):
            set_epoch(loader, epoch)
            out.append(batches(loader, limit=5))
        return out

    first, second = run(), run()
    assert same(first[0], second[0]) and same(first[1], second[1])
    assert not same(first[0], first[1])  # a new epoch is a new order


def test_resuming_at_an_epoch_gives_the_same_batches(standin_root):
    ds = build_dataset(NAME, standin_root, "train", augment=True, cutout=16)
    loader = make_loader(ds, 50, shuffle=True, seed=1, workers=0)
    for epoch in range(3):
        set_epoch(loader, epoch)
        wanted = batches(loader, limit=3)
    # A fresh process would build a fresh loader and jump straight to epoch 2.
    fresh = epoch_loader(build_dataset(NAME, standin_root, "train", augment=True, cutout=16),
                         50, seed=1, epoch=2)
    assert same(batches(fresh, limit=3), wanted)


def test_workers_do_not_change_the_batches(standin_root):
    ds = build_dataset(NAME, standin_root, "train", augment=True, cutout=8)
    serial = batches(epoch_loader(ds, 64, seed=5, epoch=3, workers=0), limit=4)
    loader = make_loader(ds, 64, shuffle=True, seed=5, workers=2)
    assert loader.persistent_workers and not loader.pin_memory
    set_epoch(loader, 3)
    assert same(batches(loader, limit=4), serial)


def test_loading_leaves_the_global_rng_alone(standin_root):
    ds = build_dataset("synthetic-imagenet", standin_root, "train", augment=True)
    state = torch.get_rng_state()
    batches(epoch_loader(ds, 8, seed=0, epoch=0), limit=2)
    assert torch.equal(state, torch.get_rng_state())


def test_sampler_order_depends_only_on_seed_epoch_and_indices():
    sampler = EpochSampler([10, 11, 12, 13, 14], seed=2)
    sampler.set_epoch(4)
    keys = list(sampler)
    assert sorted(k[0] for k in keys) == [10, 11, 12, 13, 14]
    again = EpochSampler([10, 11, 12, 13, 14], seed=2)
    again.set_epoch(4)
    assert list(again) == keys
    assert keys[0][1] == mix_seed(2, 4, keys[0][0])
    sampler.set_epoch(4, start=2)
    assert list(sampler) == keys[2:] and len(sampler) == 3
    assert [k for k, _ in EpochSampler(3, seed=0, shuffle=False)] == [0, 1, 2]


def test_loader_options_follow_the_device():
    ds = torch.utils.data.TensorDataset(torch.zeros(4))
    assert make_loader(ds, 2, False, 0, 0, device_type="cuda").pin_memory
    assert not make_loader(ds, 2, False, 0, 0).pin_memory


# --- datasets and transforms ----------------------------------------------------------------

def test_missing_dataset_names_the_folder_and_the_fetch_command(tmp_path):
    with pytest.raises(DataError) as exc:
        build_dataset(NAME, tmp_path, "train", augment=True)
    message = str(exc.value)
    assert str(tmp_path / NAME) in message and f"itnas data fetch {NAME} --root" in message


def test_unknown_split_is_a_user_error(standin_root):
    with pytest.raises(UserError, match="unknown split 'val'"):
        build_dataset(NAME, standin_root, "val", augment=False)


def test_eval_transform_is_exactly_the_normalisation(standin_root):
    ds = build_dataset(NAME, standin_root, "test", augment=False)
    spec = get_spec(NAME)
    raw = np.load(standin_root / NAME / "test_images.npy")[3]
    x, y = ds[3]
    expected = (torch.from_numpy(raw).permute(2, 0, 1).float() / 255
                - torch.tensor(spec.mean).view(3, 1, 1)) / torch.tensor(spec.std).view(3, 1, 1)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-6)
    assert y == int(np.load(standin_root / NAME / "test_labels.npy")[3])


def test_cifar_augmentation_is_a_padded_crop_maybe_flipped():
    spec = get_spec(NAME)
    img = np.arange(32 * 32 * 3, dtype=np.int64).reshape(32, 32, 3) % 251
    img = img.astype(np.uint8)
    plain = CifarTransform(spec, augment=False)(img, torch.Generator())
    aug = CifarTransform(spec, augment=True)
    # Padding is black in pixel space, i.e. -mean/std once normalised.
    black = (-torch.tensor(spec.mean) / torch.tensor(spec.std)).view(3, 1, 1)
    padded = black.expand(3, 40, 40).clone()
    padded[:, 4:36, 4:36] = plain
    seen_flip = seen_shift = False
    for seed in range(40):
        out = aug(img, torch.Generator().manual_seed(seed))
        found = False
        for oy in range(9):
            for ox in range(9):
                crop = padded[:, oy:oy + 32, ox:ox + 32]
                for flipped, cand in ((False, crop), (True, crop.flip(2))):
                    if torch.allclose(out, cand, atol=1e-6):
                        found = True
                        seen_flip |= flipped
                        seen_shift |= (oy, ox) != (4, 4)
        assert found, f"seed {seed}: not a crop of the padded image"
    assert seen_flip and seen_shift


def test_cutout_zeroes_a_clipped_square():
    img = torch.ones(3, 32, 32)
    out = Cutout(16)(img.clone(), torch.Generator().manual_seed(0))
    zero = (out == 0).all(0)
    rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
    assert 8 <= len(rows) <= 16 and 8 <= len(cols) <= 16
    assert zero.sum() == len(rows) * len(cols)  # a rectangle (a square clipped at the border)
    assert torch.equal(Cutout(0)(img.clone()), img)


def test_imagenet_protocol_on_the_stand_in(standin_root):
    train = build_dataset("synthetic-imagenet", standin_root, "train", augment=True, cutout=8)
    test = build_dataset("synthetic-imagenet", standin_root, "test", augment=False)
    x, _ = train[(5, 123)]
    assert x.shape == (3, 64, 64)
    assert torch.equal(x, train[(5, 123)][0]) and not torch.equal(x, train[(5, 124)][0])
    assert test[0][0].shape == (3, 64, 64)


def test_subset_is_seeded_and_passes_keys_through(standin_root):
    ds = build_dataset(NAME, standin_root, "train", augment=True)
    small = subset(ds, 100, seed=3)
    assert len(small) == 100 and subset(ds, None, 0) is ds and subset(ds, 10**6, 0) is ds
    assert small.indices == subset(ds, 100, seed=3).indices != subset(ds, 100, seed=4).indices
    x, y = small[(7, 99)]
    x2, y2 = ds[(small.indices[7], 99)]
    assert torch.equal(x, x2) and y == y2 == small.targets[7]
    assert len(batches(epoch_loader(small, 30, seed=0, epoch=0))) == 4
