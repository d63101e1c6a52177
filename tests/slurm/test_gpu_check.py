"""`itnas gpu-check`: the canary that stops a multi-GPU run whose allocation and torch disagree.

No SLURM and no GPU needed: the environment is monkeypatched and torch is replaced by a fake
that reports a chosen device count (or, like CUDA, as many devices as CUDA_VISIBLE_DEVICES lists).
"""

from __future__ import annotations

import json
import os
import sys
import types

import pytest

from itnas import cli
from itnas.cli.infra import check
from itnas.errors import UserError

GPU_VARS = ("CUDA_VISIBLE_DEVICES", "SLURM_GPUS_ON_NODE", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS",
            "SLURM_JOB_ID", "ITNAS_GPU_LEASE", "ITNAS_FAKE_GPU_IDS", "ITNAS_GPU_LOCK_DIR")


def fake_torch(count: int | None, broken: tuple[int, ...] = ()) -> types.SimpleNamespace:
    """A torch stand-in with `count` CUDA devices (None: those CUDA_VISIBLE_DEVICES lists);
    those in `broken` fail an allocation."""

    def device_count():
        if count is not None:
            return count
        return len([d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d])

    def ones(n, device):
        if int(device.split(":")[1]) in broken:
            raise RuntimeError("CUDA error: uncorrectable ECC error encountered")
        return types.SimpleNamespace(add_=lambda x: None)

    cuda = types.SimpleNamespace(device_count=device_count,
                                 get_device_name=lambda i: f"Fake GPU {i}")
    return types.SimpleNamespace(cuda=cuda, ones=ones)


@pytest.fixture
def env(monkeypatch):
    """A clean GPU environment on a machine without GPUs (the lease never probes the real one);
    returns a setter for the variables a test wants."""
    for name in GPU_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ITNAS_FAKE_GPU_IDS", "")

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


@pytest.fixture
def torch_sees(monkeypatch):
    def install(count: int | None, broken: tuple[int, ...] = ()) -> None:
        monkeypatch.setitem(sys.modules, "torch", fake_torch(count, broken))

    return install


def gpu_check(monkeypatch, *argv: str) -> int:
    """Run `itnas gpu-check ARGV` through the real console entry point."""
    return cli.main(["gpu-check", *argv])


def test_a_matching_slurm_allocation_passes(monkeypatch, env, torch_sees, capsys):
    env(CUDA_VISIBLE_DEVICES="4,5,6,7", SLURM_GPUS_ON_NODE="4", SLURM_JOB_GPUS="4,5,6,7",
        SLURM_JOB_ID="123")
    torch_sees(4)
    assert gpu_check(monkeypatch, "--expect", "4") == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("gpu-check: ok: 4 GPUs")
    assert out == ("gpu-check: ok: 4 GPUs (torch sees 4, CUDA_VISIBLE_DEVICES='4,5,6,7', "
                   "SLURM_GPUS_ON_NODE=4, SLURM_JOB_GPUS=4,5,6,7) "
                   "[Fake GPU 0; Fake GPU 1; Fake GPU 2; Fake GPU 3]")


def test_torch_seeing_fewer_gpus_than_the_job_asked_for_fails_with_one_line(
        monkeypatch, env, torch_sees, capsys):
    env(CUDA_VISIBLE_DEVICES="0,1,2,3", SLURM_GPUS_ON_NODE="4", SLURM_JOB_GPUS="0,1,2,3")
    torch_sees(2)
    assert gpu_check(monkeypatch, "--expect", "4") == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("itnas gpu-check: error: expected 4 GPUs")
    assert "torch sees 2, CUDA_VISIBLE_DEVICES='0,1,2,3', SLURM_GPUS_ON_NODE=4" in lines[0]
    assert "ok" not in captured.out


def test_an_allocation_smaller_than_expected_fails_even_when_torch_agrees_with_it(env, torch_sees):
    env(CUDA_VISIBLE_DEVICES="0,1", SLURM_GPUS_ON_NODE="2", SLURM_JOB_GPUS="0,1")
    torch_sees(2)
    with pytest.raises(UserError, match=r"expected 8 GPUs but .*SLURM_GPUS_ON_NODE=2"):
        check(8, os.environ)


def test_the_step_gpu_list_is_compared_instead_of_the_job_list_inside_srun(env, torch_sees):
    env(CUDA_VISIBLE_DEVICES="2", SLURM_GPUS_ON_NODE="1", SLURM_STEP_GPUS="2",
        SLURM_JOB_GPUS="0,1,2,3")
    torch_sees(1)
    result = check(1, os.environ)
    assert result["counts"] == {"CUDA_VISIBLE_DEVICES": 1, "SLURM_GPUS_ON_NODE": 1,
                                "SLURM_STEP_GPUS": 1, "torch": 1}


def test_variables_that_are_not_set_are_not_compared(torch_sees):
    torch_sees(1)
    assert check(1, {})["counts"] == {"torch": 1}


def test_an_empty_cuda_visible_devices_means_no_gpu(torch_sees):
    torch_sees(0)
    with pytest.raises(UserError, match="torch sees 0, CUDA_VISIBLE_DEVICES=''"):
        check(1, {"CUDA_VISIBLE_DEVICES": ""})


def test_a_visible_gpu_that_fails_an_allocation_stops_the_run(torch_sees):
    torch_sees(2, broken=(1,))
    with pytest.raises(UserError, match=r"cuda:1 is visible but unusable: RuntimeError: .*ECC"):
        check(2, {"CUDA_VISIBLE_DEVICES": "0,1"})


def test_device_cpu_compares_only_the_scheduler_view_as_on_fake_gpus(
        monkeypatch, env, torch_sees, tmp_path):
    env(CUDA_VISIBLE_DEVICES="1,2", SLURM_GPUS_ON_NODE="2", SLURM_JOB_GPUS="1,2", SLURM_JOB_ID="77")
    torch_sees(0)  # a CI machine: the GPUs are gres entries backed by /dev/null
    out = tmp_path / "gpu_check.json"
    assert gpu_check(monkeypatch, "--expect", "2", "--device", "cpu", "--out", str(out)) == 0
    written = json.loads(out.read_text())
    assert written["counts"] == {"CUDA_VISIBLE_DEVICES": 2, "SLURM_GPUS_ON_NODE": 2,
                                 "SLURM_JOB_GPUS": 2}
    assert written["slurm_job_id"] == "77" and written["expect"] == 2 and written["device"] == "cpu"


def test_the_device_comes_from_the_training_config_and_its_overrides(
        monkeypatch, env, torch_sees, tmp_path, capsys):
    env(SLURM_JOB_ID="5", SLURM_GPUS_ON_NODE="1")
    torch_sees(0)
    cfg = tmp_path / "train.yaml"
    cfg.write_text("runtime:\n  device: auto\n")
    assert gpu_check(monkeypatch, "--expect", "1", "--config", str(cfg)) == 2
    assert "torch sees 0, SLURM_GPUS_ON_NODE=1" in capsys.readouterr().err
    assert gpu_check(monkeypatch, "--expect", "1", "--config", str(cfg), "--set", "runtime.device=cpu") == 0


def test_cpu_training_without_a_scheduler_has_nothing_to_check_and_passes(
        monkeypatch, env, torch_sees, capsys):
    torch_sees(0)  # the smoke DAG on a laptop
    assert gpu_check(monkeypatch, "--expect", "1", "--device", "cpu") == 0
    assert "nothing to compare" in capsys.readouterr().out


def test_outside_a_scheduler_it_leases_the_gpus_like_train_does(monkeypatch, env, torch_sees, tmp_path):
    env(ITNAS_FAKE_GPU_IDS="0,1,2,3", ITNAS_GPU_LOCK_DIR=str(tmp_path / "locks"))
    torch_sees(None)  # torch sees what CUDA_VISIBLE_DEVICES lists
    out = tmp_path / "gpu_check.json"
    assert gpu_check(monkeypatch, "--expect", "2", "--out", str(out)) == 0
    assert json.loads(out.read_text())["counts"] == {"CUDA_VISIBLE_DEVICES": 2, "torch": 2}
    assert "CUDA_VISIBLE_DEVICES" not in os.environ  # the lease is given back


def test_more_gpus_than_the_machine_has_fails_with_one_line(monkeypatch, env, torch_sees, tmp_path, capsys):
    env(ITNAS_FAKE_GPU_IDS="0,1", ITNAS_GPU_LOCK_DIR=str(tmp_path / "locks"))
    torch_sees(None)
    assert gpu_check(monkeypatch, "--expect", "8") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "8 GPUs" in err[0]


def test_a_non_numeric_slurm_count_is_a_one_line_error(torch_sees):
    torch_sees(1)
    with pytest.raises(UserError, match="SLURM_GPUS_ON_NODE='a100:1' is not a number"):
        check(1, {"SLURM_GPUS_ON_NODE": "a100:1"})
