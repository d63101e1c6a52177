"""DVC versions a prepared dataset: add, push to a local-folder remote, lose it, pull, verify."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from itnas.cli import main
from itnas.data.synthetic import generate

BIN = Path(sys.executable).parent


def run(cwd: Path, *args: str, env: dict) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
@pytest.mark.skipif(not (BIN / "dvc").exists() or shutil.which("git") is None,
                    reason="needs dvc in the environment and git")
def test_dvc_push_and_pull_restore_a_verified_dataset(tmp_path, capsys):
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    repo.mkdir()
    # Keep DVC away from the network (analytics, update checks) and from the user's config.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "DVC_NO_ANALYTICS": "1", "DVC_UPDATER_ENDPOINT": "http://127.0.0.1:9/",
           "DVC_GLOBAL_CONFIG_DIR": str(tmp_path / "dvc-global"),
           "DVC_SYSTEM_CONFIG_DIR": str(tmp_path / "dvc-system"),
           "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site"),
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    run(repo, "git", "init", "-q", env=env)
    run(repo, "dvc", "init", "-q", env=env)
    run(repo, "dvc", "config", "core.check_update", "false", env=env)
    run(repo, "dvc", "config", "core.analytics", "false", env=env)
    generate("synthetic-cifar10", repo / "data")
    run(repo, "dvc", "add", "-q", "data/synthetic-cifar10", env=env)
    assert (repo / "data" / "synthetic-cifar10.dvc").is_file()
    run(repo, "dvc", "remote", "add", "-d", "local", str(remote), env=env)
    run(repo, "dvc", "push", "-q", env=env)
    assert any(p.is_file() for p in remote.rglob("*"))

    shutil.rmtree(repo / "data" / "synthetic-cifar10")
    shutil.rmtree(repo / ".dvc" / "cache")
    assert main(["data", "verify", "synthetic-cifar10", "--root", str(repo / "data")]) == 2

    run(repo, "dvc", "pull", "-q", env=env)
    capsys.readouterr()
    assert main(["data", "verify", "synthetic-cifar10", "--root", str(repo / "data")]) == 0
    assert capsys.readouterr().out.startswith("ok: synthetic-cifar10 (5 files)")
