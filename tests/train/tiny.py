"""Tiny configs and in-memory data for the training tests (5 cells, C=4, 8-px images)."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from itnas.train.batches import TrainData
from itnas.train.loop import Trainer, load_train_config

TINY = ["epochs=2", "data.batch_size=8", "model.layers=5", "model.init_channels=4", "runtime.workers=0", "runtime.device=cpu",
        "model.drop_path_prob=0.2", "data.cutout=0"]


def tiny_config(*overrides: str) -> dict:
    """The CIFAR recipe shrunk to 5 cells, C=4, batches of 8: a step takes milliseconds."""
    return load_train_config(None, [*TINY, *overrides])


def tensor_data(n_train: int = 16, n_eval: int = 8, size: int = 8, classes: int = 4, seed: int = 0,
                protocol: str = "cifar") -> TrainData:
    g = torch.Generator().manual_seed(seed)
    train = TensorDataset(torch.randn(n_train, 3, size, size, generator=g),
                          torch.randint(0, classes, (n_train,), generator=g))
    test = TensorDataset(torch.randn(n_eval, 3, size, size, generator=g),
                         torch.randint(0, classes, (n_eval,), generator=g))
    return TrainData(train, test, classes, protocol, 3, size, "tensors")


def kill_at_epoch(monkeypatch, epoch: int) -> None:
    """Make the next training stop with KeyboardInterrupt when it starts `epoch` (0-based), as a
    kill after the previous epoch's checkpoint would; `monkeypatch.undo()` lifts it."""
    original = Trainer.train_epoch

    def killed(self, e, *args):
        if e == epoch:
            raise KeyboardInterrupt
        return original(self, e, *args)

    monkeypatch.setattr(Trainer, "train_epoch", killed)
