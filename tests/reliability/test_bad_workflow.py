"""The workflow refuses bad configs at `snakemake -n`, before any job, with one line naming the
file and the key: schema problems blamed on the overlay that sets the key, YAML problems Snakemake
lets through, folders it must not write in, names no registry knows, a repeated --configfile."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from itnas.config import check_workflow_config, check_workflow_recipes
from itnas.errors import UserError
from tests.workflow.conftest import SMOKE, copy_workflow, snakemake

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
BASE = REPO / "config" / "config.yaml"


def _merge(base: dict, overlay: dict) -> dict:
    """Snakemake's merge of an overlay: mappings merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _check(tmp_path: Path, *overlays: dict | str) -> dict:
    config, sources = yaml.safe_load(BASE.read_text()), [(str(BASE), BASE)]
    for k, overlay in enumerate(overlays):
        path = tmp_path / f"overlay{k}.yaml"
        path.write_text(overlay if isinstance(overlay, str) else yaml.safe_dump(overlay))
        loaded = yaml.safe_load(path.read_text())
        config = _merge(config, loaded) if isinstance(loaded, dict) else config
        sources.append((str(path), path))
    check_workflow_config(config, sources, SCHEMA)
    return config


def test_the_shipped_configs_and_the_recipes_they_name_pass(tmp_path, monkeypatch):
    smoke = yaml.safe_load((REPO / SMOKE).read_text())
    assert isinstance(smoke, dict) and smoke, f"{SMOKE} is an overlay that changes something"
    monkeypatch.chdir(REPO)  # the recipes' paths are relative to the workflow's folder
    for config in (_check(tmp_path), _check(tmp_path, (REPO / SMOKE).read_text())):
        assert all(Path(config[key]["config"]).is_file() for key in ("search", "select")), config
        assert all(Path(config["train"][p]["config"]).is_file() for p in ("cifar", "imagenet")), config["train"]
        check_workflow_recipes(config)
    # What passes them refuses the same configs with one value broken.
    with pytest.raises(UserError, match=r"overlay1\.yaml: key 'search\.seeds\.0'"):
        _check(tmp_path, (REPO / SMOKE).read_text(), {"search": {"seeds": [-1]}})


OVERLAYS = {
    "empty results": ({"results": ""}, "overlay0.yaml: key 'results': got ''; expected a folder"),
    "results at the root": ({"results": "/"}, "overlay0.yaml: key 'results': got '/'"),
    "data root of slashes": ({"data_root": "//"}, "overlay0.yaml: key 'data_root': got '//'"),
    "blank data root": ({"data_root": "  "}, "key 'data_root'"),
    "negative seed": ({"search": {"seeds": [0, -1]}}, "overlay0.yaml: key 'search.seeds.1': expected a number >= 0"),
    "overflowing seed": ({"evaluate": {"cifar10": {"seeds": [2**40]}}},
                         "key 'evaluate.cifar10.seeds.0': expected a number <= 2147483647"),
    "float seed": ({"select": {"seed": 1.0}}, "key 'select.seed': expected integer, got 1.0"),
    "unknown key": ({"resultz": "x"}, "overlay0.yaml: key 'resultz': unknown key"),
    "integer key": ("1: x\n", "overlay0.yaml: key '1': keys are names"),
    "duplicate key": ("results: a\nresults: b\n", "overlay0.yaml: refused at line 2, column 1: duplicate key 'results'"),
    "top level is a list": ("- results\n", "overlay0.yaml: expected a mapping of keys at the top level, got list"),
    "NaN GPUs": ({"train": {"imagenet": {"gpus": float("nan")}}}, "key 'train.imagenet.gpus'"),
}


@pytest.mark.parametrize("case", list(OVERLAYS))
def test_a_bad_overlay_is_one_line_naming_it_and_the_key(tmp_path, case):
    overlay, needle = OVERLAYS[case]
    with pytest.raises(UserError) as err:
        _check(tmp_path, overlay)
    assert needle in str(err.value) and "\n" not in str(err.value), err.value


def test_the_last_overlay_setting_a_key_is_blamed(tmp_path):
    with pytest.raises(UserError, match=r"overlay1\.yaml: key 'results'"):
        _check(tmp_path, {"results": "/"}, {"results": "/"})
    with pytest.raises(UserError, match=r"overlay0\.yaml: key 'results'"):
        _check(tmp_path, {"results": "/"}, {"data_root": "data"})


# --------------------------------------------------------------------------- snakemake -n


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("bad-workflow") / "itnas")


def _dry_run(workdir: Path, name: str, overlay: dict | None, *flags: str) -> str:
    args = ["-n", "--configfile", SMOKE]
    if overlay is not None:
        (workdir / "config" / name).write_text(yaml.safe_dump(overlay))
        args.append(f"config/{name}")
    proc = snakemake(workdir, *args, *flags, check=False, timeout=300)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert len(out.splitlines()) < 12, out  # not a dump of the schema
    return out


@pytest.mark.slow
@pytest.mark.parametrize("overlay,needle", [
    ({"results": "/"}, "config/bad.yaml: key 'results': got '/'"),
    ({"search": {"variants": ["itnas"], "seeds": [-1]}}, "config/bad.yaml: key 'search.seeds.0'"),
    ({"datasets": {"svhn": "mnist"}}, "config key 'datasets.svhn': unknown dataset 'mnist'"),
    ({"evaluate": {"cifar10": {"baselines": ["DARTS_V9"], "seeds": [0]}}},
     "config key 'evaluate.cifar10.baselines': 'DARTS_V9' is not a registered genotype"),
])
def test_snakemake_refuses_a_bad_overlay_before_any_job(workdir, overlay, needle):
    out = _dry_run(workdir, "bad.yaml", overlay)
    assert needle in out, out
    assert not (workdir / "results").exists()


@pytest.mark.slow
@pytest.mark.parametrize("overlay, needles", [
    ({"search": {"set": ["arch_optim.orderr=second"]}},
     ["config key 'search.set' (search recipe): ", "(with --set arch_optim.orderr=second): key 'arch_optim.orderr': unknown key"]),
    ({"search": {"config": "config/my_train.yaml"}},
     ["config key 'search.config' (search recipe): config/my_train.yaml: key 'protocol': unknown key"]),
    ({"evaluate": {"cifar10": {"set": ["epochs=0"]}}},
     ["config key 'evaluate.cifar10.set' (train recipe): ", "key 'epochs': expected a number >= 1"]),
])
def test_snakemake_checks_every_recipe_with_its_set_lists_before_any_job(workdir, overlay, needles):
    """A wrong key or value in a `set` list, or a training recipe where the search recipe belongs,
    is refused at `snakemake -n` with the command's one line, not hours into a run."""
    (workdir / "config" / "my_train.yaml").write_text("protocol: cifar\nepochs: 3\n")
    out = _dry_run(workdir, "bad.yaml", overlay)
    assert all(needle in out for needle in needles), out
    assert not (workdir / "results").exists()


@pytest.mark.slow
def test_a_repeated_configfile_flag_is_refused_rather_than_keeping_the_last(workdir):
    """`--configfile smoke.yaml --configfile mine.yaml` would silently start the paper-scale run."""
    out = _dry_run(workdir, "mine.yaml", {"search": {"seeds": [0]}}, "--configfile", "config/mine.yaml")
    assert "--configfile is given 2 times" in out, out
