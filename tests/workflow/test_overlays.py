"""The overlays of config/config.yaml: each holds only what it changes, and merged the way
Snakemake merges them gives the settings it was written for; the two beside the smoke one in
their dry-run form, the validation study (config/validate.yaml, docs/validation.md) and the GPU
rehearsal (config/gpu-rehearsal.yaml, issue 19); and the script that summarises a rehearsal from
Snakemake's log."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from snakemake.utils import update_config

from tests.workflow.conftest import REPO, copy_workflow, planned_jobs, snakemake

OVERLAYS = ["config/smoke.yaml", "config/validate.yaml", "config/gpu-rehearsal.yaml"]


def _load(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


def _merged(overlay: str) -> dict:
    """config/config.yaml with `overlay` on top, by Snakemake's own merge (--configfile)."""
    cfg = _load("config/config.yaml")
    update_config(cfg, _load(overlay))
    return cfg


def _restated(overlay, paper, key=""):
    """Dotted keys whose value `overlay` states as `paper` already has it (mappings compared key
    by key, as they merge; a list or a value as a whole, as it replaces)."""
    if isinstance(overlay, dict) and isinstance(paper, dict):
        return [k for name, value in overlay.items() if name in paper
                for k in _restated(value, paper[name], f"{key}.{name}" if key else name)]
    return [key] if overlay == paper else []


@pytest.mark.parametrize("overlay", [*OVERLAYS, "config/decide.yaml"])
def test_an_overlay_holds_only_what_it_changes_from_the_paper_config(overlay):
    # Anything restated would have to be changed in every overlay when the paper config changes.
    assert _restated(_load(overlay), _load("config/config.yaml")) == [], overlay


# What each overlay inherits inside the mappings it changes in part, frozen from the overlays
# as they were before they were cut to their differences: the merge must still give these.
SMALL_THREADS = {"data": 1, "search": 1, "derive": 1, "select": 1, "train": 1, "train_imagenet": 1,
                 "gpu_check": 1, "plot": 1, "tables": 1}
ALL_VARIANTS = ["darts", "gumbel", "gumbel_transition", "itnas"]
MERGED = {
    "config/smoke.yaml": {
        "evaluate": {"cifar10": {"cells": ALL_VARIANTS, "baselines": ["DARTS_V1", "DARTS_V2"], "random": 2,
                                 "random_search": True,
                                 "seeds": [0, 1]},
                     **{b: {"cells": ["itnas"], "baselines": [], "seeds": [0, 1]}
                        for b in ("cifar100", "cinic10", "svhn", "imagenet")}},
        "threads": SMALL_THREADS,
        "resources": {"data": {"mem_mb": 1000, "runtime": 30}, "search": {"gpu": 1, "mem_mb": 2000, "runtime": 30},
                      "derive": {"mem_mb": 1000, "runtime": 10}, "select": {"gpu": 1, "mem_mb": 2000, "runtime": 30},
                      "train": {"gpu": 1, "mem_mb": 2000, "runtime": 30},
                      "train_imagenet": {"mem_mb": 2000, "runtime": 30}, "gpu_check": {"mem_mb": 1000, "runtime": 10},
                      "plot": {"mem_mb": 1000, "runtime": 10}, "tables": {"mem_mb": 1000, "runtime": 10}},
        "tracking": {"enabled": True, "uri": None, "experiment": "itnas-smoke"},
    },
    "config/validate.yaml": {
        "evaluate": {"cifar10": {"cells": ALL_VARIANTS, "baselines": ["DARTS_V2"], "random": 4, "random_search": True, "seeds": [0, 1]},
                     **{b: {"cells": [], "baselines": [], "seeds": [0]}
                        for b in ("cifar100", "cinic10", "svhn", "imagenet")}},
        "threads": SMALL_THREADS,
        "resources": {"data": {"mem_mb": 1000, "runtime": 30}, "search": {"gpu": 1, "mem_mb": 4000, "runtime": 60},
                      "derive": {"mem_mb": 1000, "runtime": 10}, "select": {"gpu": 1, "mem_mb": 3000, "runtime": 60},
                      "train": {"gpu": 1, "mem_mb": 3000, "runtime": 60},
                      "train_imagenet": {"mem_mb": 2000, "runtime": 30}, "gpu_check": {"mem_mb": 1000, "runtime": 10},
                      "plot": {"mem_mb": 1000, "runtime": 10}, "tables": {"mem_mb": 1000, "runtime": 10}},
        "tracking": {"enabled": True, "uri": None, "experiment": "itnas-validate"},
    },
    "config/gpu-rehearsal.yaml": {
        "evaluate": {"cifar10": {"cells": ["darts", "itnas"], "baselines": ["DARTS_V2"], "random": 1, "random_search": True, "seeds": [0]},
                     **{b: {"cells": ["itnas"], "baselines": [], "seeds": [0]}
                        for b in ("cifar100", "cinic10", "svhn", "imagenet")}},
        "threads": {"data": 2, "search": 4, "derive": 1, "select": 4, "train": 4, "train_imagenet": 8,
                    "gpu_check": 1, "plot": 1, "tables": 1},
        "resources": {"data": {"mem_mb": 2000, "runtime": 10}, "search": {"gpu": 1, "mem_mb": 16000, "runtime": 15},
                      "derive": {"mem_mb": 1000, "runtime": 5}, "select": {"gpu": 1, "mem_mb": 16000, "runtime": 15},
                      "train": {"gpu": 1, "mem_mb": 16000, "runtime": 15},
                      "train_imagenet": {"mem_mb": 32000, "runtime": 15}, "gpu_check": {"mem_mb": 4000, "runtime": 5},
                      "plot": {"mem_mb": 2000, "runtime": 5}, "tables": {"mem_mb": 2000, "runtime": 5}},
        "tracking": {"enabled": True, "uri": None, "experiment": "itnas-gpu-rehearsal"},
    },
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_an_overlay_merged_like_snakemake_gives_the_settings_it_was_written_for(overlay):
    cfg = _merged(overlay)
    for section, expected in MERGED[overlay].items():
        assert cfg[section] == expected, (overlay, section)
    # The recipes, the search benchmark and the selection are the paper config's; the GPU rehearsal
    # searches the paper's variants too, only on one seed.
    assert cfg["search"]["config"] == "config/recipes/search.yaml" and cfg["search"]["benchmark"] == "cifar10"
    assert cfg["search"]["variants"] == ALL_VARIANTS and cfg["select"]["seed"] == 0
    assert cfg["select"]["config"] == cfg["train"]["cifar"]["config"] == "config/recipes/train_cifar.yaml"
    assert cfg["train"]["imagenet"]["config"] == "config/recipes/train_imagenet.yaml"
    assert cfg["train"]["imagenet"]["gpus"] == 1 and cfg["derive"] == {"tau": None}
    assert cfg["data_root"] == "data" and cfg["results"] == "results/" + overlay.split("/")[1].removesuffix(".yaml")
    assert all(name.startswith("synthetic-") for name in cfg["datasets"].values())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("overlays") / "itnas")


def _commands(workdir, overlay: str) -> dict[str, list[str]]:
    """Each planned job's shell command, by rule."""
    out = snakemake(workdir, "-n", "-p", "--configfile", overlay).stdout
    commands: dict[str, list[str]] = {}
    for block in out.split("\nrule ")[1:] + out.split("\nlocalrule ")[1:]:
        rule = block.split(":", 1)[0]
        shell = [line for line in block.splitlines() if line.startswith("Shell command:")]
        commands.setdefault(rule, []).extend(shell)
    return commands


def test_the_validation_study_searches_every_variant_and_trains_random_cells_beside_them(workdir):
    jobs = planned_jobs(workdir, "--configfile", "config/validate.yaml")
    assert jobs["search"] == 6 and jobs["select"] == 4  # 3 search settings x 2 seeds; 4 variants
    assert jobs["sample"] == 4 and jobs["train"] == (4 + 4 + 1) * 2  # selected + random + DARTS_V2, 2 seeds
    assert "train_imagenet" not in jobs and jobs["data_fetch"] == 1  # the CIFAR-10 stand-in only
    commands = _commands(workdir, "config/validate.yaml")
    assert all("--set arch_optim.lr=0.03" in c and "--dataset synthetic-cifar10" in c for c in commands["search"])
    # Searched and random cells train under one recipe: the same --set overrides, in the same order.
    recipes = {c.split("--set", 1)[1].split(">")[0] for c in commands["train"]}
    assert len(recipes) == 1


def test_the_gpu_rehearsal_runs_every_rule_of_the_paper_dag_at_the_paper_sizes(workdir):
    paper = planned_jobs(workdir)
    rehearsal = planned_jobs(workdir, "--configfile", "config/gpu-rehearsal.yaml")
    assert set(rehearsal) == set(paper)  # every rule, fewer jobs
    assert all(0 < rehearsal[rule] <= paper[rule] for rule in paper)
    commands = _commands(workdir, "config/gpu-rehearsal.yaml")
    runs = commands["search"] + commands["select"] + commands["train"] + commands["train_imagenet"]
    assert runs
    for command in runs:
        # The shipped runtime defaults and the paper's networks: only epochs and image counts change.
        assert "runtime." not in command.replace("runtime.max_batch_per_process", ""), command
        assert "model." not in command, command
    assert all("--nproc 1" in c for c in commands["train_imagenet"])


SNAKEMAKE_LOG = """\
[Fri Dec  4 12:46:39 2026]
localrule data_fetch:
    output: data/synthetic-cifar10/manifest.json
    log: results/logs/data/synthetic-cifar10.log
    jobid: 3
    wildcards: dataset=synthetic-cifar10
    resources: tmpdir=/tmp

[Fri Dec  4 12:46:40 2026]
Finished jobid: 3 (Rule: data_fetch)
1 of 4 steps (25%) done

[Fri Dec  4 12:46:40 2026]
rule search:
    log: results/logs/search/synthetic-cifar10/itnas/seed0.log
    jobid: 7
    wildcards: dataset=synthetic-cifar10, variant=itnas, seed=0

[Fri Dec  4 12:46:41 2026]
rule search:
    log: results/logs/search/synthetic-cifar10/darts/seed0.log
    jobid: 8
    wildcards: dataset=synthetic-cifar10, variant=darts, seed=0

[Fri Dec  4 12:50:40 2026]
Finished jobid: 7 (Rule: search)

[Fri Dec  4 12:50:45 2026]
Error in rule search:
    message: None
    jobid: 8
    log: results/logs/search/synthetic-cifar10/darts/seed0.log (check log file(s) for error details)

[Fri Dec  4 12:50:45 2026]
rule derive:
    jobid: 9
    wildcards: dataset=synthetic-cifar10, variant=itnas, seed=0
"""


def test_the_rehearsal_summary_reads_jobs_rules_and_failures_from_snakemakes_log(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import rehearsal_summary
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    jobs, last = rehearsal_summary.parse_log(SNAKEMAKE_LOG)
    by_id = {j["jobid"]: j for j in jobs}
    assert {k: (j["rule"], j["status"]) for k, j in by_id.items()} == {
        3: ("data_fetch", "done"), 7: ("search", "done"), 8: ("search", "failed"), 9: ("derive", "running")}
    assert (by_id[7]["end"] - by_id[7]["start"]).total_seconds() == 240
    assert by_id[8]["log"] == "results/logs/search/synthetic-cifar10/darts/seed0.log"
    assert by_id[7]["wildcards"] == "dataset=synthetic-cifar10, variant=itnas, seed=0"
    assert last.minute == 50 and last.second == 45
    (tmp_path / "smk.log").write_text(SNAKEMAKE_LOG)
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "rehearsal_summary.py"), str(tmp_path / "smk.log"),
                           str(tmp_path / "results"), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "failed: search dataset=synthetic-cifar10, variant=darts, seed=0" in proc.stdout
    assert (tmp_path / "jobs.json").exists()
