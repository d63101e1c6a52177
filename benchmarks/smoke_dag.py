"""Wall-clock of the workflow: the smoke DAG end to end and a dry run of the paper DAG.

Copies the workflow into a scratch folder (nothing of yours is touched), then times

  1. `snakemake -n` of the paper configuration (goal: within 5 s),
  2. `snakemake --cores N --configfile config/smoke.yaml` from nothing to the tables
     (goal: within 5 minutes on 2 cores), and the report on top of it.

Prints one JSON line with the figures, the machine and the load average. Other processes
competing for the cores make the wall-clock worse; `smoke_dag_cpu_s` (user + system time of all
jobs) divided by the cores bounds what the run takes on an idle machine.

    .venv/bin/python benchmarks/smoke_dag.py [--cores 2] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SOURCES = ["Snakefile", "workflow", "config"]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall-clock and CPU seconds (user + system, of the command and all its jobs)."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("MLFLOW_TRACKING_URI", None)
    cpu0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return elapsed, cpu, proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and print it")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="itnas-smoke-dag-"))
    work = scratch / "itnas"
    work.mkdir()
    for name in SOURCES:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, work / name)
    snakemake = str(BIN / "snakemake")
    load_before = os.getloadavg()
    try:
        dry_s, _, _ = timed([snakemake, "-n", "--quiet", "rules"], work)
        run_s, run_cpu, proc = timed([snakemake, "--cores", str(args.cores), "--configfile",
                                      "config/smoke.yaml"], work)
        report_s, _, _ = timed([snakemake, "--configfile", "config/smoke.yaml",
                                "--report", "results/smoke/report.html"], work)
        jobs = (proc.stdout + proc.stderr).count("Finished jobid")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps({
        "paper_dry_run_s": round(dry_s, 2),
        "smoke_dag_s": round(run_s, 1),
        # CPU seconds of all jobs: divided by the cores, what the run takes on an idle machine
        "smoke_dag_cpu_s": round(run_cpu, 1),
        "smoke_jobs": jobs,
        "report_s": round(report_s, 1),
        "cores": args.cores,
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
        "python": platform.python_version(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "scratch": str(scratch) if args.keep else None,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
