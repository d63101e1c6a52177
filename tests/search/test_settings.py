"""Every setting of the search recipe reaches what it controls (issue 22, point 6).

For each key of config/recipes/search.yaml (and of the search schema, which holds keys the recipe leaves
at their defaults), a check builds what the key governs (the supernet, the policy, the two
optimisers, the scheduler, the split, the batches, the temperature schedule, the derivation)
from the recipe with one UNUSUAL value for that key, and finds the value there. A learning rate,
weight decay or split passed on under the wrong name fails its check. A key without a check
fails `test_every_search_setting_has_a_check`; the `runtime` block is exempt (tests/recipes.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest
import torch

from itnas.config import defaults, flatten, load_config
from itnas.data.registry import get_spec
from itnas.data.synthetic import generate
from itnas.errors import UserError
from itnas.formats import validate_arch_state
from itnas.search.architect import Architect
from itnas.search.batches import SearchBatches, search_batches
from itnas.search.derive import derive
from itnas.search.loop import Searcher, check_search_config, search_epoch, search_runtime
from tests.recipes import SEARCH, Checks, recipe_value, settings

CHECKS = Checks()
setting = CHECKS.setting


class _NoBar:
    def update(self, *args, **kwargs) -> None:
        pass

    set_postfix = close = update


class _NoRun:
    """What `search_epoch` needs of a run: a progress bar."""

    def progress(self, total: int, desc: str) -> _NoBar:
        return _NoBar()


class Build:
    """The recipe shrunk to a few milliseconds a step, with the checked key at its unusual value
    (set last, so that it wins over the tiny sizes and over `extra`)."""

    def __init__(self, key: str, value: Any, tiny: list[str], monkeypatch, tmp_path):
        self.key, self.value, self.tiny = key, value, tiny
        self.monkeypatch, self.tmp_path = monkeypatch, tmp_path

    def at(self, value: Any) -> Build:
        """The same build with the key at `value`."""
        return Build(self.key, value, self.tiny, self.monkeypatch, self.tmp_path)

    def cfg(self, *extra: str) -> dict:
        overrides = [*self.tiny, *extra, f"{self.key}={json.dumps(self.value)}"]
        return load_config(SEARCH, "search", overrides, check=check_search_config)

    def searcher(self, *extra: str) -> Searcher:
        cfg = self.cfg(*extra)
        spec = get_spec(cfg["dataset"])
        return Searcher(cfg, spec.num_classes, spec.channels)

    def batches(self, *extra: str) -> SearchBatches:
        cfg = self.cfg(*extra)
        return search_batches(cfg, 0, search_runtime(cfg))

    def epoch(self, epoch: int, *extra: str) -> tuple[Searcher, dict]:
        """A fresh searcher after `search_epoch(epoch)` and its record: what the epoch sets up (lr,
        temperature) and derives, without its steps or validation pass (seconds each here)."""
        searcher = self.searcher(*extra)
        dry = dataclasses.replace(self.batches(*extra), steps_per_epoch=0, val_loader=[])
        record = search_epoch(searcher, dry, _NoRun(), epoch)
        return searcher, record


def first_batches(b: Build, *extra: str):
    return next(b.batches(*extra).epoch(0))


def halves(data: SearchBatches) -> tuple[int, int]:
    """Images in the weight half and in the architecture half."""
    return len(data.weight_loader.sampler), len(data.arch_loader.sampler)


def noisy(searcher: Searcher) -> bool:
    """Whether two forward passes in training mode see different edge weights (Gumbel noise)."""
    searcher.policy.train()
    a, b = searcher.policy.all_weights()["normal"], searcher.policy.all_weights()["normal"]
    return not torch.equal(a, b)


def cosine(lr: float, lr_min: float, k: int, total: int) -> float:
    return lr_min + (lr - lr_min) * 0.5 * (1 + math.cos(math.pi * k / total))


# ----------------------------------------------------------------------------- what is searched on


@setting("dataset", "synthetic-cifar100")
def _dataset(b: Build) -> None:
    generate("synthetic-cifar100", b.tmp_path)
    data = b.batches(f"data_root={b.tmp_path}")
    assert data.spec.name == "synthetic-cifar100" and data.spec.num_classes == 20


@setting("data_root", "no-such-data-root")
def _data_root(b: Build) -> None:
    with pytest.raises(UserError, match="no-such-data-root"):
        b.batches()


@setting("data.batch_size", 6)
def _batch_size(b: Build) -> None:
    (x_w, _), (x_a, _) = first_batches(b)
    assert x_w.shape[0] == x_a.shape[0] == 6
    assert b.batches().steps_per_epoch == 16 // 6  # 32 images, 16 per half


@setting("data.train_portion", 0.3)
def _train_portion(b: Build) -> None:
    assert halves(b.batches()) == (9, 23)  # floor(0.3 * 32) for the weights, the rest for alpha


@setting("data.max_samples", 40)
def _max_samples(b: Build) -> None:
    assert halves(b.batches()) == (20, 20)


# ----------------------------------------------------------------------------- the supernet


@setting("model.layers", 7)
def _layers(b: Build) -> None:
    cells = b.searcher().net.cells
    assert len(cells) == 7 and [k for k, c in enumerate(cells) if c.reduction] == [2, 4]


@setting("model.init_channels", 6)
def _init_channels(b: Build) -> None:
    net = b.searcher().net
    assert net.stem[0].out_channels == 3 * 6  # the recipe's stem_multiplier 3
    assert net.classifier.in_features == 4 * 4 * 6  # two doublings, four nodes concatenated


@setting("model.stem_multiplier", 2)
def _stem_multiplier(b: Build) -> None:
    assert b.searcher().net.stem[0].out_channels == 2 * 4  # tiny init_channels 4


@setting("arch.none_op", True)
def _none_op(b: Build) -> None:
    searcher = b.searcher()
    assert searcher.primitives[0] == "none" and len(searcher.net.cells[0].edges[0].ops) == 8
    assert searcher.arch_state()["primitives"][0] == "none"


# ----------------------------------------------------------------------------- the policy (Table 2 flags)


@setting("arch.gumbel", False)
def _gumbel(b: Build) -> None:
    searcher, record = b.epoch(0)
    assert not noisy(searcher) and "tau" not in record
    assert noisy(b.at(True).searcher())  # the control: the recipe's Gumbel draws noise


@setting("arch.transition", False)
def _transition(b: Build) -> None:
    state = b.searcher("arch.tiep=false").arch_state()  # TIEP needs the transitions
    assert "transition" not in state["normal"] and len(state["normal"]["alpha"]) == 14


@setting("arch.tiep", False)
def _tiep(b: Build) -> None:
    searcher = b.searcher()
    assert searcher.method == "darts" and searcher.variant == "gumbel_transition"
    state = validate_arch_state(searcher.arch_state(), "test")
    assert searcher.genotype() == derive(state, "darts", state["derive_tau"])


# ----------------------------------------------------------------------------- weight optimiser and schedule


@setting("optim.lr", 0.0123)
def _lr(b: Build) -> None:
    searcher, record = b.epoch(0)
    assert record["lr"] == pytest.approx(0.0123)
    assert searcher.scheduler.base_lrs == [pytest.approx(0.0123)]


@setting("optim.lr_min", 0.00077)
def _lr_min(b: Build) -> None:
    searcher = b.searcher("epochs=4")
    lrs = []
    for _ in range(4):
        searcher.scheduler.step()
        lrs.append(searcher.w_opt.param_groups[0]["lr"])
    assert lrs[1] == pytest.approx(cosine(0.025, 0.00077, 2, 4))
    assert lrs[3] == pytest.approx(0.00077)


@setting("epochs", 7)
def _epochs(b: Build) -> None:
    searcher = b.searcher()
    for _ in range(3):
        searcher.scheduler.step()
    assert searcher.w_opt.param_groups[0]["lr"] == pytest.approx(cosine(0.025, 0.001, 3, 7))
    # the temperature anneals over the 7 epochs: tau.end at the last one, halfway at the middle one
    assert b.epoch(3)[0].policy.tau == pytest.approx(2.75)
    assert b.epoch(6)[0].policy.tau == pytest.approx(0.5)


@setting("optim.momentum", 0.77)
def _momentum(b: Build) -> None:
    searcher = b.searcher()
    assert searcher.w_opt.param_groups[0]["momentum"] == 0.77
    assert searcher.architect.momentum == 0.77  # the second-order step's virtual SGD step


@setting("optim.weight_decay", 1.7e-4)
def _weight_decay(b: Build) -> None:
    searcher = b.searcher()
    assert searcher.w_opt.param_groups[0]["weight_decay"] == 1.7e-4
    assert searcher.architect.weight_decay == 1.7e-4


@setting("optim.grad_clip", 0.0123)
def _grad_clip(b: Build) -> None:
    # No weight decay, so the first SGD step moves the weights by exactly lr x the clipped gradient.
    searcher = b.searcher("optim.weight_decay=0")
    (x, y), _ = first_batches(b, "data.batch_size=2")
    before = torch.cat([p.detach().flatten().clone() for p in searcher.weights])
    searcher.weight_step(*searcher.prepare(x, y))
    after = torch.cat([p.detach().flatten() for p in searcher.weights])
    assert float((after - before).norm()) == pytest.approx(0.025 * 0.0123, rel=1e-3)


# ----------------------------------------------------------------------------- architecture optimiser


@setting("arch_optim.lr", 0.0123)
def _arch_lr(b: Build) -> None:
    assert b.searcher().a_opt.param_groups[0]["lr"] == 0.0123


@setting("arch_optim.weight_decay", 1.7e-4)
def _arch_weight_decay(b: Build) -> None:
    assert b.searcher().a_opt.param_groups[0]["weight_decay"] == 1.7e-4


@setting("arch_optim.betas", [0.3, 0.88])
def _arch_betas(b: Build) -> None:
    assert tuple(b.searcher().a_opt.param_groups[0]["betas"]) == (0.3, 0.88)


@setting("arch_optim.order", "second")
def _arch_order(b: Build) -> None:
    unrolled = []
    b.monkeypatch.setattr(Architect, "second_order", lambda self, *batches: unrolled.append(len(batches)) or 0.0)
    searcher = b.searcher()
    (x_w, y_w), (x_a, y_a) = first_batches(b)
    searcher.arch_step(x_a, y_a, x_w, y_w)
    assert unrolled == [4]  # the unrolled step, given the weight batch too


# ----------------------------------------------------------------------------- temperature and derivation


@setting("tau.start", 3.7)
def _tau_start(b: Build) -> None:
    searcher, record = b.epoch(0)
    assert searcher.policy.tau == pytest.approx(3.7) and record["tau"] == pytest.approx(3.7)


@setting("tau.end", 0.7)
def _tau_end(b: Build) -> None:
    searcher, record = b.epoch(1)  # the last epoch of the tiny search's 2
    assert searcher.policy.tau == pytest.approx(0.7) and record["tau"] == pytest.approx(0.7)
    assert searcher.arch_state()["derive_tau"] == 0.7  # derive.tau: auto, a Gumbel variant


@setting("derive.tau", 0.77)
def _derive_tau(b: Build) -> None:
    searcher = b.searcher()
    state = validate_arch_state(searcher.arch_state(), "test")
    assert state["derive_tau"] == 0.77
    assert searcher.genotype() == derive(state, "tiep", 0.77)


@setting("derive.stability_taus", [0.3, 3.0])
def _stability_taus(b: Build) -> None:
    searcher = b.searcher()
    assert set(searcher.genotype_stability(searcher.genotype())) == {"0.3", "3"}


# ----------------------------------------------------------------------------- the tests


def test_every_search_setting_has_a_check():
    keys = settings("search", SEARCH)
    assert sorted(keys - set(CHECKS)) == [], "settings without a check: add one above"
    assert sorted(set(CHECKS) - keys) == [], "checks of keys that no longer exist"


@pytest.mark.parametrize("key", sorted(CHECKS))
def test_the_unusual_value_differs_from_the_recipe_and_the_default(key):
    value = CHECKS[key].value_for(SEARCH, key)
    assert value != recipe_value(SEARCH, key) and value != flatten(defaults("search"))[key]


@pytest.mark.parametrize("key", sorted(CHECKS))
def test_each_search_setting_reaches_what_it_controls(key, tiny_search_overrides, monkeypatch, tmp_path):
    CHECKS[key].check(Build(key, CHECKS[key].value_for(SEARCH, key), tiny_search_overrides, monkeypatch, tmp_path))
