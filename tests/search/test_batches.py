"""The search's batches from the device pipeline (`runtime.pipeline: device`), run here on the CPU:
what the batches hold, which images each stream sees, determinism, refusal, and resume."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from itnas.cli import main
from itnas.config import load_config
from itnas.data.gpu_pipeline import DeviceLoader, use_device_pipeline
from itnas.data.loaders import _normalise, build_dataset, normalisation_table
from itnas.data.registry import get_spec
from itnas.errors import UserError
from itnas.run import RunDir
from itnas.search.batches import ARCH_STREAM, search_batches
from itnas.search.loop import check_search_config, search_runtime
from tests.search.same_run import assert_same_search, die_after_first_checkpoint

CONFIG = Path(__file__).resolve().parents[2] / "config" / "recipes" / "search.yaml"
CPU = torch.device("cpu")
SEED = 3


def _cfg(overrides, *extra):
    return load_config(CONFIG, "search", list(overrides) + list(extra), check=check_search_config)


def _batches(cfg, seed=SEED):
    return search_batches(cfg, seed, search_runtime(cfg))


@pytest.fixture
def device_cfg(tiny_search_overrides):
    return _cfg(tiny_search_overrides, "runtime.pipeline=device")


@pytest.fixture
def expected_halves(tiny_search_overrides):
    """The split's halves as indices of the whole training split, from the DataLoader path."""
    loaders = _batches(_cfg(tiny_search_overrides, "runtime.pipeline=loader"))
    halves = []
    for loader in (loaders.weight_loader, loaders.arch_loader):
        parent = np.asarray(loader.dataset.indices)  # data.max_samples: a subset of the split
        halves.append(parent[loader.sampler.indices].tolist())
    return halves


@pytest.fixture
def finder(standin_root, expected_halves):
    """Which image of the split (its index in the whole training split) a served, augmented
    image was cut from, and which crop/flip it is; plus the split's labels."""
    spec = get_spec("synthetic-cifar10")
    images, labels = build_dataset(spec.name, standin_root, "train", augment=False).arrays()
    chosen = sorted(sum(expected_halves, []))
    raw = torch.as_tensor(images[chosen]).permute(0, 3, 1, 2)
    padded = _normalise(torch.nn.functional.pad(raw, (4, 4, 4, 4)), normalisation_table(spec.mean, spec.std))
    crops = padded.unfold(2, 32, 1).unfold(3, 32, 1).permute(0, 2, 3, 1, 4, 5)  # K, 9, 9, C, H, W
    views = torch.stack([crops, crops.flip(-1)], 1).reshape(len(chosen) * 162, -1)  # K * (flip, dy, dx)

    def origins(batch: torch.Tensor) -> list[tuple[int, int]]:
        # Direct differences: the matmul form of cdist loses the small distances to rounding.
        near = torch.cdist(batch.flatten(1), views, compute_mode="donot_use_mm_for_euclid_dist") < 1e-3
        found = []
        for x, row in zip(batch, near):
            hits = row.nonzero().flatten().tolist()
            assert len({h // 162 for h in hits}) == 1, "not exactly one training image matches"
            assert torch.equal(views[hits[0]], x.flatten())
            found.append((chosen[hits[0] // 162], hits[0] % 162))
        return found

    return origins, torch.as_tensor(labels)


def _stream(pairs, finder) -> tuple[list[int], list[int]]:
    """The images behind the weight batches and behind the arch batches of one epoch, checking
    each batch's shape, dtype and labels on the way."""
    origins, labels = finder
    out: tuple[list[int], list[int]] = ([], [])
    for pair in pairs:
        for k, (x, y) in enumerate(pair):
            assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and x.device == CPU
            assert y.shape == (8,) and y.dtype == torch.int64
            index = [i for i, _ in origins(x)]
            assert y.tolist() == labels[index].tolist()
            out[k].extend(index)
    return out


def test_device_batches_are_crops_and_flips_of_their_half_with_its_labels(device_cfg, expected_halves,
                                                                           finder):
    batches = _batches(device_cfg)
    assert batches.pipeline == "device" and batches.steps_per_epoch == 2
    weights, arch = expected_halves
    assert not set(weights) & set(arch) and len(weights) + len(arch) == 32
    served_w, served_a = _stream(batches.epoch(0), finder)
    # Each half served whole (16 images = 2 batches of 8), and nothing of the other half.
    assert sorted(served_w) == sorted(weights) and sorted(served_a) == sorted(arch)
    # Augmented: the crops and flips vary (view 40 = unflipped, centred).
    x = torch.cat([w[0] for w, _ in batches.epoch(0)])
    assert len({view for _, view in finder[0](x)}) > 3


def test_validation_is_the_arch_half_in_order_and_the_same_every_pass(device_cfg, expected_halves, finder):
    batches = _batches(device_cfg)
    first = list(batches.validation())
    x = torch.cat([b[0] for b in first])
    assert [i for i, _ in finder[0](x)] == expected_halves[1]
    assert torch.cat([b[1] for b in first]).tolist() == finder[1][expected_halves[1]].tolist()
    list(batches.epoch(1))  # training epochs do not move the validation pass
    again = list(batches.validation())
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))


def test_order_and_augmentation_are_a_pure_function_of_seed_and_epoch(device_cfg, finder):
    a, b = _batches(device_cfg), _batches(device_cfg)
    list(a.epoch(0))  # a has run an epoch before, b starts at epoch 1 (a resume)
    one_a, one_b = list(a.epoch(1)), list(b.epoch(1))
    for (wa, aa), (wb, ab) in zip(one_a, one_b, strict=True):
        assert torch.equal(wa[0], wb[0]) and torch.equal(wa[1], wb[1])
        assert torch.equal(aa[0], ab[0]) and torch.equal(aa[1], ab[1])
    order0, order1 = _stream(a.epoch(0), finder), _stream(a.epoch(1), finder)
    assert order0[0] != order1[0] and order0[1] != order1[1]
    other_seed = _batches(device_cfg, SEED + 1)
    assert not torch.equal(next(other_seed.epoch(1))[0][0], one_a[0][0][0])


def test_the_two_halves_draw_from_separate_streams_without_cutout(device_cfg):
    batches = _batches(device_cfg)
    loaders = (batches.weight_loader, batches.arch_loader, batches.val_loader)
    assert all(isinstance(loader, DeviceLoader) for loader in loaders)
    assert [loader.seed for loader in loaders] == [SEED, SEED + ARCH_STREAM, SEED + ARCH_STREAM]
    assert [loader.shuffle for loader in loaders] == [True, True, False]
    assert all(loader.augment and loader.cutout == 0 for loader in loaders)
    # One device copy of the split serves all three.
    assert batches.weight_loader.data is batches.arch_loader.data is batches.val_loader.data


def test_auto_keeps_the_dataloader_on_the_cpu(tiny_search_overrides):
    batches = _batches(_cfg(tiny_search_overrides))
    assert batches.pipeline == "loader" and isinstance(batches.weight_loader, DataLoader)


@pytest.mark.parametrize("pipeline,dataset,device,expected", [
    ("auto", "cifar10", "cuda", True),
    ("auto", "svhn", "cuda", True),
    ("auto", "cifar10", "cpu", False),
    ("auto", "imagenet", "cuda", False),
    ("auto", "synthetic-imagenet", "cuda", False),
    ("loader", "cifar10", "cuda", False),
    ("device", "cifar10", "cpu", True),
])
def test_the_pipeline_rule(pipeline, dataset, device, expected):
    assert use_device_pipeline(pipeline, get_spec(dataset), torch.device(device)) is expected


def test_device_pipeline_for_a_dataset_it_cannot_serve_is_refused_before_any_work(tmp_path, capsys):
    # An empty data root: the refusal must come before the data is looked for.
    overrides = ["dataset=synthetic-imagenet", f"data_root={tmp_path / 'nothing'}",
                 "runtime.pipeline=device", "runtime.device=cpu"]
    with pytest.raises(UserError, match="key 'runtime.pipeline'"):
        _batches(_cfg(overrides), 0)
    args = ["search", "--config", str(CONFIG), "--seed", "0", "--out", str(tmp_path / "run")]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "key 'runtime.pipeline'" in err and "CIFAR protocol" in err, err
    assert "config/recipes/search.yaml (with --set" in err  # refused with the config, naming its file
    assert not (tmp_path / "run").exists()


def _search(out, overrides):
    args = ["search", "--config", str(CONFIG), "--variant", "itnas", "--seed", str(SEED), "--out", str(out)]
    for item in overrides:
        args += ["--set", item]
    return main(args)


def test_search_on_the_device_pipeline_resumes_bit_identically(tmp_path, tiny_search_overrides, monkeypatch):
    overrides = tiny_search_overrides + ["runtime.pipeline=device", "model.layers=3", "data.max_samples=16"]
    epochs: list[int] = []
    set_epoch = DeviceLoader.set_epoch

    def record(self, epoch, start=0):
        epochs.append(epoch)
        set_epoch(self, epoch, start)

    monkeypatch.setattr(DeviceLoader, "set_epoch", record)
    assert _search(tmp_path / "straight", overrides) == 0
    assert epochs == [0, 0, 1, 1]  # weights and arch loaders, every epoch

    original = RunDir.end_epoch
    die_after_first_checkpoint(monkeypatch)
    assert _search(tmp_path / "resumed", overrides) == 130
    monkeypatch.setattr(RunDir, "end_epoch", original)
    epochs.clear()
    assert _search(tmp_path / "resumed", overrides) == 0
    assert epochs == [1, 1]

    assert_same_search(tmp_path / "straight", tmp_path / "resumed")


@pytest.mark.parametrize("pipeline", ["loader", "device"])
def test_the_validation_pass_takes_its_own_batch_and_the_same_numbers(tiny_search_overrides, pipeline):
    from itnas.search.loop import Searcher

    results = {}
    for size in (3, 16):
        cfg = _cfg(tiny_search_overrides, f"runtime.pipeline={pipeline}", f"runtime.eval_batch_size={size}",
                   "model.layers=3")
        batches = _batches(cfg)
        sizes = [len(y) for _, y in batches.validation()]
        assert sizes == ([3] * 5 + [1] if size == 3 else [16]) and batches.steps_per_epoch == 2
        if pipeline == "loader":  # the same augmented images: eval-mode outputs are per image
            torch.manual_seed(0)
            searcher = Searcher(cfg, batches.spec.num_classes, batches.spec.channels)
            results[size] = searcher.evaluate(batches.validation())
    if pipeline == "loader":
        (loss_a, acc_a), (loss_b, acc_b) = results[3], results[16]
        assert loss_a == pytest.approx(loss_b, rel=1e-5) and acc_a == acc_b


def test_the_weight_half_is_the_first_part_of_the_seeded_split_and_the_arch_half_the_rest(tiny_search_overrides):
    """Which half trains what, pinned to the split itself (the fixtures above derive the halves
    from the loaders, so they alone would not notice the halves swapped)."""
    from itnas.data.loaders import split_indices

    cfg = _cfg(tiny_search_overrides, "runtime.pipeline=loader")
    batches = _batches(cfg)
    subset = batches.weight_loader.dataset  # data.max_samples: a seeded subset of the split
    first, rest = split_indices(len(subset), cfg["data"]["train_portion"], SEED)
    assert sorted(batches.weight_loader.sampler.indices) == sorted(first)
    assert sorted(batches.arch_loader.sampler.indices) == sorted(rest)
    assert sorted(batches.val_loader.sampler.indices) == sorted(rest)
