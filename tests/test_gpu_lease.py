"""GPU leases: concurrent jobs get distinct devices, a killed holder frees its device, and
nothing is leased where a scheduler already chose or no GPU exists. Fake device ids only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from itnas import gpu_lease
from itnas.errors import UserError

HOLDER = textwrap.dedent("""
    import os, sys, time
    from itnas.gpu_lease import lease_gpus
    lease = lease_gpus(int(sys.argv[1]), timeout_s=float(sys.argv[2]))
    print(os.environ.get("CUDA_VISIBLE_DEVICES", "<none>"), flush=True)
    time.sleep(float(sys.argv[3]))
""")


@pytest.fixture
def fake_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("ITNAS_FAKE_GPU_IDS", "0,1,2,3")
    monkeypatch.setenv("ITNAS_GPU_LOCK_DIR", str(tmp_path / "locks"))
    for var in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "ITNAS_GPU_LEASE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "locks"


def _start(n: int = 1, timeout: float = 30, hold: float = 30) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(n), str(timeout), str(hold)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))


def _first_line(proc: subprocess.Popen) -> str:
    line = proc.stdout.readline().strip()
    assert line, proc.stderr.read()
    return line


def test_concurrent_processes_get_distinct_devices(fake_gpus):
    procs = [_start() for _ in range(4)]
    try:
        devices = sorted(_first_line(p) for p in procs)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert devices == ["0", "1", "2", "3"]


def test_fifth_job_waits_for_a_device_and_times_out_with_one_line(fake_gpus):
    procs = [_start() for _ in range(4)]
    try:
        for p in procs:
            _first_line(p)
        waiter = subprocess.run([sys.executable, "-c", HOLDER, "1", "1", "0"],
                                capture_output=True, text=True, env=dict(os.environ))
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert waiter.returncode != 0
    assert "no 1 free GPU(s) among 0, 1, 2, 3" in waiter.stderr


def test_sigkilled_holder_releases_its_device(fake_gpus, monkeypatch):
    monkeypatch.setenv("ITNAS_FAKE_GPU_IDS", "7")
    holder = _start()
    assert _first_line(holder) == "7"
    with pytest.raises(UserError):
        gpu_lease.lease_gpus(1, timeout_s=0.2)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with gpu_lease.lease_gpus(1, timeout_s=5) as lease:
        assert lease.devices == ["7"]
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "7"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_waiting_job_gets_the_device_once_the_holder_exits(fake_gpus, monkeypatch):
    monkeypatch.setenv("ITNAS_FAKE_GPU_IDS", "3")
    holder = _start(hold=1.0)
    assert _first_line(holder) == "3"
    t0 = time.monotonic()
    with gpu_lease.lease_gpus(1, timeout_s=20) as lease:
        assert lease.devices == ["3"]
    assert time.monotonic() - t0 < 15
    holder.wait()


def test_multi_gpu_lease_takes_distinct_devices_and_never_a_partial_set(fake_gpus):
    first = gpu_lease.lease_gpus(3, timeout_s=1)
    try:
        assert sorted(first.devices) == ["0", "1", "2"]
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2"
        env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
        other = subprocess.run([sys.executable, "-c", HOLDER, "2", "0.3", "0"],
                               capture_output=True, text=True, env=env)
        assert other.returncode != 0 and "no 2 free GPU(s)" in other.stderr
        one = subprocess.run([sys.executable, "-c", HOLDER, "1", "0.3", "0"],
                             capture_output=True, text=True, env=env)
        assert one.stdout.strip() == "3"
    finally:
        first.release()
    with gpu_lease.lease_gpus(4, timeout_s=1) as all_four:
        assert len(all_four.devices) == 4


def test_asking_for_more_gpus_than_exist_is_a_user_error(fake_gpus):
    with pytest.raises(UserError, match="asked for 5 GPUs but this machine has 4"):
        gpu_lease.lease_gpus(5)


@pytest.mark.parametrize("var,value", [("CUDA_VISIBLE_DEVICES", "2"), ("SLURM_JOB_ID", "42"),
                                       ("ITNAS_GPU_LEASE", "off")])
def test_no_lease_when_a_scheduler_already_chose(fake_gpus, monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    lease = gpu_lease.lease_gpus(1)
    assert not lease.active
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == (value if var == "CUDA_VISIBLE_DEVICES" else None)
    assert not (fake_gpus.exists() and any(fake_gpus.iterdir()))


def test_no_lease_on_a_machine_without_gpus(fake_gpus, monkeypatch):
    monkeypatch.setenv("ITNAS_FAKE_GPU_IDS", "")
    with gpu_lease.lease_gpus(1) as lease:
        assert not lease.active
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_lease_for_cpu_or_an_explicit_device_leases_nothing(fake_gpus):
    assert not gpu_lease.lease_for("cpu").active
    assert not gpu_lease.lease_for("cuda:1").active
    with gpu_lease.lease_for("auto") as lease:
        assert lease.active


def test_exec_with_lease_passes_the_lease_to_the_command(fake_gpus):
    # The child (itnas lease) execs a python that reports its devices and tries to lease the
    # same ids again: the inner lease must be a no-op because CUDA_VISIBLE_DEVICES is set.
    code = ("import os; from itnas.gpu_lease import lease_gpus; "
            "l = lease_gpus(1); print(os.environ['CUDA_VISIBLE_DEVICES'], l.active)")
    out = subprocess.run([sys.executable, "-m", "itnas.cli", "lease", "--gpus", "2", "--",
                          sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0,1", "False"]


def test_importing_the_module_does_not_import_torch():
    code = "import sys, itnas.gpu_lease; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_lock_files_live_in_the_configured_folder(fake_gpus):
    with gpu_lease.lease_gpus(1) as lease:
        assert (Path(fake_gpus) / f"gpu{lease.devices[0]}.lock").exists()
