"""Values no run can use end in one line naming the key or flag, before any work: a float where an
integer goes, NaN or infinity, keys that are not names, sizes far beyond any machine, seeds out
of range, a batch that batch norm cannot train on, and memory that runs out all the same."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from itnas.cli import main
from itnas.cli.common import MAX_SEED
from itnas.config import load_config
from tests.reliability.errors import one_line_error

REPO = Path(__file__).resolve().parents[2]

# (config text, --set items, what the one line must say); each must be refused by `itnas search`.
SEARCH_VALUES = {
    "float epochs": ("epochs: 2.0\n", [], "key 'epochs': expected integer, got 2.0"),
    "float layers from --set": ("", ["model.layers=5.0"], "key 'model.layers': expected integer, got 5.0"),
    "float batch size": ("data:\n  batch_size: 8.0\n", [], "key 'data.batch_size': expected integer"),
    "float in a nullable integer": ("", ["data.max_samples=64.0"], "key 'data.max_samples'"),
    "float streams": ("", ["runtime.streams=2.0"], "key 'runtime.streams'"),
    "NaN epochs": ("epochs: .nan\n", [], "key 'epochs': expected integer, got nan"),
    "NaN lr": ("optim:\n  lr: .nan\n", [], "key 'optim.lr': expected a finite number, got nan"),
    "infinite lr": ("optim:\n  lr: .inf\n", [], "key 'optim.lr': expected a finite number, got inf"),
    "minus infinity lr_min": ("", ["optim.lr_min=-.inf"], "key 'optim.lr_min': expected a finite number"),
    "NaN grad clip": ("", ["optim.grad_clip=.NaN"], "key 'optim.grad_clip': expected a finite number"),
    "NaN tau": ("tau:\n  start: .nan\n", [], "key 'tau.start': expected a finite number"),
    "NaN in a list": ("arch_optim:\n  betas: [.nan, 0.9]\n", [], "key 'arch_optim.betas.0'"),
    "NaN portion": ("", ["data.train_portion=.nan"], "key 'data.train_portion'"),
    "integer key": ("1: 2\n", [], "key '1': keys are names, got int 1"),
    "boolean key": ("true: 2\n", [], "key 'True': keys are names, got bool"),
    "null key": ("null: 2\n", [], "key 'None': keys are names, got NoneType"),
    "float key, nested": ("optim:\n  1.5: 0.1\n", [], "key 'optim.1.5': keys are names"),
    "a set for a list": ("arch_optim:\n  betas: !!set {0.5, 0.9}\n", [], "key 'arch_optim.betas'"),
    "a date for a name": ("dataset: 2024-01-01\n", [], "key 'dataset': expected string"),
    "overflowing epochs": ("", ["epochs=99999999999999999999999"], "key 'epochs': expected a number <= 10000"),
    "overflowing layers": ("", ["model.layers=99999999999999999999999"], "key 'model.layers': expected a number <= 100"),
    "huge channels": ("model:\n  init_channels: 100000\n", [], "key 'model.init_channels': expected a number <= 1024"),
    "huge batch": ("", ["data.batch_size=100000000"], "key 'data.batch_size': expected a number <= 65536"),
    "overflowing max_samples": ("", ["data.max_samples=99999999999999999999998"], "key 'data.max_samples'"),
    "thousands of workers": ("", ["runtime.workers=100000"], "key 'runtime.workers': expected a number <= 256"),
    "huge eval batch": ("", ["runtime.eval_batch_size=99999999999999999999998"], "key 'runtime.eval_batch_size'"),
    "thousands of streams": ("", ["runtime.streams=100000"], "key 'runtime.streams'"),
    "empty data root": ("data_root: ''\n", [], "key 'data_root'"),
}


def _search(tmp_path: Path, text: str, overrides: list[str], seed: str = "0") -> list[str]:
    args = ["search", "--seed", seed, "--out", str(tmp_path / "run")]
    if text:  # else no recipe: the schema's defaults (an empty recipe file is refused)
        cfg = tmp_path / "search.yaml"
        cfg.write_text(text)
        args += ["--config", str(cfg)]
    for item in overrides:
        args += ["--set", item]
    return args


@pytest.mark.parametrize("case", list(SEARCH_VALUES))
def test_values_no_run_can_use_are_refused_naming_the_key(tmp_path, capsys, case):
    text, overrides, needle = SEARCH_VALUES[case]
    err = one_line_error(capsys, main(_search(tmp_path, text, overrides)))
    assert needle in err, err
    assert not (tmp_path / "run").exists()


TRAIN_VALUES = {
    "float epochs": (["epochs=1.0"], "key 'epochs': expected integer, got 1.0"),
    "float cutout": (["data.cutout=16.0"], "key 'data.cutout': expected integer"),
    "NaN warm-up": (["optim.warmup_epochs=.nan"], "key 'optim.warmup_epochs': expected a finite number"),
    "infinite label smoothing": (["optim.label_smoothing=.inf"], "key 'optim.label_smoothing'"),
    "NaN auxiliary weight": (["model.auxiliary_weight=.nan"], "key 'model.auxiliary_weight'"),
    "overflowing micro-batch": (["runtime.max_batch_per_process=10000000000000000000000"],
                                "key 'runtime.max_batch_per_process'"),
    "batch norm on one image": (["data.batch_size=1"], "key 'data.batch_size': batch norm in the auxiliary head"),
    "batch norm on one image per micro-batch": (["data.batch_size=8", "runtime.max_batch_per_process=1"],
                                                "key 'runtime.max_batch_per_process': batch norm"),
}


@pytest.mark.parametrize("case", list(TRAIN_VALUES))
def test_training_values_no_run_can_use_are_refused_naming_the_key(tmp_path, capsys, case):
    overrides, needle = TRAIN_VALUES[case]
    args = ["train", "--config", "config/recipes/train_cifar.yaml", "--genotype", "DARTS_V2", "--dataset",
            "synthetic-cifar10", "--seed", "0", "--out", str(tmp_path / "run")]
    for item in overrides:
        args += ["--set", item]
    err = one_line_error(capsys, main(args))
    assert needle in err, err
    assert not (tmp_path / "run").exists()


def test_one_image_per_step_is_fine_without_the_auxiliary_head():
    cfg = load_config(None, "train", ["data.batch_size=1", "model.auxiliary=false"])
    assert cfg["data"]["batch_size"] == 1


def test_integers_stay_integers_and_numbers_take_integers():
    cfg = load_config(None, "search", ["epochs=3", "optim.lr=1", "optim.grad_clip=5"])
    assert cfg["epochs"] == 3 and cfg["optim"]["lr"] == 1


# --------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("seed", ["-1", str(MAX_SEED + 1), str(2**64)])
@pytest.mark.parametrize("command", ["search", "train", "select", "sample"])
def test_seeds_out_of_range_are_refused_by_every_command(tmp_path, capsys, seed, command):
    if command == "search":
        args = _search(tmp_path, "", [], seed)
    elif command == "sample":
        args = ["sample", "--seed", seed, "--out", str(tmp_path / "run")]
    else:
        args = [command, "--dataset", "synthetic-cifar10", "--seed", seed, "--out", str(tmp_path / "run"),
                "--genotype" if command == "train" else "--genotypes", "DARTS_V2"]
    err = one_line_error(capsys, main(args))
    assert f"--seed {seed}: expected an integer from 0 to {MAX_SEED}" in err
    assert not (tmp_path / "run").exists()


def test_the_commands_and_the_workflow_take_the_same_seeds():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    seed = schema["$defs"]["seed"]
    assert (seed["minimum"], seed["maximum"]) == (0, MAX_SEED)
    assert schema["$defs"]["seeds"]["items"] == {"$ref": "#/$defs/seed"}
    assert schema["properties"]["select"]["properties"]["seed"]["$ref"] == "#/$defs/seed"


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("flags,needle", [
    (["--layers", str(10**20)], "--layers 100000000000000000000: expected a number <= 100"),
    (["--init-channels", "100000"], "--init-channels 100000: expected a number <= 1024"),
    (["--layers", "2"], "--layers 2: expected a number >= 3"),
])
def test_stats_refuses_sizes_its_config_keys_refuse(capsys, flags, needle):
    err = one_line_error(capsys, main(["stats", "--genotype", "DARTS_V2", "--dataset", "cifar10", *flags]))
    assert needle in err, err


def test_memory_that_runs_out_anyway_ends_in_one_line(tmp_path, capsys, monkeypatch, tiny_search_overrides):
    """Sizes within the schema's bounds may still not fit a machine: one line, not a traceback."""
    import itnas.search.loop

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    monkeypatch.setattr(itnas.search.loop, "run_search", out_of_memory)
    err = one_line_error(capsys, main(_search(tmp_path, "", tiny_search_overrides)))
    assert "out of memory" in err and "data.batch_size" in err


def test_other_runtime_errors_are_not_taken_for_memory(tmp_path, monkeypatch, tiny_search_overrides):
    import itnas.search.loop

    def bug(*args, **kwargs):
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(itnas.search.loop, "run_search", bug)
    with pytest.raises(RuntimeError, match="a bug of ours"):
        main(_search(tmp_path, "", tiny_search_overrides))
