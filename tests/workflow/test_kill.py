"""A killed workflow, rerun, completes without taking any partial output for a finished one."""

import json
import os
import signal
import subprocess
import time

import pytest

from itnas.formats import load_arch_state
from itnas.search.derive import derive
from itnas.space import load_genotype

from .conftest import BIN, SMOKE, copy_workflow, env, snakemake


@pytest.mark.slow
def test_a_workflow_killed_mid_search_reruns_to_whole_outputs(tmp_path):
    work = copy_workflow(tmp_path / "itnas")
    run = "results/smoke/search/synthetic-cifar10/gumbel_transition/seed0"  # itnas derives from it
    target = f"{run}/metrics.json"
    # The target goes first: --configfile takes several values and would swallow it.
    cmd = [str(BIN / "snakemake"), target, "--cores", "2", "--configfile", SMOKE]
    # Its own process group, so SIGKILL reaches Snakemake and the itnas job it started alike.
    proc = subprocess.Popen(cmd, cwd=work, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    # Kill once the search has written its first checkpoint: mid-run, with state on disk.
    while time.monotonic() < deadline and proc.poll() is None:
        if (work / run / "checkpoint.pt").exists():
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the search finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (work / target).exists()

    # What a user does after a kill: a SIGKILLed Snakemake leaves its lock, so unlock, then rerun.
    snakemake(work, "--unlock", "--configfile", SMOKE)
    snakemake(work, target, "--cores", "2", "--rerun-incomplete", "--configfile", SMOKE)

    metrics = json.loads((work / target).read_text())
    history = json.loads((work / run / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, metrics["epochs"] + 1))
    genotype = load_genotype(work / run / "genotype.json")
    state = load_arch_state(work / run / "arch_state.json")
    assert derive(state, metrics["method"], metrics["derive_tau"]) == genotype
    assert metrics["genotype_hash"] == genotype.hash()
