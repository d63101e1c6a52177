"""Fixtures for the workflow tests: a scratch copy of the workflow, a Snakemake runner, and one
smoke run of the whole DAG shared by every end-to-end assertion."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# What a clone needs to run the workflow (the `itnas` package comes from the environment).
SOURCES = ["Snakefile", "workflow", "profiles", "config", "dvc.yaml", ".dvcignore", ".dvc/config", ".dvc/.gitignore"]
SMOKE = "config/smoke.yaml"


def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PATH"] = f"{BIN}{os.pathsep}{out.get('PATH', '')}"
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "CUDA_VISIBLE_DEVICES"):
        out.pop(var, None)
    out["ITNAS_GPU_LEASE"] = "off"
    out.setdefault("ITNAS_GIT_COMMIT", "test")
    out.setdefault("ITNAS_CACHE_DIR", os.path.join(tempfile.gettempdir(), "itnas-test-cache"))
    return out


def run(cmd: list[str], cwd: Path, timeout: float = 900, check: bool = True,
        extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env={**env(), **(extra_env or {})}, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc


def snakemake(cwd: Path, *args: str, timeout: float = 900, check: bool = True,
              extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run([str(BIN / "snakemake"), *args], cwd, timeout=timeout, check=check, extra_env=extra_env)


def planned_jobs(cwd: Path, *args: str, extra_env: dict[str, str] | None = None) -> dict[str, int]:
    """Jobs per rule of a dry run (empty when there is nothing to do)."""
    proc = snakemake(cwd, "-n", "--quiet", "rules", *args, extra_env=extra_env)
    text = proc.stdout + proc.stderr
    counts: dict[str, int] = {}
    table = text.split("Job stats:", 1)
    if len(table) < 2:
        return counts
    for line in table[1].splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
        elif counts and line.strip().startswith("total"):
            break
    return counts


@dataclass
class SmokeRun:
    workdir: Path
    results: Path
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> SmokeRun:
    """The README's first command (minus the install) in a scratch copy: the whole smoke DAG
    on 2 cores, ending with the report."""
    workdir = copy_workflow(tmp_path_factory.mktemp("smoke") / "itnas")
    proc = snakemake(workdir, "--cores", "2", "--configfile", SMOKE,
                     "--report", "results/smoke/report.html", "--report-after-run", timeout=1800)
    return SmokeRun(workdir, workdir / "results" / "smoke", proc.stdout, proc.stderr)
