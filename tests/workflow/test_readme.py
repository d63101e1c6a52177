"""The README's promises that tools rely on: exactly two Quickstart commands, the second of
which CI runs verbatim, and links to the documents it names."""

from __future__ import annotations

import re

from tests.workflow.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def quickstart_commands() -> list[str]:
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.S)
    assert block, "the Quickstart section starts with a code block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quickstart_is_exactly_two_commands_that_set_up_from_scratch():
    first, second = quickstart_commands()
    for command in (first, second):
        assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[dev]' && ")
    assert "snakemake" in first and "--configfile config/smoke.yaml" in first and "--report" in first
    assert "pytest" in second


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in ci
    command = quickstart_commands()[1]
    assert any(line.startswith(command + " ||") or line == command for line in ci.splitlines())


def test_readme_covers_what_users_look_for():
    for needle in ("docs/slurm.md", "mlflow ui --backend-store-uri sqlite:///results/mlflow.db",
                   "dvc pull", "--touch", "GPU-hours", "## Ablations", "## Outputs"):
        assert needle in README, needle
