"""The comparison scripts under benchmarks/ run end to end at toy sizes and print the one JSON
line their docstrings promise (the figures in docs/performance.md come from them)."""

from __future__ import annotations

import json
import math
import re
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


def test_gpu_summary_extrapolates_from_the_measured_steps_and_eval_batches(tmp_path):
    base = {"images_per_s": 1.0, "peak_memory_bytes": 2**30, "warmup": 1, "warmup_s": 0.0,
            "step_cpu_s_median": 0.1, "dispatches_per_step": 10}
    runs = {
        "supernet_plain": {**base, "bench": "supernet", "step_s_median": 0.4, "arch_step_s_median": 0.4,
                           "arch_step_cpu_s_median": 0.1, "eval_step_s_median": 0.1, "eval_batch_size": 256},
        # No timed eval batch: the validation pass falls back to a third of a weight step per batch of 64.
        "supernet_amp": {**base, "bench": "supernet", "step_s_median": 0.4, "arch_step_s_median": 0.4,
                         "arch_step_cpu_s_median": 0.1},
        "train_plain": {**base, "bench": "train", "step_s_median": 0.1, "eval_step_s_median": 0.05,
                        "eval_batch_size": 384},
    }
    for name, r in runs.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(r) + "\n")
    (tmp_path / "gpu_tests").mkdir()
    (tmp_path / "gpu_tests" / "numerics.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"test": "tests/accel/test_x.py::test_a", "event": "started"},
        {"test": "tests/accel/test_x.py::test_a", "event": "passed", "seconds": 2.0, "message": ""},
        {"test": "tests/accel/test_x.py::test_b", "event": "started"}]) + '\n{"test": "tests/acc')  # cut by a kill
    (tmp_path / "gpu_tests" / "compiled.jsonl").write_text('{"group": "compiled", "event": "not run", "seconds_left": 3}\n')
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_summary.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    hours = {name: v["extrapolation"]["gpu_hours_with_val"] for name, v in summary["runs"].items()}
    # 50 x (391 x 0.8 s + 98 x 0.1 s); 50 x (391 x 0.8 + 391 x 0.4 / 3); 600 x (521 x 0.1 + 27 x 0.05)
    assert hours["supernet_plain"] == pytest.approx(50 * (391 * 0.8 + 98 * 0.1) / 3600)
    assert hours["supernet_amp"] == pytest.approx(50 * (391 * 0.8 + 391 * 0.4 / 3) / 3600)
    assert hours["train_plain"] == pytest.approx(600 * (521 * 0.1 + 27 * 0.05) / 3600)
    assert summary["tests"] == {"test_a": "PASSED (2.0 s)", "test_b": "no result",
                                "group compiled": "not run (3 s left)"}
    assert "NOT met" in proc.stdout


def test_gpu_check_dry_run_runs_the_tests_first_then_times_the_baselines_and_summarises(tmp_path):
    """benchmarks/gpu_check.sh's CPU dry run (toy sizes, no compiling): the three test groups
    first (every gpu-marked test skips on the CPU), each test's result in its group's file, then
    the plain benches, then the summary over all of it."""
    import os

    out = tmp_path / "out"
    env = {**os.environ, "DEVICE": "cpu", "STEPS": "1", "COMPILE": "0", "BUDGET": "300", "OUT": str(out),
           "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.index("== numerics") < proc.stdout.index("== compiled") < proc.stdout.index("== supernet_plain")
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["runs"]) == {"supernet_plain", "supernet_step_graphs", "supernet_step_graphs_channels_last",
                                    "supernet_step_graphs_streams4", "train_plain"}
    graphs = json.loads((out / "supernet_step_graphs.json").read_text().splitlines()[-1])
    assert graphs["compile"] == "step-graphs" and graphs["step_graphs"]["weight"]["backend"] == "eager"  # CPU
    assert all(_positive(v["extrapolation"]["gpu_hours_with_val"]) for v in summary["runs"].values())
    assert sorted(p.name for p in (out / "gpu_tests").glob("*.jsonl")) == ["compiled.jsonl", "graphs.jsonl",
                                                                          "numerics.jsonl"]
    tests = summary["tests"]
    marked = subprocess.run(["grep", "-rhc", "mark.gpu$", "tests", "--include=test_*.py"], cwd=REPO,
                            capture_output=True, text=True).stdout.split()
    assert len(tests) >= sum(map(int, marked))  # every gpu test, in one group or another (+ parametrised cases)
    assert "test_cudagraphs_backend_search_steps_equal_eager_ones_on_gpu" in tests  # group 'compiled'
    assert "test_branch_streams_search_steps_equal_single_stream_ones_on_gpu[eager]" in tests  # 'graphs'
    assert "test_channels_last_supernet_equals_the_contiguous_one_on_gpu" in tests  # 'numerics'
    assert all(v.startswith("SKIPPED") and v.endswith("needs a CUDA device") for v in tests.values()), tests
    assert re.search(r"best search: supernet_\w+ ->", proc.stdout)


def test_gpu_test_results_survive_a_group_killed_mid_test(tmp_path):
    """benchmarks/gpu_results.py writes each result the moment its test ends: a group killed in its
    third test keeps the first two results, and the summary names the test that was running."""
    (tmp_path / "test_group.py").write_text(
        "import os, signal, pytest\n"
        "def test_first(): pass\n"
        "def test_second(): pytest.skip('needs a CUDA device')\n"
        "def test_third(): os.kill(os.getpid(), signal.SIGKILL)\n"
        "def test_fourth(): pass\n")
    results = tmp_path / "out" / "group.jsonl"
    proc = subprocess.run([sys.executable, "-m", "pytest", str(tmp_path / "test_group.py"), "-p", "benchmarks.gpu_results",
                           "--results-file", str(results), "-p", "no:cacheprovider", "-o", "addopts="],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -9  # killed, as a time limit would
    summary = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_summary.py"), "--tests", str(results)],
                             capture_output=True, text=True, timeout=60).stdout.splitlines()
    assert [line.split(" (")[0] for line in summary] == ["test_first: PASSED", "test_second: SKIPPED",
                                                          "test_third: no result"]
    assert summary[1].endswith(": needs a CUDA device")


def test_the_standalone_gpu_test_runner_selects_expands_and_records_like_pytest(tmp_path):
    """benchmarks/run_gpu_tests.py, for a GPU machine without pytest-timeout: pytest's -k grammar,
    one case per parametrised value, and the same results file as the pytest plugin."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import run_gpu_tests
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    assert run_gpu_tests.selected("test_step_graphs_search", "step_graph or streams")
    assert not run_gpu_tests.selected("test_step_graphs_search", "not (step_graph or streams)")
    assert run_gpu_tests.selected("test_bf16_x", "not (step_graph or streams) and BF16")
    results = tmp_path / "streams.jsonl"
    assert run_gpu_tests.main(["-k", "streams", "--results-file", str(results)]) == 0
    records = [json.loads(line) for line in results.read_text().splitlines()]
    ended = [r["test"].rpartition("::")[2] for r in records if r["event"] != "started"]
    assert ended == ["test_branch_streams_search_steps_equal_single_stream_ones_on_gpu[step-graphs]",
                     "test_branch_streams_search_steps_equal_single_stream_ones_on_gpu[eager]"]
    import torch
    if not torch.cuda.is_available():
        assert {r["event"] for r in records} == {"started", "skipped"}


def test_gpu_noise_floor_finds_no_difference_between_cpu_runs():
    """benchmarks/gpu_noise_floor.py on the CPU: runs of the same search steps agree exactly, so
    every pair prints zeros (on a GPU, cuDNN's free choice of algorithms does not)."""
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_noise_floor.py"), "--device", "cpu"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pairs = [line for line in proc.stdout.splitlines() if " vs " in line]
    assert len(pairs) == 3, proc.stdout
    for line in pairs:
        assert line.count("0.0e+00") == 4, line
