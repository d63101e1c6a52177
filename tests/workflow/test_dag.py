"""The workflow's shape without running it: lint, jobs per rule of the paper and smoke DAGs,
GPU requests, the ImageNet canary, per-rule resources from the config, profiles that name only
rules that exist, and refusal of malformed configs before any job starts."""

from __future__ import annotations

import re

import pytest
import yaml
from snakemake.utils import update_config

from tests.workflow.conftest import REPO, SMOKE, copy_workflow, planned_jobs, snakemake

PAPER_JOBS = {
    "data_fetch": 5,        # cifar10, cifar100, cinic10, svhn, imagenet
    "search": 12,           # 3 search settings x 4 seeds: itnas derives from gumbel_transition's searches
    "derive": 16,           # 4 variants x 4 seeds
    "select": 4,            # one per variant
    "select_random": 1,     # random search: the best of 4 random cells by the same selection
    "sample": 4,            # random cells
    "train": 58,            # CIFAR-10 (6 genotypes + 4 random) x 4 seeds + 3 datasets x 3 genotypes x 2 seeds
    "train_imagenet": 2,    # ITNAS and DARTS_V2, one seed
    "gpu_check": 1,         # the canary before them
    "plot_cell": 4,
    "plot_search": 3,       # one per search setting
    "tables": 1,
    "all": 1,
}
SMOKE_JOBS = {
    "data_fetch": 5, "search": 6, "derive": 8, "select": 4, "select_random": 1, "sample": 2,
    "train": 16 + 3 * 2,  # CIFAR-10 (6 genotypes + 2 random) x 2 seeds; CIFAR-100, CINIC-10, SVHN ITNAS x 2 seeds
    "train_imagenet": 2, "plot_cell": 4, "plot_search": 3, "tables": 1, "all": 1,
    "gpu_check": 1,  # the canary before the ImageNet trainings
}
PROFILES = [REPO / "profiles" / "default" / "config.yaml", REPO / "profiles" / "slurm" / "config.yaml"]
# The config keys of `threads:` and `resources:` that stand for other rule names.
CONFIG_KEY_RULES = {"data": ["data_fetch"], "derive": ["derive", "sample"], "plot": ["plot_cell", "plot_search"],
                    "select": ["select", "select_random"]}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("dag") / "itnas")


def test_snakemake_lint_has_nothing_to_say():
    proc = snakemake(REPO, "--lint")
    out = proc.stdout + proc.stderr
    assert "Lints for" not in out, out
    assert "Congratulations" in out


def test_the_paper_config_plans_the_expected_jobs_per_rule(workdir):
    assert planned_jobs(workdir) == PAPER_JOBS


def test_the_smoke_config_has_the_same_dag_shape(workdir):
    assert planned_jobs(workdir, "--configfile", SMOKE) == SMOKE_JOBS
    assert set(SMOKE_JOBS) == set(PAPER_JOBS)


def test_gpu_jobs_declare_gpus_and_imagenet_runs_one_process_per_gpu(workdir):
    proc = snakemake(workdir, "-n", "-p")
    out = proc.stdout
    blocks = out.split("\nrule ")
    imagenet = [b for b in blocks if b.startswith("train_imagenet:")]
    assert len(imagenet) == 2 and all("gpu=8" in b and "--nproc 8" in b for b in imagenet)
    for name in ("search:", "train:", "select:"):
        jobs = [b for b in blocks if b.startswith(name)]
        assert jobs and all("gpu=1" in b for b in jobs), name
    assert "ITNAS_RULE=search" in out and "ITNAS_RULE=train_imagenet" in out


def test_every_ablation_variant_and_seed_has_its_own_paths(workdir):
    out = snakemake(workdir, "-n", "-p").stdout
    for variant in ("darts", "gumbel", "gumbel_transition", "itnas"):
        for seed in range(4):
            assert f"results/derive/cifar10/{variant}/seed{seed}/genotype.json" in out
        assert f"results/select/cifar10/{variant}/genotype.json" in out
    for search in ("darts", "gumbel", "gumbel_transition"):
        for seed in range(4):
            assert f"results/search/cifar10/{search}/seed{seed}/metrics.json" in out
    assert "results/train/imagenet/itnas/seed0/metrics.json" in out
    assert "results/train/svhn/DARTS_V1/seed1/metrics.json" in out


def _jobs(out: str, rule: str) -> list[dict[str, str]]:
    """The jobs of `rule` in a dry run's -p output, as {field: value} (input, output, Shell command...)."""
    jobs = []
    for block in out.split("\nrule ")[1:]:
        name, _, body = block.partition(":\n")
        if name == rule:
            jobs.append(dict(re.findall(r"^\s*([A-Za-z ]+): (.*)$", body, re.M)))
    return jobs


def test_variants_that_search_alike_share_one_search_and_derive_two_cells_from_it(workdir):
    """itnas and gumbel_transition differ only in the derivation: one search per seed, two cells."""
    out = snakemake(workdir, "-n", "-p").stdout
    searches = _jobs(out, "search")
    assert len(searches) == 12
    assert not any("/search/cifar10/itnas/" in job["output"] for job in searches)
    shared = [job for job in searches if "/search/cifar10/gumbel_transition/seed0/" in job["output"]]
    assert len(shared) == 1 and "--variant gumbel_transition" in shared[0]["Shell command"]
    derives = {job["output"]: job for job in _jobs(out, "derive")}
    for seed in range(4):
        state = f"results/search/cifar10/gumbel_transition/seed{seed}/arch_state.json"
        itnas = derives[f"results/derive/cifar10/itnas/seed{seed}/genotype.json"]
        plain = derives[f"results/derive/cifar10/gumbel_transition/seed{seed}/genotype.json"]
        assert itnas["input"] == plain["input"] == state
        assert "--method tiep" in itnas["Shell command"] and f"--name itnas-seed{seed}" in itnas["Shell command"]
        assert "--method darts" in plain["Shell command"]
    # the tables read each search once; nothing reads a search's own genotype.json
    [tables] = _jobs(out, "tables")
    assert tables["input"].count("/search/cifar10/gumbel_transition/seed0/metrics.json") == 1
    assert "/search/" not in " ".join(j["input"] for r in ("select", "train", "plot_cell") for j in _jobs(out, r))


def test_a_variant_searched_alone_still_gets_its_shared_search(tmp_path):
    workdir = copy_workflow(tmp_path / "itnas")
    path = _overlay(workdir, "alone.yaml", {"search": {"variants": ["itnas"], "seeds": [0, 1]},
                                            "evaluate": {"cifar10": {"cells": ["itnas"], "seeds": [0]}}})
    out = snakemake(workdir, "-n", "-p", "--configfile", SMOKE, path).stdout
    assert sorted(j["output"].split(", ")[0] for j in _jobs(out, "search")) == [
        f"results/smoke/search/synthetic-cifar10/gumbel_transition/seed{s}/arch_state.json" for s in (0, 1)]
    assert sorted(j["input"] for j in _jobs(out, "derive")) == [
        f"results/smoke/search/synthetic-cifar10/gumbel_transition/seed{s}/arch_state.json" for s in (0, 1)]


def test_random_search_selects_among_the_first_n_random_cells_and_reuses_their_trainings(workdir):
    out = snakemake(workdir, "-n", "-p").stdout
    [job] = _jobs(out, "select_random")
    cells = [f"results/random/cell{k}/genotype.json" for k in range(4)]  # N = 4 search seeds
    assert job["input"].split(", ")[2:] == cells
    assert "--genotypes " + " ".join(cells) in job["Shell command"]
    assert job["output"].startswith("results/select/cifar10/random_search/selection.json")
    [tables] = _jobs(out, "tables")
    assert "results/select/cifar10/random_search/selection.json" in tables["input"]
    # random: 4 >= N: the winner's trainings are the random cells' own, nothing extra (PAPER_JOBS)


def test_random_search_trains_its_n_candidates_when_fewer_random_cells_are_asked_for(tmp_path):
    workdir = copy_workflow(tmp_path / "itnas")
    fewer = _overlay(workdir, "fewer.yaml", {"evaluate": {"cifar10": {"random": 1}}})
    jobs = planned_jobs(workdir, "--configfile", fewer)
    assert jobs["sample"] == 4 and jobs["select_random"] == 1
    assert jobs["train"] == PAPER_JOBS["train"]  # cells 0..3 on 4 seeds, as with random: 4
    off = _overlay(workdir, "off.yaml", {"evaluate": {"cifar10": {"random": 1, "random_search": False}}})
    jobs = planned_jobs(workdir, "--configfile", off)
    assert "select_random" not in jobs and jobs["sample"] == 1
    assert jobs["train"] == PAPER_JOBS["train"] - 3 * 4


def test_imagenet_trainings_wait_for_the_gpu_canary_with_their_gpus(workdir):
    blocks = snakemake(workdir, "-n", "-p").stdout.split("\nrule ")
    [canary] = [b for b in blocks if b.startswith("gpu_check:")]
    assert "gpu=8" in canary and "itnas gpu-check --expect 8 --config config/recipes/train_imagenet.yaml" in canary
    assert "results/gpu_check/imagenet.json" in canary
    for job in (b for b in blocks if b.startswith("train_imagenet:")):
        assert re.search(r"input: .*results/gpu_check/imagenet\.json", job), job


@pytest.fixture(scope="module")
def rules() -> set[str]:
    listed = snakemake(REPO, "--list-rules").stdout.splitlines()  # "name (docstring)"
    return {line.split()[0] for line in listed if re.match(r"[a-z_]+ \(", line)}


def test_every_rule_a_profile_names_exists(rules):
    assert {"search", "gpu_check", "train_imagenet"} <= rules
    for path in PROFILES:
        profile = yaml.safe_load(path.read_text())
        named = set(profile.get("set-resources") or {}) | set(profile.get("set-threads") or {})
        assert named <= rules, f"{path.relative_to(REPO)} names rules that do not exist: {sorted(named - rules)}"


@pytest.mark.parametrize("configfile", ["config/config.yaml", SMOKE])
def test_every_rule_takes_threads_and_resources_from_the_config(rules, configfile):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    update_config(cfg, yaml.safe_load((REPO / configfile).read_text()))  # Snakemake's merge of an overlay
    for section in ("threads", "resources"):
        covered = {rule for key in cfg[section] for rule in CONFIG_KEY_RULES.get(key, [key])}
        assert covered == rules - {"all"}, (configfile, section, sorted(covered ^ (rules - {"all"})))
    if configfile == SMOKE:  # fits one node with 16 GB, through the SLURM profile too
        assert max(r["mem_mb"] for r in cfg["resources"].values()) <= 16000


def test_each_job_asks_for_the_memory_and_time_of_its_config(workdir):
    def asked(*args):
        out = snakemake(workdir, "-n", "-p", *args).stdout
        jobs = {}
        for block in out.split("\nrule ")[1:]:
            name = block.split(":", 1)[0]
            found = re.search(r"resources: (.*)", block)
            jobs[name] = dict(re.findall(r"(\w+)=(\w+)", found.group(1))) if found else {}
        return jobs

    paper, smoke = asked(), asked("--configfile", SMOKE)
    assert paper["train_imagenet"]["mem_mb"] == "256000" and paper["train_imagenet"]["runtime"] == "2880"
    assert paper["search"]["mem_mb"] == "16000" and paper["search"]["gpu"] == "1"
    assert smoke["train_imagenet"]["mem_mb"] == "2000" and smoke["train_imagenet"]["gpu"] == "1"
    assert all(int(job.get("mem_mb", 0)) <= 16000 for job in smoke.values())


def test_docs_slurm_lists_the_paper_config_s_threads_and_resources():
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    doc = (REPO / "docs" / "slurm.md").read_text()
    rows = re.findall(r"^\| `[a-z_`, ]+` \(([a-z_]+)\) \| ([^|]+) \| (\d+) \| (\d+) \| (\d+) \|", doc, re.M)
    assert {key for key, *_ in rows} == set(cfg["resources"])
    for key, gpus, threads, mem_mb, runtime in rows:
        resources = cfg["resources"][key]
        assert (int(threads), int(mem_mb), int(runtime)) == \
            (cfg["threads"][key], resources["mem_mb"], resources["runtime"]), key
        expected = cfg["train"]["imagenet"]["gpus"] if key in ("train_imagenet", "gpu_check") else resources.get("gpu", 0)
        assert str(expected) in gpus, key


def _overlay(workdir, name, data) -> str:
    path = workdir / "config" / name
    path.write_text(yaml.safe_dump(data))
    return f"config/{name}"


@pytest.mark.parametrize("overlay,expected", [
    ({"serach": {"variants": ["itnas"]}}, "serach"),                               # unknown top-level key
    ({"search": {"variants": ["itnas"], "seeds": [0], "epochs": 3}}, "epochs"),    # unknown nested key
    ({"search": {"variants": ["itnas"], "seeds": "0,1"}}, "seeds"),                # wrong type
    ({"search": {"variants": ["itnas", "nas"], "seeds": [0]}}, "variants"),        # unknown variant
    ({"train": {"imagenet": {"config": "x.yaml", "gpus": "eight"}}}, "gpus"),      # wrong type, nested
    ({"evaluate": {"cifar10": {"cells": ["gumbel"], "seeds": [0]}},
      "search": {"variants": ["itnas"], "seeds": [0]}}, "evaluate.cifar10.cells"),  # cross-key
])
def test_a_malformed_config_is_refused_before_any_job_starts(tmp_path, overlay, expected):
    workdir = copy_workflow(tmp_path / "itnas")
    path = _overlay(workdir, "bad.yaml", overlay)
    proc = snakemake(workdir, "--cores", "1", "--configfile", SMOKE, path, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert expected in out, out[-3000:]
    assert not (workdir / "results").exists() and not (workdir / "data").exists()
