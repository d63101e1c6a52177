"""The job recipes (config/recipes/) resolve to the paper's settings, and state only what the
schemas' defaults do not already hold: the paper's search and CIFAR settings are the defaults of
itnas/schemas/search.json and train.json (each key described with its section), the ImageNet
protocol is spelled out in its recipe, and how a job runs defaults to itnas/schemas/runtime.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from itnas.config import defaults, flatten, load_config, load_schema
from itnas.files import read_yaml

RECIPES = Path(__file__).resolve().parents[1] / "config" / "recipes"


def _resolved(name: str, kind: str) -> dict:
    return flatten(load_config(RECIPES / name, kind))


def test_the_search_recipe_resolves_to_the_paper_s_search_settings():
    cfg = _resolved("search.yaml", "search")
    paper = {  # section 4.1.1, DARTS's where the paper is silent (SPEC section 3)
        "dataset": "cifar10", "epochs": 50, "data.batch_size": 64, "data.train_portion": 0.5,
        "model.layers": 8, "model.init_channels": 16, "optim.lr": 0.025, "optim.lr_min": 0.001,
        "optim.momentum": 0.9, "optim.weight_decay": 3e-4, "optim.grad_clip": 5.0,
        "arch_optim.lr": 3e-4, "arch_optim.weight_decay": 1e-3, "arch_optim.betas": [0.5, 0.999],
        "arch_optim.order": "first", "tau.start": 5.0, "tau.end": 0.5,
        "arch.gumbel": True, "arch.transition": True, "arch.tiep": True, "arch.none_op": False,
    }
    assert {key: cfg[key] for key in paper} == paper


def test_the_cifar_recipe_resolves_to_the_paper_s_cifar_protocol():
    cfg = _resolved("train_cifar.yaml", "train")
    paper = {  # section 4.1.2: DARTS's protocol (SPEC section 7)
        "protocol": "cifar", "epochs": 600, "model.layers": 20, "model.init_channels": 36,
        "model.auxiliary": True, "model.auxiliary_weight": 0.4, "model.drop_path_prob": 0.2,
        "data.batch_size": 96, "data.cutout": 16, "optim.lr": 0.025, "optim.lr_schedule": "cosine",
        "optim.lr_min": 0.0, "optim.warmup_epochs": 0, "optim.momentum": 0.9, "optim.weight_decay": 3e-4,
        "optim.grad_clip": 5.0, "optim.label_smoothing": 0.0, "selection.epochs": 100,
    }
    assert {key: cfg[key] for key in paper} == paper


def test_the_imagenet_recipe_resolves_to_the_paper_s_imagenet_protocol():
    cfg = _resolved("train_imagenet.yaml", "train")
    paper = {  # section 4.2.1: PC-DARTS's recipe (SPEC section 7)
        "protocol": "imagenet", "epochs": 250, "model.layers": 14, "model.init_channels": 48,
        "model.auxiliary": True, "model.auxiliary_weight": 0.4, "data.batch_size": 1024,
        "optim.lr": 0.5, "optim.lr_schedule": "linear", "optim.lr_min": 0.0, "optim.warmup_epochs": 5,
        "optim.momentum": 0.9, "optim.weight_decay": 3e-5, "optim.label_smoothing": 0.1,
    }
    assert {key: cfg[key] for key in paper} == paper


@pytest.mark.parametrize("name, kind", [("search.yaml", "search"), ("train_cifar.yaml", "train")])
def test_the_search_and_cifar_recipes_state_only_how_their_jobs_run(name, kind):
    # Their paper settings are the schema's defaults: stated here too, they would have two homes.
    stated = flatten(read_yaml(RECIPES / name, "recipe"))
    default = flatten(defaults(kind))
    assert all(key.startswith("runtime.") for key in stated), sorted(stated)
    assert [key for key, value in stated.items() if value == default[key]] == []


def test_the_imagenet_recipe_states_its_whole_protocol_and_only_the_runtime_keys_it_changes():
    stated = flatten(read_yaml(RECIPES / "train_imagenet.yaml", "recipe"))
    default = flatten(defaults("train"))
    method = {key for key in default if not key.startswith("runtime.")}
    smoke_knobs = {"data_root", "data.max_train_samples", "data.max_test_samples"}  # where, not what
    assert method - smoke_knobs <= set(stated), sorted(method - smoke_knobs - set(stated))
    assert [key for key, value in stated.items() if key.startswith("runtime.") and value == default[key]] == []


SOURCES = ("paper 4.", "DARTS", "none in the CIFAR protocol")
PAPER_KEYS = {
    "search": ["dataset", "epochs", "model.layers", "model.init_channels", "model.stem_multiplier",
               "data.batch_size", "data.train_portion", "optim.lr", "optim.lr_min", "optim.momentum",
               "optim.weight_decay", "optim.grad_clip", "arch_optim.lr", "arch_optim.weight_decay",
               "arch_optim.betas", "arch_optim.order", "tau.start", "tau.end"],
    "train": ["epochs", "model.layers", "model.init_channels", "model.auxiliary", "model.auxiliary_weight",
              "model.drop_path_prob", "data.batch_size", "data.cutout", "optim.lr", "optim.lr_schedule",
              "optim.lr_min", "optim.warmup_epochs", "optim.momentum", "optim.weight_decay", "optim.grad_clip",
              "optim.label_smoothing", "selection.epochs"],
}


@pytest.mark.parametrize("kind", ["search", "train"])
def test_each_paper_setting_of_a_schema_names_the_source_of_its_default(kind):
    def description(key):
        node = load_schema(kind)
        for part in key.split("."):
            node = node["properties"][part]
        return node.get("description", "")

    assert [key for key in PAPER_KEYS[kind] if not any(s in description(key) for s in SOURCES)] == []
