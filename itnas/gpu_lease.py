"""One GPU per job on a shared box: lease devices through lock files before CUDA starts.

Snakemake only counts GPUs (`resources: gpu=1`); it does not say which one a job gets. Each
`itnas` entry point therefore leases devices itself: one lock file per device on node-local
disk, taken with `fcntl.flock`, so the kernel releases it when the holder exits for any
reason, SIGKILL included. The lease sets `CUDA_VISIBLE_DEVICES` and must run before CUDA
initialises in the process; this module never imports torch in the parent process.

Nothing is leased when a scheduler already chose (`CUDA_VISIBLE_DEVICES` set, or a SLURM job)
or when the machine has no GPU. Environment:

- `ITNAS_GPU_LOCK_DIR`: folder of the lock files (default `/tmp/itnas-gpu-locks`; node-local).
- `ITNAS_FAKE_GPU_IDS`: comma-separated device ids to pretend exist (tests); `""` means none.
- `ITNAS_GPU_LEASE`: `off` disables leasing.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from itnas.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_LOCK_DIR = "/tmp/itnas-gpu-locks"
DEFAULT_TIMEOUT_S = 24 * 3600.0  # Snakemake's gpu count normally keeps waits short
POLL_S = 0.5


@dataclass
class Lease:
    """The devices a process holds; `release()` (or leaving the `with` block) frees them."""

    devices: list[str] = field(default_factory=list)
    _fds: list[int] = field(default_factory=list, repr=False)
    _previous_env: str | None = field(default=None, repr=False)
    _set_env: bool = field(default=False, repr=False)

    @property
    def active(self) -> bool:
        return bool(self._fds)

    @property
    def fds(self) -> list[int]:
        """The lock file descriptors; mark them inheritable to pass the lease to a child."""
        return list(self._fds)

    def release(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        if self._set_env:
            if self._previous_env is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = self._previous_env
            self._set_env = False

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def scheduler_assigned() -> str | None:
    """Why leasing is skipped because someone else already chose devices, or None."""
    if os.environ.get("ITNAS_GPU_LEASE", "").lower() in ("off", "0", "false", "no"):
        return "ITNAS_GPU_LEASE=off"
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r} already set"
    if os.environ.get("SLURM_JOB_ID"):
        return f"inside SLURM job {os.environ['SLURM_JOB_ID']}"
    return None


def device_ids() -> list[str]:
    """The GPUs of this machine, without initialising CUDA in this process."""
    fake = os.environ.get("ITNAS_FAKE_GPU_IDS")
    if fake is not None:
        return [d.strip() for d in fake.split(",") if d.strip()]
    count = _nvml_device_count()
    if count is None:
        # No NVIDIA driver: no CUDA device. Only a ROCm machine (/dev/kfd) may still have GPUs.
        count = _torch_device_count_in_child() if os.path.exists("/dev/kfd") else 0
    return [str(i) for i in range(count)]


def _nvml_device_count() -> int | None:
    """Device count from the driver's NVML library; None when there is no NVIDIA driver."""
    for name in ("libnvidia-ml.so.1", "libnvidia-ml.so"):
        try:
            nvml = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            if nvml.nvmlInit_v2() != 0:
                return None
            count = ctypes.c_uint(0)
            ok = nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) == 0
            nvml.nvmlShutdown()
            return int(count.value) if ok else None
        except AttributeError:
            return None
    return None


def _torch_device_count_in_child() -> int:
    """torch.cuda.device_count() in a child process, so that this one's GPU runtime stays untouched."""
    code = "import torch; print(torch.cuda.device_count() if torch.version.cuda or torch.version.hip else 0)"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=120, check=False)
        return int(out.stdout.strip() or 0)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return 0


def lock_dir() -> Path:
    path = Path(os.environ.get("ITNAS_GPU_LOCK_DIR") or DEFAULT_LOCK_DIR)
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        # Shared by every user of the box: world-writable with the sticky bit, like /tmp.
        with contextlib.suppress(OSError):
            os.chmod(path, 0o1777)
    return path


def _open_lock(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        fd = os.open(path, os.O_RDONLY)  # another user's lock file: flock works read-only
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o666)
    return fd


def _try_lock(path: Path) -> int | None:
    fd = _open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise
    # Record the holder for people reading the folder; the lock itself is the flock.
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def lease_gpus(n: int = 1, timeout_s: float = DEFAULT_TIMEOUT_S,
               devices: Sequence[str] | None = None) -> Lease:
    """Lease `n` distinct GPUs and set `CUDA_VISIBLE_DEVICES`; use as a context manager.

    Returns an inactive lease (and changes nothing) when a scheduler already assigned devices
    or the machine has no GPU. Waits up to `timeout_s` for devices that other jobs hold.
    """
    if n < 1:
        return Lease()
    reason = scheduler_assigned()
    if reason:
        log.debug("GPU lease skipped: %s", reason)
        return Lease()
    ids = list(devices) if devices is not None else device_ids()
    if not ids:
        log.debug("GPU lease skipped: no GPU on this machine")
        return Lease()
    if n > len(ids):
        raise UserError(f"asked for {n} GPUs but this machine has {len(ids)} ({', '.join(ids)})")
    folder = lock_dir()
    deadline = time.monotonic() + timeout_s
    waited = False
    while True:
        held: list[tuple[str, int]] = []
        for dev in ids:
            fd = _try_lock(folder / f"gpu{dev}.lock")
            if fd is not None:
                held.append((dev, fd))
                if len(held) == n:
                    break
        if len(held) == n:
            break
        for _, fd in held:  # partial: give back and retry, never sit on a subset
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        if time.monotonic() >= deadline:
            raise UserError(f"no {n} free GPU(s) among {', '.join(ids)} after {timeout_s:.0f} s "
                            f"(lock files in {folder}); lower the jobs' gpu resources or wait")
        if not waited:
            log.info("waiting for %d free GPU(s) among %s", n, ", ".join(ids))
            waited = True
        time.sleep(POLL_S)
    lease = Lease(devices=[d for d, _ in held], _fds=[fd for _, fd in held],
                  _previous_env=os.environ.get("CUDA_VISIBLE_DEVICES"), _set_env=True)
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(lease.devices)
    log.info("leased GPU %s (CUDA_VISIBLE_DEVICES=%s)", ", ".join(lease.devices),
             os.environ["CUDA_VISIBLE_DEVICES"])
    return lease


def lease_for(device: str, n: int = 1, timeout_s: float = DEFAULT_TIMEOUT_S) -> Lease:
    """Lease `n` GPUs for a `--device` setting: only 'auto' and 'cuda' lease; 'cpu' and an
    explicit 'cuda:N' (the user chose) do not."""
    if device in ("auto", "cuda"):
        return lease_gpus(n, timeout_s)
    return Lease()


@contextlib.contextmanager
def leased(n: int = 1, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[Lease]:
    lease = lease_gpus(n, timeout_s)
    try:
        yield lease
    finally:
        lease.release()


def exec_with_lease(n: int, argv: list[str], timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Lease `n` GPUs, then replace this process by `argv` (e.g. torchrun ...) holding the lease.

    The lock descriptors are inherited across exec, so the lease lives exactly as long as the
    command and its workers (the kernel drops it when the last holder exits).
    """
    if not argv:
        raise UserError("no command given after --")
    lease = lease_gpus(n, timeout_s)
    for fd in lease.fds:
        os.set_inheritable(fd, True)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        lease.release()
        raise UserError(f"command not found: {argv[0]}") from None
