"""The workflow's shape without running it: lint, jobs per rule of the paper and smoke DAGs,
GPU requests, and refusal of malformed configs before any job starts."""

from __future__ import annotations

import pytest
import yaml

from tests.workflow.conftest import REPO, SMOKE, copy_workflow, planned_jobs, snakemake

PAPER_JOBS = {
    "data_fetch": 5,        # cifar10, cifar100, cinic10, svhn, imagenet
    "search": 16,           # 4 variants x 4 seeds
    "derive": 16,
    "select": 4,            # one per variant
    "sample": 4,            # random cells
    "train": 58,            # CIFAR-10 (6 genotypes + 4 random) x 4 seeds + 3 datasets x 3 genotypes x 2 seeds
    "train_imagenet": 2,    # ITNAS and DARTS_V2, one seed
    "plot_cell": 4,
    "plot_search": 4,
    "tables": 1,
    "all": 1,
}
SMOKE_JOBS = {
    "data_fetch": 5, "search": 8, "derive": 8, "select": 4, "sample": 2,
    "train": 16 + 3 * 2,  # CIFAR-10 (6 genotypes + 2 random) x 2 seeds; CIFAR-100, CINIC-10, SVHN ITNAS x 2 seeds
    "train_imagenet": 2, "plot_cell": 4, "plot_search": 4, "tables": 1, "all": 1,
}


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
            assert f"results/search/cifar10/{variant}/seed{seed}/metrics.json" in out
        assert f"results/select/cifar10/{variant}/genotype.json" in out
    assert "results/train/imagenet/itnas/seed0/metrics.json" in out
    assert "results/train/svhn/DARTS_V1/seed1/metrics.json" in out


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
