"""Every setting of the training recipes reaches what it controls (issue 22, point 6).

For each key of config/recipes/train_cifar.yaml and config/recipes/train_imagenet.yaml (and of the train schema),
a check builds what the key governs (the network, the optimiser, the learning-rate and drop-path
schedules, the loss with its auxiliary weight and label smoothing, the gradient clipping, the
batches, the augmentation, the data limits, the selection's split and budget) from each recipe
with one UNUSUAL value for that key, and finds the value there. A key without a check fails
`test_every_training_setting_has_a_check`; the `runtime` block is exempt (tests/recipes.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import itnas.train.select as select_mod
from itnas.config import defaults, flatten, load_config
from itnas.errors import UserError
from itnas.genotypes import lookup
from itnas.runtime import resolve_runtime
from itnas.train.batches import TrainData, load_data
from itnas.train.loop import Trainer, load_train_config, train
from itnas.train.select import holdout_data
from tests.recipes import TRAIN_CIFAR, TRAIN_IMAGENET, Checks, recipe_value, settings
from tests.train.tiny import TINY, tensor_data

DARTS_V2 = lookup("DARTS_V2")
RECIPES = {"cifar": TRAIN_CIFAR, "imagenet": TRAIN_IMAGENET}
# The recipes shrunk: 5 cells, C = 4, batches of 8 (TINY); ImageNet also without its warm-up and
# micro-batches, and in NCHW: torch 2.14's CPU kernels corrupt the heap on this network in
# channels-last at 32 px (`runtime` never changes results, so this costs the checks nothing).
SHRINK = {"cifar": [*TINY], "imagenet": [*TINY, "optim.warmup_epochs=0", "runtime.max_batch_per_process=null",
                                          "runtime.channels_last=false"]}
IMAGE_SIZE = {"cifar": 8, "imagenet": 16}


CHECKS = Checks()
setting = CHECKS.setting


class Build:
    """A recipe shrunk to milliseconds a step, with the checked key at its unusual value (set
    last, so that it wins over the tiny sizes and over `extra`)."""

    def __init__(self, protocol: str, key: str, value: Any, standin_root: Path, tmp_path: Path, monkeypatch):
        self.protocol, self.recipe, self.key, self.value = protocol, RECIPES[protocol], key, value
        self.standin_root, self.tmp_path, self.monkeypatch = standin_root, tmp_path, monkeypatch

    def overrides(self, *extra: str) -> list[str]:
        return [*SHRINK[self.protocol], *extra, f"{self.key}={json.dumps(self.value)}"]

    def cfg(self, *extra: str) -> dict:
        return load_train_config(self.recipe, self.overrides(*extra), protocol=self.protocol)

    def recipe_says(self, key: str) -> Any:
        return recipe_value(self.recipe, key)

    def tensors(self, n_train: int = 16) -> TrainData:
        return tensor_data(n_train=n_train, size=IMAGE_SIZE[self.protocol], protocol=self.protocol)

    def trainer(self, *extra: str, n_train: int = 16) -> Trainer:
        return Trainer(self.cfg(*extra), DARTS_V2, self.tensors(n_train), seed=0)

    def standin(self, *extra: str) -> tuple[dict, Any]:
        """The config and resolved runtime for reading the CIFAR-10 stand-in (the loaders' code
        is the same for both protocols; this one needs no torchvision)."""
        cfg = self.cfg(*extra, f"data_root={self.standin_root}")
        return cfg, resolve_runtime(cfg["runtime"], "train")

    def data(self, *extra: str) -> TrainData:
        cfg, rt = self.standin(*extra)
        return load_data("synthetic-cifar10", cfg, rt)

    def holdout(self, *extra: str) -> TrainData:
        cfg, rt = self.standin(*extra)
        return holdout_data("synthetic-cifar10", cfg, rt, seed=0)


def schedule(kind: str, lr: float, lr_min: float, frac: float) -> float:
    """The decay after the warm-up, from lr at frac 0 to lr_min at frac 1 (docs/training.md)."""
    if kind == "cosine":
        return lr_min + (lr - lr_min) * 0.5 * (1 + math.cos(math.pi * frac))
    return lr_min + (lr - lr_min) * (1 - frac)


def last_lr(trainer: Trainer) -> float:
    return trainer.optimizer.param_groups[0]["lr"]


def step_loss(trainer: Trainer) -> tuple[float, float]:
    """The mean loss of one training step (forward only, no update) and the loss recomputed
    here from the recipe's definition: cross-entropy with the configured label smoothing, plus
    the auxiliary weight times the auxiliary head's."""
    x, y = trainer.rt.batch_to(*next(trainer.batches.epoch(0)))
    loss_sum, _, n = trainer._step(iter([(x, y)])).tolist()
    o, m = trainer.cfg["optim"], trainer.cfg["model"]
    with torch.no_grad():
        logits, aux = trainer.model(x)  # batch statistics again: the same outputs
        expected = F.cross_entropy(logits, y, label_smoothing=o["label_smoothing"])
        if aux is not None:
            expected = expected + m["auxiliary_weight"] * F.cross_entropy(aux, y, label_smoothing=o["label_smoothing"])
    return loss_sum / n, float(expected)


def training_transform(dataset) -> Any:
    while not hasattr(dataset, "transform"):
        dataset = dataset.dataset
    return dataset.transform


# ----------------------------------------------------------------------------- protocol and data


@setting("protocol", lambda recipe: "imagenet" if recipe == "cifar" else "cifar")
def _protocol(b: Build) -> None:
    with pytest.raises(UserError, match=f"key 'protocol': is '{b.value}'"):
        b.cfg()  # the dataset's protocol is the recipe's
    cfg = load_config(b.recipe, "train", b.overrides())  # past the check: train() refuses it too
    with pytest.raises(UserError, match=f"config says '{b.value}'"):
        train(cfg, DARTS_V2, "DARTS_V2", b.tensors(), b.tmp_path, seed=0)


@setting("data_root", "no-such-data-root")
def _data_root(b: Build) -> None:
    cfg = b.cfg()
    rt = resolve_runtime(cfg["runtime"], "train")
    for read in (load_data, holdout_data):
        with pytest.raises(UserError, match="no-such-data-root"):
            read("synthetic-cifar10", cfg, rt, 0)


@setting("data.batch_size", 6)
def _batch_size(b: Build) -> None:
    trainer = b.trainer(n_train=24)
    x, _ = next(trainer.batches.epoch(0))
    assert x.shape[0] == 6 and trainer.batches.steps == 4


@setting("data.cutout", 7)
def _cutout(b: Build) -> None:
    for data in (b.data(), b.holdout()):
        assert training_transform(data.train).cutout.length == 7
        assert data.cutout == 7  # what the device pipeline cuts out


@setting("data.max_train_samples", 30)
def _max_train_samples(b: Build) -> None:
    assert len(b.data().train) == 30
    held = b.holdout()
    fit = math.floor(b.recipe_says("selection.train_portion") * 30)
    assert (len(held.train), len(held.evaluation)) == (fit, 30 - fit)


@setting("data.max_test_samples", 13)
def _max_test_samples(b: Build) -> None:
    assert len(b.data().evaluation) == 13
    assert len(b.holdout().evaluation) == 13  # the selection's scoring set


@setting("selection.train_portion", 0.3)
def _selection_portion(b: Build) -> None:
    held = b.holdout("data.max_train_samples=40")
    assert (len(held.train), len(held.evaluation)) == (12, 28)


@setting("selection.epochs", 3)
def _selection_epochs(b: Build) -> None:
    trained = []

    def score(cfg, genotype, label, data, out, seed, rt, ctx, **tracking):
        trained.append(cfg["epochs"])
        return {"valid_top1_acc": 50.0, "valid_top1_err": 50.0}

    b.monkeypatch.setattr(select_mod, "score_candidate", score)
    result = select_mod.select(b.cfg(), [(DARTS_V2, "DARTS_V2")], b.tensors(), b.tmp_path, seed=0)
    assert trained == [3] and result["epochs"] == 3


# ----------------------------------------------------------------------------- the network


@setting("model.layers", 7)
def _layers(b: Build) -> None:
    cells = b.trainer().model.cells
    assert len(cells) == 7 and [k for k, c in enumerate(cells) if c.reduction] == [2, 4]


@setting("model.init_channels", 6)
def _init_channels(b: Build) -> None:
    assert b.trainer().model.classifier.in_features == 4 * 4 * 6  # two doublings, four nodes


@setting("model.auxiliary", lambda recipe: not recipe)
def _auxiliary(b: Build) -> None:
    trainer = b.trainer()
    trainer.model.train()
    _, aux = trainer.model(next(trainer.batches.epoch(0))[0])
    assert (trainer.model.auxiliary_head is not None) == (aux is not None) == b.value


@setting("model.auxiliary_weight", 0.37)
def _auxiliary_weight(b: Build) -> None:
    trainer = b.trainer("model.auxiliary=true")
    assert trainer.cfg["model"]["auxiliary_weight"] == 0.37
    loss, expected = step_loss(trainer)
    assert loss == pytest.approx(expected, rel=1e-5)


@setting("model.drop_path_prob", 0.37)
def _drop_path(b: Build) -> None:
    trainer = b.trainer("epochs=4")
    record = trainer.train_epoch(1)
    assert trainer.model.drop_path_prob == record["drop_path_prob"] == pytest.approx(0.37 / 4)


# ----------------------------------------------------------------------------- loss, optimiser, schedules


@setting("optim.label_smoothing", 0.13)
def _label_smoothing(b: Build) -> None:
    trainer = b.trainer()
    assert trainer.criterion.label_smoothing == 0.13
    loss, expected = step_loss(trainer)
    assert loss == pytest.approx(expected, rel=1e-5)


@setting("optim.momentum", 0.77)
def _momentum(b: Build) -> None:
    assert b.trainer().optimizer.param_groups[0]["momentum"] == 0.77


@setting("optim.weight_decay", 1.7e-4)
def _weight_decay(b: Build) -> None:
    assert b.trainer().optimizer.param_groups[0]["weight_decay"] == 1.7e-4


@setting("optim.grad_clip", 0.0123)
def _grad_clip(b: Build) -> None:
    # No weight decay, so the first SGD step moves the weights by exactly lr x the clipped gradient.
    trainer = b.trainer("optim.weight_decay=0")
    trainer._step(trainer.batches.epoch(0))
    before = torch.cat([p.detach().flatten().clone() for p in trainer.model.parameters()])
    trainer._apply()
    after = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    assert float((after - before).norm()) == pytest.approx(last_lr(trainer) * 0.0123, rel=1e-3)


@setting("optim.lr", 0.0123)
def _lr(b: Build) -> None:
    trainer = b.trainer("epochs=4", "optim.warmup_epochs=0")
    record = trainer.train_epoch(0)
    assert record["lr"] == pytest.approx(0.0123)  # the peak, at the first step
    # the last step of the epoch (2 steps): t = 0.5 of 4 epochs
    kind, lr_min = b.recipe_says("optim.lr_schedule"), b.recipe_says("optim.lr_min")
    assert last_lr(trainer) == pytest.approx(schedule(kind, 0.0123, lr_min, 0.5 / 4))


@setting("optim.lr_schedule", lambda recipe: "linear" if recipe == "cosine" else "cosine")
def _lr_schedule(b: Build) -> None:
    trainer = b.trainer("epochs=4", "optim.warmup_epochs=0")
    record = trainer.train_epoch(1)  # t = 1 of 4: cosine 0.854, linear 0.75 of the way from lr_min
    lr, lr_min = b.recipe_says("optim.lr"), b.recipe_says("optim.lr_min")
    assert record["lr"] == pytest.approx(schedule(b.value, lr, lr_min, 0.25))


@setting("optim.lr_min", 0.00077)
def _lr_min(b: Build) -> None:
    trainer = b.trainer("epochs=4", "optim.warmup_epochs=0")
    trainer.train_epoch(3)  # its last step: t = 3.5 of 4
    kind, lr = b.recipe_says("optim.lr_schedule"), b.recipe_says("optim.lr")
    assert last_lr(trainer) == pytest.approx(schedule(kind, lr, 0.00077, 3.5 / 4))


@setting("optim.warmup_epochs", 1.5)
def _warmup(b: Build) -> None:
    trainer = b.trainer("epochs=4")
    lr = b.recipe_says("optim.lr")
    assert trainer.train_epoch(0)["lr"] == pytest.approx(lr * 0.5 / 1.5)  # a step is half an epoch
    assert last_lr(trainer) == pytest.approx(lr * 1.0 / 1.5)  # t = 0.5: (t + 0.5) / 1.5 of the peak


@setting("epochs", 3)
def _epochs(b: Build) -> None:
    metrics = train(b.cfg("optim.warmup_epochs=0"), DARTS_V2, "DARTS_V2", b.tensors(), b.tmp_path, seed=0)
    history = json.loads((b.tmp_path / "history.json").read_text())
    assert metrics["epochs"] == 3 and [h["epoch"] for h in history] == [1, 2, 3]
    kind, lr, lr_min = (b.recipe_says(k) for k in ("optim.lr_schedule", "optim.lr", "optim.lr_min"))
    assert [h["lr"] for h in history] == pytest.approx([schedule(kind, lr, lr_min, e / 3) for e in range(3)])
    assert [h["drop_path_prob"] for h in history] == pytest.approx([0.2 * e / 3 for e in range(3)])  # TINY's 0.2


# ----------------------------------------------------------------------------- the tests


def test_every_training_setting_has_a_check():
    keys = settings("train", *RECIPES.values())
    assert sorted(keys - set(CHECKS)) == [], "settings without a check: add one above"
    assert sorted(set(CHECKS) - keys) == [], "checks of keys that no longer exist"


@pytest.mark.parametrize("protocol", sorted(RECIPES))
@pytest.mark.parametrize("key", sorted(CHECKS))
def test_the_unusual_value_differs_from_the_recipe_and_the_default(key, protocol):
    recipe = RECIPES[protocol]
    value = CHECKS[key].value_for(recipe, key)
    assert value != recipe_value(recipe, key)
    if not isinstance(value, (bool, str)):  # a flag or a choice of two cannot differ from both
        assert value != flatten(defaults("train"))[key]


@pytest.mark.parametrize("protocol", sorted(RECIPES))
@pytest.mark.parametrize("key", sorted(CHECKS))
def test_each_training_setting_reaches_what_it_controls(key, protocol, standin_root, tmp_path, monkeypatch):
    value = CHECKS[key].value_for(RECIPES[protocol], key)
    CHECKS[key].check(Build(protocol, key, value, standin_root, tmp_path, monkeypatch))
