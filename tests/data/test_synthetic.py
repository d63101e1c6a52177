"""Stand-ins: deterministic, labelled as stand-ins, learnable, and not solvable by colour."""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import pytest
import torch
from torch import nn

from itnas.data.loaders import build_dataset, make_loader, set_epoch
from itnas.data.registry import get_spec, list_specs
from itnas.data.synthetic import generate, make_split

STANDINS = [s.name for s in list_specs() if s.standin]


def array_hashes(folder):
    return {p.name: hashlib.sha256(np.load(p).tobytes()).hexdigest()
            for p in sorted(folder.glob("*.npy"))}


def test_every_benchmark_has_a_stand_in():
    assert sorted(get_spec(n).benchmark for n in STANDINS) == \
        sorted(s.name for s in list_specs() if not s.standin)


def test_generation_is_deterministic_across_folders(tmp_path):
    a = generate("synthetic-cifar10", tmp_path / "a")
    b = generate("synthetic-cifar10", tmp_path / "b")
    assert array_hashes(a) == array_hashes(b)
    assert (a / ".itnas-manifest.json").read_text() == (b / ".itnas-manifest.json").read_text()


@pytest.mark.parametrize("name", STANDINS)
def test_stand_in_shapes_balance_labels_and_speed(name):
    spec = get_spec(name)
    started = time.process_time()  # CPU time: other jobs on the machine do not count
    images, labels = make_split(spec, "train")
    test_images, _ = make_split(spec, "test")
    assert time.process_time() - started < 5
    size = spec.stored_size
    assert images.shape == (spec.splits["train"], size, size, spec.channels)
    assert images.dtype == np.uint8 and labels.dtype == np.int64
    assert np.bincount(labels, minlength=spec.num_classes).tolist() == \
        [spec.splits["train"] // spec.num_classes] * spec.num_classes
    # Pixels use the range, and train and test share no image.
    assert images.min() == 0 and images.max() == 255
    train_keys = {img.tobytes() for img in images}
    assert not any(img.tobytes() in train_keys for img in test_images)
    # The registry's normalisation is the training split's.
    np.testing.assert_allclose(images.mean((0, 1, 2)) / 255, spec.mean, atol=0.01)
    np.testing.assert_allclose(images.std((0, 1, 2)) / 255, spec.std, atol=0.01)


def test_stand_ins_differ_from_each_other():
    a, _ = make_split(get_spec("synthetic-cifar10"), "train")
    b, _ = make_split(get_spec("synthetic-cinic10"), "train")
    assert not np.array_equal(a, b)


def test_stand_in_is_labelled_as_such_on_disk(standin_root):
    info = json.loads((standin_root / "synthetic-cifar10" / "info.json").read_text())
    assert info["standin"] is True
    assert info["label"] == "STAND-IN (synthetic, not cifar10)"
    manifest = json.loads((standin_root / "synthetic-cifar10" / ".itnas-manifest.json").read_text())
    assert manifest["standin"] is True and manifest["benchmark"] == "cifar10"


def test_mean_colour_says_nothing_about_the_class():
    """A classifier on the per-image mean colour stays near chance: the class is spatial."""
    spec = get_spec("synthetic-cifar10")
    x, y = make_split(spec, "train")
    xt, yt = make_split(spec, "test")

    def features(images):
        f = images.reshape(len(images), -1, 3).astype(np.float64)
        return np.concatenate([f.mean(1), f.std(1)], 1) / 255

    # Nearest class mean in colour space: a linear read-out of mean colour and contrast.
    centroids = np.stack([features(x[y == c]).mean(0) for c in range(10)])
    pred = np.argmin(((features(xt)[:, None] - centroids[None]) ** 2).sum(-1), 1)
    assert (pred == yt).mean() < 0.2


class TinyNet(nn.Module):
    """stem conv, one block of `op`, a stride-2 conv, another block of `op`, linear head."""

    def __init__(self, op: str, classes: int, width: int = 16):
        super().__init__()

        def block(c):
            if op == "sep_conv_5x5":
                return nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 5, padding=2, groups=c, bias=False),
                                     nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))
            if op == "avg_pool_3x3":
                return nn.AvgPool2d(3, 1, 1, count_include_pad=False)
            raise ValueError(op)

        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width))
        self.a, self.b = block(width), block(2 * width)
        self.down = nn.Sequential(nn.ReLU(), nn.Conv2d(width, 2 * width, 3, 2, 1, bias=False),
                                  nn.BatchNorm2d(2 * width))
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.a(x)
        x = self.down(x)
        x = x + self.b(x)
        return self.head(torch.relu(x).mean((2, 3)))


def train_and_test(root, op: str, epochs: int) -> float:
    torch.manual_seed(0)
    train = build_dataset("synthetic-cifar10", root, "train", augment=True)
    test = build_dataset("synthetic-cifar10", root, "test", augment=False)
    net = TinyNet(op, 10)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=3e-4)
    loader = make_loader(train, 64, shuffle=True, seed=0, workers=0)
    for epoch in range(epochs):
        set_epoch(loader, epoch)
        net.train()
        for x, y in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        x, y = next(iter(make_loader(test, 1000, shuffle=False, seed=0, workers=0)))  # +-1.5 points
        return (net(x).argmax(1) == y).float().mean().item()


@pytest.fixture
def one_thread():
    # One thread: reproducible sums, and no OpenMP spinning when the machine is shared.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_small_cnn_learns_the_stand_in_and_operations_are_not_equal(standin_root, one_thread):
    conv = train_and_test(standin_root, "sep_conv_5x5", epochs=3)  # 96 steps: 0.60 here
    pool = train_and_test(standin_root, "avg_pool_3x3", epochs=3)  # 0.29 here
    assert conv > 0.35, f"chance is 0.1; a small CNN reached only {conv:.3f}"
    # Pooling blurs away the high-frequency classes that a 5x5 separable conv can read.
    assert conv - pool > 0.1, f"sep_conv_5x5 {conv:.3f} vs avg_pool_3x3 {pool:.3f}"
