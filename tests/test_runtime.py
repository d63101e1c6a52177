"""runtime.py: the `runtime:` block resolved into a Runtime, and the one home of devices, seeding,
determinism and memory figures. With `accel: false` the method runs without loading itnas/accel."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from itnas import runtime
from itnas.config import defaults
from itnas.errors import UserError
from tests.conftest import REPO

CPU = torch.device("cpu")


def _block(**changes) -> dict:
    return {**defaults("search")["runtime"], "device": "cpu", **changes}


# ----------------------------------------------------------------------------- acceleration stays out

# Imports both loops, builds a CPU Searcher with accel off and runs one architecture and one weight
# step on it, then builds one with accel on; prints the itnas.accel modules loaded after each.
_PROBE = """
import json, sys, torch
import itnas.search.loop, itnas.train.loop
from itnas.config import load_config
from itnas.search.loop import Searcher
def accel_modules():
    return sorted(m for m in sys.modules if m == "itnas.accel" or m.startswith("itnas.accel."))
def searcher(accel):
    cfg = load_config(None, "search", ["runtime.device=cpu", f"runtime.accel={accel}", "model.layers=3",
                                       "model.init_channels=4"])
    return Searcher(cfg, 10, 3)
plain = searcher("false")
x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
plain.arch_step(x, y, x, y)
loss, _ = plain.weight_step(x, y)
assert loss == loss, "the step ran"
print(json.dumps(accel_modules()))
searcher("true")
print(json.dumps(accel_modules()))
"""


def test_a_plain_search_step_loads_no_acceleration_module_and_an_accelerated_one_does():
    done = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    plain, accelerated = (json.loads(line) for line in done.stdout.strip().splitlines()[-2:])
    assert plain == []
    # The probe sees what it looks for: with accel on, itnas/accel and its auto rules are loaded.
    assert "itnas.accel" in accelerated and "itnas.accel.auto" in accelerated, accelerated


# ----------------------------------------------------------------------------- resolution


def test_accel_off_resolves_the_plain_computation_and_says_which_settings_it_ignores(caplog):
    with caplog.at_level(logging.WARNING, logger="itnas.runtime"):
        rt = runtime.resolve_runtime(_block(accel=False, amp=True, compile="default", streams=4), "search")
    assert (rt.accel, rt.amp, rt.channels_last, rt.compile, rt.streams) == (False, False, False, None, 1)
    assert "ignoring runtime.amp" in caplog.text
    assert rt.describe().endswith("plain (accel off)")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="itnas.runtime"):
        runtime.resolve_runtime(_block(accel=False), "train")  # auto everywhere: nothing to warn about
    assert caplog.text == ""


def test_accel_on_the_cpu_resolves_auto_to_channels_last_eager_on_one_stream():
    rt = runtime.resolve_runtime(_block(accel=True), "search")
    assert (rt.device, rt.accel, rt.amp, rt.channels_last, rt.compile, rt.streams) == (CPU, True, False, True, None, 1)
    assert not rt.cuda_graphs and "channels-last" in rt.describe()


def test_the_runtime_copies_the_blocks_other_settings():
    block = _block(accel=False, deterministic=True, workers=3, pipeline="loader", eval_batch_size=7,
                   max_batch_per_process=5, eval_every=2, progress=False)
    rt = runtime.resolve_runtime(block, "train")
    assert (rt.deterministic, rt.workers, rt.pipeline, rt.eval_batch_size, rt.max_batch_per_process, rt.eval_every,
            rt.progress) == (True, 3, "loader", 7, 5, 2, False)


def test_accelerate_with_accel_off_leaves_the_job_untouched():
    rt = runtime.resolve_runtime(_block(accel=False), "search")

    class Job:
        kind = "search"

    job = Job()
    rt.accelerate(job)
    assert vars(job) == {}


# ----------------------------------------------------------------------------- compile values


@pytest.mark.parametrize("value", [None, False, True, "auto", *runtime.COMPILE_MODES])
def test_every_compile_value_the_schema_lists_is_taken_by_both_jobs(value):
    runtime.check_compile(value, job="train")
    runtime.check_compile(value, job="search")


def test_step_graphs_are_for_the_search_only_and_unknown_modes_are_refused_naming_the_key():
    runtime.check_compile(runtime.STEP_GRAPHS, job="search")
    with pytest.raises(UserError, match=r"^cfg.yaml: key 'runtime.compile': step-graphs records the search's steps"):
        runtime.check_compile(runtime.STEP_GRAPHS, "cfg.yaml: key 'runtime.compile'", job="train")
    with pytest.raises(UserError, match=r"key 'compile': expected false, true, auto or one of default, .*step-graphs"):
        runtime.check_compile("fast", job="search")


def test_only_the_cuda_graph_modes_replay_cuda_graphs():
    assert [m for m in runtime.COMPILE_MODES if runtime.uses_cuda_graphs(m)] == ["reduce-overhead", "max-autotune",
                                                                                 "cudagraphs"]
    assert not runtime.uses_cuda_graphs(None) and not runtime.uses_cuda_graphs(runtime.STEP_GRAPHS)


# ----------------------------------------------------------------------------- devices and seeds


def test_device_names_resolve_or_are_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.resolve_device("auto") == CPU == runtime.resolve_device("cpu")
    with pytest.raises(UserError, match=r"--device cuda:1: CUDA is not available"):
        runtime.resolve_device("cuda:1")
    with pytest.raises(UserError, match=r"device 'gpu': expected auto, cpu, cuda or cuda:N"):
        runtime.resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.resolve_device("auto") == torch.device("cuda") and runtime.resolve_device("cuda:1").index == 1


def test_seed_everything_repeats_python_numpy_and_torch_draws():
    def draws():
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    runtime.seed_everything(2**32 + 5)  # numpy takes the seed modulo 2**32
    first = draws()
    runtime.seed_everything(2**32 + 5)
    assert draws() == first
    runtime.seed_everything(6)
    assert draws() != first


def test_deterministic_mode_is_set_and_undone_without_loading_inductor():
    loaded = "torch._inductor.config" in sys.modules
    try:
        runtime.set_deterministic(True)
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark
    finally:
        runtime.set_deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    assert ("torch._inductor.config" in sys.modules) == loaded


# ----------------------------------------------------------------------------- batches and memory


def test_a_batch_moves_in_the_runs_layout():
    x, y = torch.randn(2, 3, 4, 4), torch.tensor([0, 1])
    x2, y2 = runtime.batch_to(x, y, CPU, channels_last=True)
    assert x2.is_contiguous(memory_format=torch.channels_last) and not x2.is_contiguous()
    assert torch.equal(x2, x) and torch.equal(y2, y)
    assert runtime.batch_to(x, y, CPU, channels_last=False)[0].is_contiguous()


def test_autocast_is_bf16_when_on_and_nothing_when_off():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with runtime.autocast(CPU, True):
        assert (a @ b).dtype == torch.bfloat16
    with runtime.autocast(CPU, False):
        assert (a @ b).dtype == torch.float32


def test_cpu_memory_is_the_processes_peak_resident_set_and_the_allocation_comes_from_the_environment(monkeypatch):
    assert runtime.peak_memory_bytes(CPU) > 10 * 2**20  # torch alone takes more than 10 MiB
    runtime.reset_peak_memory(CPU)  # nothing to reset on the CPU
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert runtime.allocation() == {"slurm_job_id": "42", "cuda_visible_devices": None}
    assert runtime.describe(CPU).startswith("cpu:") and torch.__version__ in runtime.describe(CPU)
