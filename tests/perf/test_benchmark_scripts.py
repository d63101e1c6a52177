"""The comparison scripts under benchmarks/ run end to end at toy sizes and print the one JSON
line their docstrings promise (the figures in docs/performance.md come from them)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOY = ["--threads", "1", "--layers", "3", "--init-channels", "4", "--batch-size", "2", "--image-size", "8",
       "--repeats", "1", "--warmup", "0"]


def _run(script: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


def _positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_compare_variants_prints_both_ratios():
    r = _run("compare_variants.py", *TOY)
    assert r["compare"] == "itnas_vs_darts" and r["layers"] == 3
    assert all(_positive(r[k]) for k in ("weight_ratio_cpu", "arch_ratio_cpu", "weight_ratio_wall"))
    assert r["command"].startswith("benchmarks/compare_variants.py --threads 1") and "torch" in r


def test_compare_revisions_against_head():
    r = _run("compare_revisions.py", *TOY, "--base", "HEAD")
    assert r["base"] == "HEAD" and _positive(r["ratio_cpu"])
    assert r["before"]["step_s_median"] > 0 and r["after"]["step_s_median"] > 0


def test_ablation_times_the_levels_asked_for_and_refuses_unknown_ones():
    r = _run("ablate_fast_paths.py", *TOY, "--levels", "plain,shared")
    assert r["plain"]["ratio_cpu_vs_plain"] == 1.0 and _positive(r["shared"]["ratio_cpu_vs_plain"])
    assert "phases" not in r
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "ablate_fast_paths.py"), *TOY,
                           "--levels", "plain,fastest"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "--levels plain,fastest" in proc.stderr and "Traceback" not in proc.stderr


def test_compare_peer_runs_or_says_why_not():
    pytest.importorskip("xautodl", reason="the peer (pip install --no-deps xautodl) is an optional benchmark dependency")
    r = _run("compare_peer.py", *[a for a in TOY if a not in ("--layers", "3")], "--cells", "3")
    assert r["cells"] == 3 and _positive(r["ratio_cpu"]) and r["peer"]["weights"] > 0


def test_profile_prints_the_top_ops():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "profile_supernet.py"), *TOY, "--rows", "5"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "one step:" in proc.stdout and "convolution" in proc.stdout
