"""DVC round trip against a local-folder remote: commit and push the smoke run's datasets and run
folders, then a fresh clone pulls them and regenerates the tables without rerunning any search
or training (README, "Data and DVC")."""

from __future__ import annotations

import shutil

import pytest

from tests.workflow.conftest import BIN, SMOKE, copy_workflow, planned_jobs, run, snakemake

pytestmark = pytest.mark.slow

STANDINS = ["synthetic-cifar10", "synthetic-cifar100", "synthetic-cinic10", "synthetic-svhn",
            "synthetic-imagenet"]
STAGES = ["runs@smoke"] + [f"dataset@{name}" for name in STANDINS]


def dvc(cwd, *args):
    return run([str(BIN / "dvc"), *args], cwd, timeout=600)


def _git_init(path):
    run(["git", "init", "-q"], path)


def test_a_fresh_clone_pulls_the_runs_and_only_rebuilds_tables_and_figures(smoke_run, tmp_path):
    # DVC works on a copy (timestamps kept) so that the shared smoke run stays untouched.
    origin = tmp_path / "origin"
    shutil.copytree(smoke_run.workdir, origin, symlinks=True)
    remote = tmp_path / "remote"
    _git_init(origin)
    dvc(origin, "remote", "add", "--force", "-d", "local", str(remote))
    dvc(origin, "commit", "-f", *STAGES)
    dvc(origin, "push", *STAGES)
    assert (origin / "dvc.lock").exists() and any(remote.rglob("*"))

    clone = copy_workflow(tmp_path / "clone")
    shutil.copy2(origin / "dvc.lock", clone / "dvc.lock")
    shutil.copy2(origin / ".dvc" / "config", clone / ".dvc" / "config")
    _git_init(clone)
    dvc(clone, "pull", *STAGES)
    results = clone / "results" / "smoke"
    assert (results / "train" / "synthetic-imagenet" / "itnas" / "seed1" / "metrics.json").exists()
    assert (results / "search" / "synthetic-cifar10" / "gumbel_transition" / "seed0" / "checkpoint.pt").exists()
    assert not (results / "tables").exists()

    # Pulled files have fresh, arbitrary timestamps: --touch accepts them in workflow order.
    snakemake(clone, "--cores", "1", "--touch", "--configfile", SMOKE)
    plan = planned_jobs(clone, "--configfile", SMOKE)
    assert plan == {"tables": 1, "plot_cell": 4, "plot_search": 3, "all": 1}  # one curve per search: 3 searches

    snakemake(clone, "--cores", "2", "--configfile", SMOKE)
    for n in range(1, 5):
        assert (results / "tables" / f"table{n}.csv").read_text() == \
            (smoke_run.results / "tables" / f"table{n}.csv").read_text()
    # No search, selection or training ran in the clone: their logs are only the empty files
    # that --touch leaves; the tables and plots wrote theirs.
    logs = {p.relative_to(results).as_posix(): p.stat().st_size for p in (results / "logs").rglob("*.log")}
    ran = sorted(name for name, size in logs.items() if size > 0)
    assert ran and all(name.startswith(("logs/tables", "logs/plot/")) for name in ran), ran
