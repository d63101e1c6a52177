"""config.py: a recipe read, overridden with `--set`, filled with the schema's defaults and
checked, every problem one line naming the file and the key; and the workflow's check of every
recipe it names with the `set` lists its jobs apply (`check_workflow_recipes`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from itnas.config import (
    apply_overrides,
    check_value,
    check_workflow_recipes,
    defaults,
    fill_defaults,
    flatten,
    load_config,
    parse_override,
)
from itnas.errors import UserError


def _one_line(call, *args, **kwargs) -> str:
    with pytest.raises(UserError) as err:
        call(*args, **kwargs)
    message = str(err.value)
    assert "\n" not in message, message
    return message


# ----------------------------------------------------------------------------- overrides


def test_flatten_gives_dotted_keys_and_keeps_lists_as_values():
    assert flatten({"optim": {"lr": 0.1, "betas": [0.5, 0.9]}, "epochs": 2}) == {
        "optim.lr": 0.1, "optim.betas": [0.5, 0.9], "epochs": 2}


def test_an_override_value_is_yaml():
    assert parse_override("optim.lr=1e-3") == (["optim", "lr"], 0.001)
    assert parse_override("arch_optim.betas=[0.5, 0.999]") == (["arch_optim", "betas"], [0.5, 0.999])
    assert parse_override("data.max_samples=") == (["data", "max_samples"], None)
    assert parse_override("dataset=a=b") == (["dataset"], "a=b")  # only the first '=' splits


@pytest.mark.parametrize("item, needle", [("epochs", "expected dotted.key=value"), ("=2", "expected dotted.key=value"),
                                          ("optim..lr=1", "expected dotted.key=value"),
                                          ("optim={lr: 1", "value is not valid YAML")])
def test_a_malformed_override_is_one_line_quoting_it(item, needle):
    message = _one_line(parse_override, item)
    assert message.startswith(f"--set '{item}': ") and needle in message


def test_overrides_make_missing_sections_and_refuse_to_go_below_a_value():
    cfg = {"optim": {"lr": 0.1}, "epochs": 2}
    out = apply_overrides(cfg, ["optim.lr=0.2", "model.layers=5"])
    assert out == {"optim": {"lr": 0.2}, "epochs": 2, "model": {"layers": 5}}
    assert cfg == {"optim": {"lr": 0.1}, "epochs": 2}  # the input is left as it was
    assert "'epochs' is not a section" in _one_line(apply_overrides, cfg, ["epochs.first=1"])


def test_defaults_fill_what_is_missing_and_keep_what_is_given():
    schema = {"type": "object", "properties": {
        "a": {"type": "integer", "default": 1},
        "sub": {"type": "object", "properties": {"b": {"type": "string", "default": "x"}, "c": {"type": "integer"}}}}}
    assert fill_defaults({}, schema) == {"a": 1, "sub": {"b": "x"}}
    assert fill_defaults({"a": 5, "sub": {"b": "y", "c": 2}}, schema) == {"a": 5, "sub": {"b": "y", "c": 2}}


# ----------------------------------------------------------------------------- recipes


def test_a_recipe_is_read_overridden_and_filled_with_the_schemas_defaults(tmp_path):
    path = tmp_path / "search.yaml"
    path.write_text("# the paper's settings\nepochs: 7\noptim:\n  lr: 0.05\n")
    cfg = load_config(path, "search", ["model.layers=5"])
    assert (cfg["epochs"], cfg["optim"]["lr"], cfg["model"]["layers"]) == (7, 0.05, 5)
    assert cfg["runtime"] == defaults("search")["runtime"] and cfg["optim"]["momentum"] == defaults("search")["optim"]["momentum"]
    assert load_config(None, "train") == defaults("train")  # no file: the schema's defaults


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing but a comment\n", "---\n"])
def test_an_empty_recipe_is_refused_naming_the_file(tmp_path, text):
    path = tmp_path / "search.yaml"
    path.write_text(text)
    message = _one_line(load_config, path, "search", ["epochs=2"])
    assert message.startswith(f"{path}: the file is empty") and "search recipe" in message


def test_a_recipe_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("- epochs\n")
    assert _one_line(load_config, path, "train") == f"{path}: expected a mapping of keys at the top level, got list"


def test_problems_name_the_file_the_overrides_and_the_key(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("epochs: 3\n")
    message = _one_line(load_config, path, "train", ["optim.lrr=1"])
    assert message.startswith(f"{path} (with --set optim.lrr=1): key 'optim.lrr': unknown key (expected one of: ")
    assert "lr_min" in message
    assert "key 'protocol': expected one of cifar, imagenet" in _one_line(load_config, path, "train", ["protocol=mnist"])


def test_the_cross_key_check_runs_after_the_defaults_with_the_source(tmp_path):
    seen = []
    load_config(None, "search", ["epochs=3"], check=lambda cfg, source: seen.append((cfg["epochs"], source)))
    assert seen == [(3, "<search defaults> (with --set epochs=3)")]


def test_a_flag_is_checked_against_the_key_it_mirrors():
    check_value("search", "runtime.device", "cuda:0", "--device")
    assert "--dataset 3: expected string" in _one_line(check_value, "search", "dataset", 3, "--dataset")


# ----------------------------------------------------------------------------- the workflow's recipes


@pytest.fixture
def recipes(tmp_path, monkeypatch) -> dict:
    """A workflow config naming recipes of our own (relative paths, read from the current folder)."""
    monkeypatch.chdir(tmp_path)
    Path("search.yaml").write_text("epochs: 2\n")
    Path("cifar.yaml").write_text("protocol: cifar\nepochs: 3\n")
    Path("imagenet.yaml").write_text("protocol: imagenet\nepochs: 3\n")
    return {"search": {"config": "search.yaml", "set": ["model.layers=5"]},
            "select": {"config": "cifar.yaml", "set": []},
            "train": {"cifar": {"config": "cifar.yaml", "set": ["epochs=4"]},
                      "imagenet": {"config": "imagenet.yaml", "set": []}},
            "evaluate": {"cifar10": {"seeds": [0]}, "cifar100": {"seeds": [0], "set": ["data.cutout=0"]},
                         "imagenet": {"seeds": [0], "set": ["optim.label_smoothing=0.1"]}}}


def test_good_recipes_and_set_lists_pass(recipes):
    check_workflow_recipes(recipes)


@pytest.mark.parametrize("change, needle", [
    # A wrong key or value in a `set` list is blamed on that list.
    (lambda c: c["search"]["set"].append("arch_optim.orderr=second"),
     "config key 'search.set' (search recipe): search.yaml (with --set model.layers=5 arch_optim.orderr=second): "
     "key 'arch_optim.orderr': unknown key"),
    (lambda c: c["select"]["set"].append("selection.epochs=0"), "config key 'select.set' (train recipe): "),
    (lambda c: c["train"]["cifar"]["set"].append("epochs=two"), "config key 'train.cifar.set' (train recipe): "),
    (lambda c: c["train"]["imagenet"].update(set=["runtime.amp=sometimes"]), "key 'runtime.amp': expected one of"),
    # A benchmark's list is applied after its protocol's, to that protocol's recipe.
    (lambda c: c["evaluate"]["cifar100"]["set"].append("data.cutoff=0"),
     "config key 'evaluate.cifar100.set' (train recipe): cifar.yaml (with --set epochs=4 data.cutout=0 data.cutoff=0)"),
    (lambda c: c["evaluate"]["imagenet"]["set"].append("model.layerz=14"),
     "config key 'evaluate.imagenet.set' (train recipe): imagenet.yaml (with --set optim.label_smoothing=0.1"),
    # A training recipe where the search recipe belongs, an empty one, a missing one.
    (lambda c: c["search"].update(config="cifar.yaml"),
     "config key 'search.config' (search recipe): cifar.yaml: key 'protocol': unknown key"),
    (lambda c: Path("cifar.yaml").write_text("# to do\n"), "config key 'select.config' (train recipe): cifar.yaml: the file is empty"),
    (lambda c: c["train"]["imagenet"].update(config="nowhere.yaml"),
     "config key 'train.imagenet.config' (train recipe): nowhere.yaml: config file not found"),
])
def test_a_bad_recipe_or_set_list_is_one_line_naming_the_workflow_key(recipes, change, needle):
    change(recipes)
    message = _one_line(check_workflow_recipes, recipes)
    assert needle in message, message


def test_a_protocols_list_is_blamed_before_a_benchmarks(recipes):
    recipes["train"]["cifar"]["set"].append("epochs=-1")
    recipes["evaluate"]["cifar100"]["set"].append("epochs=-2")
    assert "config key 'train.cifar.set'" in _one_line(check_workflow_recipes, recipes)


def test_a_benchmarks_list_reaches_only_its_own_protocols_recipe(recipes):
    """CIFAR-10's list goes to the CIFAR recipe (after train.cifar.set), not to the ImageNet one."""
    recipes["evaluate"]["cifar10"]["set"] = ["data.cutout=-3"]
    message = _one_line(check_workflow_recipes, recipes)
    assert message.startswith("config key 'evaluate.cifar10.set' (train recipe): cifar.yaml (with --set epochs=4 "), message
