"""Devices, seeding, determinism and memory figures: the one place that touches these.

CUDA fast paths (bf16 autocast, channels-last) are on by default on CUDA and off on CPU;
`deterministic` asks torch for deterministic kernels where they exist.
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import sys

import numpy as np
import torch

from itnas.errors import UserError


def resolve_device(spec: str = "auto") -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {spec}: CUDA is not available on this machine (use cpu or auto)")
    if spec not in ("cpu", "cuda") and not spec.startswith("cuda:"):
        raise UserError(f"device '{spec}': expected auto, cpu, cuda or cuda:N")
    return torch.device(spec)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def set_deterministic(enabled: bool) -> None:
    """Deterministic kernels on request; CPU runs here are deterministic either way."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    else:
        # Undo an earlier deterministic run in the same process (tests, selection loops).
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = torch.cuda.is_available()


def resolve_flag(value: bool | str, device: torch.device) -> bool:
    """Config flags that accept true/false/'auto' ('auto' = on for CUDA only)."""
    if value == "auto":
        return device.type == "cuda"
    return bool(value)


def autocast(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        dtype = torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak GPU memory allocated on CUDA; peak resident set size of the process on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def allocation() -> dict[str, str | None]:
    """Which devices this job was given (by SLURM or by the GPU lease), for metrics.json."""
    return {"slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{os.cpu_count()}-cores:torch-{torch.__version__}"
