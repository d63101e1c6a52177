"""profiles/slurm against a real single-node SLURM with four fake GPUs (.ci/slurm-up).

Jobs go through sbatch with a GPU request, every GPU job gets its own CUDA_VISIBLE_DEVICES
(no two jobs that run at the same time share a device), the smoke DAG's tables appear, and
.ci/slurm-down leaves none of the daemons .ci/slurm-up started alive. Skipped, with the
script's reason, where SLURM cannot be installed (not root, no apt-get) or where the machine runs
a SLURM of its own (a cluster login node), which .ci/slurm-up leaves alone.

The evidence is read back from SLURM itself: `scontrol show job` keeps each finished job for
MinJobAge (600 s) with its request (TresPerJob=gres:gpu:N, i.e. sbatch --gpus=N), and the
cluster's Prolog/Epilog write a ledger of the CUDA_VISIBLE_DEVICES each job got, with the
times it started and ended.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
UP, DOWN = REPO / ".ci" / "slurm-up", REPO / ".ci" / "slurm-down"
PROFILE = REPO / "profiles" / "slurm"
CANNOT_INSTALL = 77
# The plugin waits 40 s before its first status query; without slurmdbd, sacct fails forever,
# so status comes from squeue (the cluster keeps finished jobs for MinJobAge = 600 s >= 3 x 2 s).
FAST = ["--slurm-init-seconds-before-status-checks", "2", "--slurm-status-command", "squeue"]
GPU_RULES = ("search", "select", "train", "train_imagenet")
CANARY = "gpu_check"  # the ImageNet canary rule, where the workflow has one


@dataclass
class Cluster:
    env: dict[str, str]
    daemons: list[tuple[str, int]]  # (name, pid) of what slurm-up started
    ledger: Path  # "start|end JOBID EPOCH CUDA_VISIBLE_DEVICES" lines from Prolog/Epilog


@dataclass
class Job:
    job_id: str
    rule: str
    gpus_requested: int
    devices: frozenset[int]  # CUDA_VISIBLE_DEVICES as SLURM set it
    start: float
    end: float
    partition: str
    mem_mb: int  # memory asked for the node (sbatch --mem)


@pytest.fixture(scope="module")
def cluster():
    up = subprocess.run([str(UP)], capture_output=True, text=True, timeout=600)
    said = (up.stdout + up.stderr).strip()
    if up.returncode == CANNOT_INSTALL:
        pytest.skip(said.splitlines()[-1])
    assert up.returncode == 0, f".ci/slurm-up failed ({up.returncode}):\n{said}"
    conf = re.findall(r"^SLURM_CONF=(.+)$", up.stdout, re.M)[-1]
    cluster_dir = Path(conf).parents[1]
    started = cluster_dir / "started"
    daemons = [(name, int(pid)) for name, pid, *_ in
               (line.split() for line in started.read_text().splitlines() if line.strip())]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "SBATCH_", "SRUN_")) and k != "MLFLOW_TRACKING_URI"}
    path = env["PATH"].split(os.pathsep)
    for needed in ("/usr/sbin", str(Path(sys.executable).parent)):  # SLURM's and itnas's commands
        if needed not in path:
            path.insert(0, needed)
    # "gpu" is not the cluster's default partition: jobs land there only through the profile.
    env.update(SLURM_CONF=conf, SBATCH_PARTITION="gpu", PATH=os.pathsep.join(path))
    yield Cluster(env=env, daemons=daemons, ledger=cluster_dir / "log" / "gpu-ledger.txt")
    subprocess.run([str(DOWN)], capture_output=True, text=True, timeout=120)


def snakemake(cluster: Cluster, workdir: Path, *args: str, timeout: int = 420) -> float:
    """Run Snakemake through the SLURM profile in `workdir`; returns the wall-clock seconds."""
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "snakemake", "--workflow-profile", str(PROFILE),
                          *FAST, *args], cwd=workdir, env=cluster.env, capture_output=True,
                         text=True, timeout=timeout)
    assert run.returncode == 0, f"snakemake failed:\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}"
    return time.monotonic() - t0


def slurm_jobs(cluster: Cluster, workdir: Path) -> list[Job]:
    """The jobs submitted from `workdir`, as SLURM recorded them."""
    ledger: dict[tuple[str, str], tuple[float, str]] = {}
    for line in cluster.ledger.read_text().splitlines():
        phase, job_id, when, visible = line.split()
        ledger[phase, job_id] = (float(when), visible)
    listing = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%k|%Z"], env=cluster.env,
                             capture_output=True, text=True, check=True).stdout
    jobs = []
    for line in listing.splitlines():
        job_id, comment, job_dir = line.split("|", 2)
        if Path(job_dir) != workdir:
            continue
        shown = subprocess.run(["scontrol", "show", "job", "-o", job_id], env=cluster.env,
                               capture_output=True, text=True, check=True).stdout
        field = dict(re.findall(r"(\w+)=(\S*)", shown))
        assert field["JobState"] == "COMPLETED", shown
        requested = re.search(r"TresPerJob=\S*gres:gpu:(\d+)", shown)
        (start, visible), (end, _) = ledger["start", job_id], ledger["end", job_id]
        jobs.append(Job(job_id=job_id, rule=re.sub(r"^rule_|_wildcards_.*$", "", comment),
                        gpus_requested=int(requested.group(1)) if requested else 0,
                        devices=frozenset(int(d) for d in visible.split(",") if d != "-"),
                        start=start, end=end, partition=field["Partition"],
                        mem_mb=_megabytes(field["MinMemoryNode"])))
    return jobs


def _megabytes(text: str) -> int:
    """scontrol's memory figure (2000M, 2G, 1T) in MB."""
    number, unit = float(text[:-1]), text[-1].upper()
    return int(number * {"M": 1, "G": 1024, "T": 1024 ** 2}[unit])


def assert_gpu_jobs_isolated(jobs: list[Job]) -> int:
    """Every GPU job got as many devices as it asked for, and jobs that ran at the same time
    got disjoint devices; returns the number of overlapping pairs (to show the check bit)."""
    overlapping = 0
    for job in jobs:
        assert len(job.devices) == job.gpus_requested, job
    for i, a in enumerate(jobs):
        for b in jobs[i + 1:]:
            if a.start < b.end and b.start < a.end:
                overlapping += 1
                assert not a.devices & b.devices, f"jobs {a} and {b} ran at once on the same GPU"
    return overlapping


TINY_SNAKEFILE = r'''
rule all:
    input: "table.md", "runs/multi.json"

rule gpu_job:
    output: "runs/gpu{i}.json"
    threads: 1
    resources: gpu=1, mem_mb=500, runtime=5
    shell: "python record.py {output} 8"  # held 8 s, so that the four run at the same time

rule multi_gpu:
    input: expand("runs/gpu{i}.json", i=range(4))
    output: check="runs/gpu_check.json", record="runs/multi.json"
    threads: 1
    resources: gpu=2, mem_mb=500, runtime=5
    shell:
        "itnas gpu-check --expect {resources.gpu} --device cpu --out {output.check}"
        " && python record.py {output.record} 0"

rule table:
    input: expand("runs/gpu{i}.json", i=range(4))
    output: "table.md"
    threads: 1
    resources: mem_mb=500, runtime=5
    shell: "python table.py {input} > {output}"
'''

RECORD_PY = r'''
import json, os, sys, time
start = time.time()
time.sleep(float(sys.argv[2]))
names = ["CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "SLURM_GPUS_ON_NODE", "SLURM_JOB_PARTITION"]
json.dump({"start": start, "end": time.time(), **{n: os.environ.get(n) for n in names}},
          open(sys.argv[1], "w"))
'''

TABLE_PY = r'''
import json, sys
print("| job | SLURM job | CUDA_VISIBLE_DEVICES |\n|---|---|---|")
for path in sys.argv[1:]:
    r = json.load(open(path))
    print(f"| {path} | {r['SLURM_JOB_ID']} | {r['CUDA_VISIBLE_DEVICES']} |")
'''


def test_gpu_jobs_go_through_sbatch_with_a_gpu_request_and_distinct_devices(cluster, tmp_path):
    """A tiny DAG with the real profile: four 1-GPU jobs at once; then a 2-GPU job that runs the
    canary before its work, beside a CPU-only table job."""
    (tmp_path / "Snakefile").write_text(TINY_SNAKEFILE)
    (tmp_path / "record.py").write_text(RECORD_PY)
    (tmp_path / "table.py").write_text(TABLE_PY)
    seconds = snakemake(cluster, tmp_path, "--cores", "4")
    print(f"tiny DAG through SLURM: {seconds:.0f} s")

    records = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*.json")}
    jobs = {j.job_id: j for j in slurm_jobs(cluster, tmp_path)}
    assert len(jobs) == 6, jobs  # 4 gpu_job, multi_gpu, table: each its own sbatch
    for name in ["gpu0", "gpu1", "gpu2", "gpu3", "multi"]:
        rec = records[name]
        job = jobs[rec["SLURM_JOB_ID"]]  # it ran inside the SLURM job the plugin submitted
        assert job.partition == rec["SLURM_JOB_PARTITION"] == "gpu"  # from SBATCH_PARTITION
        assert job.gpus_requested == (2 if name == "multi" else 1)  # sbatch --gpus=N
        visible = {int(d) for d in rec["CUDA_VISIBLE_DEVICES"].split(",")}
        assert visible == job.devices, (name, rec, job)
    # The four 1-GPU jobs ran together on the four GPUs, one each.
    singles = [records[f"gpu{i}"] for i in range(4)]
    assert max(r["start"] for r in singles) < min(r["end"] for r in singles), singles
    assert sorted(r["CUDA_VISIBLE_DEVICES"] for r in singles) == ["0", "1", "2", "3"]
    assert assert_gpu_jobs_isolated([j for j in jobs.values() if j.gpus_requested]) >= 6
    assert [(j.gpus_requested, j.partition) for j in jobs.values() if j.rule == "table"] == [(0, "gpu")]

    canary = json.loads((tmp_path / "runs" / "gpu_check.json").read_text())
    assert canary["counts"]["SLURM_GPUS_ON_NODE"] == 2  # the canary ran in the 2-GPU job
    assert canary["slurm_job_id"] == records["multi"]["SLURM_JOB_ID"]
    assert "runs/gpu3.json" in (tmp_path / "table.md").read_text()
    logs = list((tmp_path / "results" / "slurm-logs").glob("rule_*/**/*.log"))
    assert len(logs) == 6, logs  # the profile keeps every job's log where docs/slurm.md says


def smoke_copy(dest: Path) -> Path:
    """The workflow as committed or about to be (Snakefile, workflow/, config/), without results."""
    for name in ("Snakefile", "workflow", "config"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def one_run_per_gpu_rule(smoke: dict) -> dict:
    """The smoke DAG cut to one run per GPU rule (search, select, train, train_imagenet) and a
    one-epoch search, so that it fits the CI budget on two cores: every SLURM job starts its
    own Snakemake. Given on top of config/smoke.yaml (--configfile merges, lists replace)."""
    search_set = [("epochs=1" if item.startswith("epochs=") else item) for item in smoke["search"]["set"]]
    empty = {"cells": [], "baselines": [], "seeds": [0]}
    return {"search": {"variants": ["itnas"], "seeds": [0], "set": search_set},
            "evaluate": {"cifar10": {"cells": ["itnas"], "baselines": [], "random": 0, "random_search": False,
                                     "seeds": [0]},
                         "cifar100": empty, "cinic10": empty, "svhn": empty,
                         "imagenet": {"cells": [], "baselines": ["DARTS_V2"], "seeds": [0]}}}


@dataclass
class SmokeRun:
    results: Path
    jobs: list[Job]


@pytest.fixture(scope="module")
def smoke_run(cluster, tmp_path_factory) -> SmokeRun:
    """config/smoke.yaml (cut by one_run_per_gpu_rule) through the SLURM profile, once."""
    if not (REPO / "Snakefile").exists() or not (REPO / "config" / "smoke.yaml").exists():
        pytest.fail("the workflow (Snakefile, config/smoke.yaml) is not there yet")
    work = smoke_copy(tmp_path_factory.mktemp("smoke"))
    smoke = yaml.safe_load((work / "config" / "smoke.yaml").read_text())
    (work / "slurm-ci.yaml").write_text(yaml.safe_dump(one_run_per_gpu_rule(smoke)))
    seconds = snakemake(cluster, work, "--configfile", "config/smoke.yaml", "slurm-ci.yaml",
                        timeout=540)
    print(f"smoke DAG through SLURM: {seconds:.0f} s")
    return SmokeRun(results=work / smoke["results"], jobs=slurm_jobs(cluster, work))


def test_the_smoke_dag_runs_through_the_slurm_profile(smoke_run):
    for n in range(1, 5):
        assert (smoke_run.results / "tables" / f"table{n}.md").stat().st_size > 0
    jobs = smoke_run.jobs
    gpu_jobs = [j for j in jobs if j.rule in GPU_RULES + (CANARY,)]
    assert sorted({j.rule for j in gpu_jobs} - {CANARY}) == sorted(GPU_RULES), sorted(j.rule for j in jobs)
    assert all(j.gpus_requested == len(j.devices) == 1 for j in gpu_jobs), gpu_jobs
    assert_gpu_jobs_isolated(gpu_jobs)
    assert all(not j.gpus_requested and not j.devices for j in jobs if j not in gpu_jobs)
    assert {j.partition for j in jobs} == {"gpu"}  # SBATCH_PARTITION, through the profile
    [canary] = [j for j in jobs if j.rule == CANARY]  # the ImageNet canary ran first
    assert all(canary.end <= j.start for j in jobs if j.rule == "train_imagenet")
    # The smoke config's resources, not the paper's: every job fits the test node's 16 GB.
    assert max(j.mem_mb for j in jobs) <= 2000, sorted((j.rule, j.mem_mb) for j in jobs)


def test_itnas_runs_record_the_gpus_slurm_gave_them(smoke_run):
    """Each search and training writes, in metrics.json, the SLURM job and the devices it ran on."""
    by_id = {j.job_id: j for j in smoke_run.jobs}
    runs = sorted((smoke_run.results / "search").glob("*/*/*/metrics.json")) + sorted(
        (smoke_run.results / "train").glob("*/*/*/metrics.json"))
    assert len(runs) == 3, runs
    for path in runs:
        allocation = json.loads(path.read_text()).get("allocation")
        assert allocation, f"{path}: no 'allocation' record (slurm_job_id, cuda_visible_devices)"
        job = by_id[allocation["slurm_job_id"]]
        assert {int(d) for d in allocation["cuda_visible_devices"].split(",")} == job.devices


def test_slurm_up_leaves_a_machine_with_its_own_slurm_alone(tmp_path):
    """A login node: SLURM_CONF names the site's cluster. slurm-up starts nothing and exits 77
    with its reason (so the tests above skip), before it would install or touch anything."""
    site = tmp_path / "site" / "slurm.conf"
    site.parent.mkdir()
    site.write_text("ClusterName=site\n")
    ours = tmp_path / "ours"
    run = subprocess.run([str(UP)], env=dict(os.environ, SLURM_CONF=str(site), ITNAS_SLURM_DIR=str(ours)),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == CANNOT_INSTALL, run.stdout + run.stderr
    if os.geteuid() == 0:
        assert run.stdout.strip() == ("slurm-up: not starting a private SLURM: SLURM_CONF points at another "
                                      f"cluster's configuration ({site})")
    assert not ours.exists()


def test_slurm_up_does_not_start_a_second_cluster_beside_a_running_one(cluster, tmp_path):
    """The running test cluster plays the site's: /etc/slurm/slurm.conf and the daemons are not
    those of a start from another folder, which must leave them alone."""
    env = {k: v for k, v in cluster.env.items() if k != "SLURM_CONF"}
    run = subprocess.run([str(UP)], env=dict(env, ITNAS_SLURM_DIR=str(tmp_path / "second")),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == CANNOT_INSTALL, run.stdout + run.stderr
    assert "not starting a private SLURM" in run.stdout and "/etc/slurm/slurm.conf" in run.stdout
    assert all(alive(pid) for _, pid in cluster.daemons)
    ping = subprocess.run(["scontrol", "ping"], env=cluster.env, capture_output=True, text=True, timeout=30)
    assert "UP" in ping.stdout


def test_slurm_down_stops_exactly_the_daemons_slurm_up_started(cluster):
    assert {name for name, _ in cluster.daemons} >= {"slurmctld", "slurmd"}
    down = subprocess.run([str(DOWN)], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    for name, pid in cluster.daemons:
        assert not alive(pid), f"{name} (pid {pid}) is still running after .ci/slurm-down"
    again = subprocess.run([str(DOWN)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "nothing to stop" in again.stdout


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root to become nobody")
def test_slurm_up_exits_77_with_its_reason_where_it_cannot_install():
    run = subprocess.run(["runuser", "-u", "nobody", "--", "bash", str(UP)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == CANNOT_INSTALL
    assert run.stdout.strip() == "slurm-up: cannot install SLURM: needs root to install packages " \
                                 "and run slurmd (running as nobody)"


def alive(pid: int) -> bool:
    """A zombie is dead: nothing reaps daemons here, so only the state in /proc tells."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
