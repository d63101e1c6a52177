"""How a run runs, resolved once per job into a `Runtime` that the search, the training and the
benchmarks share; and the one place that touches devices, seeding, determinism and memory
figures.

Every command's config has the same `runtime:` block (itnas/schemas/runtime.json). Its keys say
how a run runs, not what it computes (beyond float rounding, the order of augmentation draws
between the two data pipelines, and gradient accumulation), so a run may be resumed with other
values. `auto` means what was measured fastest per device type (`AUTO_FLAGS`, `AUTO_COMPILE`,
`AUTO_STREAMS`, docs/performance.md). `accel: false` is the one switch that turns every
speed-up off: eager float32 NCHW on one stream with the plain modules of itnas/ops.py, the
computation exactly as the method files write it; itnas/accel holds everything it turns off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import resource
import sys
from dataclasses import dataclass

import numpy as np
import torch

from itnas import accel
from itnas.accel.compile import (
    BACKEND_MODES,
    COMPILE_MODES,
    CUDA_GRAPH_MODES,
    JOB_MODES,
    STEP_GRAPHS,
)
from itnas.errors import UserError

log = logging.getLogger(__name__)

__all__ = ["BACKEND_MODES", "COMPILE_MODES", "CUDA_GRAPH_MODES", "JOB_MODES", "STEP_GRAPHS", "Runtime", "resolve_runtime"]


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
        deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    else:
        # Undo an earlier deterministic run in the same process (tests, selection loops).
        deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = torch.cuda.is_available()


def deterministic_algorithms(mode: bool, warn_only: bool = False) -> None:
    """`torch.use_deterministic_algorithms` without importing Inductor for it. Torch's function
    imports `torch._inductor` (1.4 s of every job's start on the CPU) only to copy the flag into
    Inductor's config; while Inductor is not loaded, set torch's own flag alone and let
    `accel.compile.compile_module` copy it when it compiles."""
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        setter(mode, warn_only=warn_only)


# What `auto` means for each fast-path flag, per device type: the setting measured fastest.
# - channels_last on the CPU: on. CPU-time ratios channels-last / NCHW, one thread, interleaved
#   (benchmarks/compare_layouts.py, 2-core AMD EPYC, torch 2.14.1, batch 16 and 32): supernet
#   weight step (8 cells, C=16) 0.64-0.68, DARTS_V2 training step (20 cells, C=36) 0.59-0.68.
# - CUDA (H100, eager, launch-bound steps): both off. bf16 autocast + channels-last made the
#   supernet weight step 517 ms instead of 414 ms and the DARTS_V2 step 195 ms instead of 133 ms
#   (the casts and layout kernels add launches to a step bound by launches). Both stay available
#   as an explicit `true`, e.g. to halve memory or to try them under torch.compile.
# - CUDA under CUDA graphs (H200, compile cudagraphs, 2026-11-28): bf16 still slower (supernet
#   0.94 of the eager step against 0.86 without it; training 0.85 against 0.81); channels-last
#   faster (0.81; 0.76) but its GPU equality test failed on the supernet: torch 2.11's CUDA
#   avg_pool2d channels-last backward ignores the padding (pytorch/pytorch#188344), routed around
#   in ops.avg_pool since, not yet rerun on a GPU. Both stay off until then.
# - bf16 autocast on the CPU: off (not measured to be faster; it also changes the numbers).
# Device types not listed (mps, xpu, ...) get off.
AUTO_FLAGS: dict[str, dict[str, bool]] = {
    "amp": {"cpu": False, "cuda": False},
    "channels_last": {"cpu": True, "cuda": False},
}


def resolve_flag(value: bool | str, device: torch.device, flag: str) -> bool:
    """A fast-path flag's config value (true, false or 'auto') as a bool on `device`.

    `flag` is 'amp' or 'channels_last'; 'auto' looks up `AUTO_FLAGS`: channels-last on for
    the CPU, where it is faster; amp and channels-last off on CUDA, where both made the eager,
    launch-bound steps slower. true and false are taken as they are, on any device.
    """
    if flag not in AUTO_FLAGS:
        raise ValueError(f"unknown fast-path flag {flag!r}; expected one of {sorted(AUTO_FLAGS)}")
    if value == "auto":
        return AUTO_FLAGS[flag].get(device.type, False)
    if not isinstance(value, bool):
        raise UserError(f"{flag}: expected auto, true or false, got {value!r}")
    return value


# What `compile: auto` means, per job and device type: the fastest mode measured whose GPU
# comparison with eager held within the measured noise (docs/performance.md, one H200,
# 2026-11-28, step time / plain eager):
# - training (DARTS_V2, 20 cells, batch 96): reduce-overhead 0.38 (51 vs 134 ms), against 0.81
#   for cudagraphs; compiling took about 5 minutes beside other compiles, once per job.
# - search (8-cell supernet, batch 64): step-graphs, each whole step one recorded CUDA graph,
#   nothing compiled: 0.34 of eager on one stream (weight + arch step 182 vs 533 ms), about
#   0.18 with the ops on 4 streams (`AUTO_STREAMS`; 94 ms), against 0.86 for cudagraphs;
#   reduce-overhead did not finish compiling in 400 s beside other compiles.
# Off on the CPU (Inductor's C++ build takes minutes and nothing was measured faster) and in
# multi-process (DDP) training, where CUDA graphs are untested.
AUTO_COMPILE: dict[str, dict[str, str]] = {
    "train": {"cuda": "reduce-overhead"},
    "search": {"cuda": STEP_GRAPHS},
}


def compile_mode(value: bool | str | None, what: str = "key 'compile'", device: torch.device | None = None,
                 job: str = "train", distributed: bool = False) -> str | None:
    """The torch.compile mode a `compile` value asks for (true = 'default'), None for eager;
    'auto' looks up `AUTO_COMPILE[job]` for `device` (eager without a device, or when
    `distributed`). `what` names the setting in the error (the schema refuses other values first)."""
    if value is None or value is False:
        return None
    if value is True:
        return "default"
    if value == "auto":
        return None if device is None or distributed else AUTO_COMPILE[job].get(device.type)
    if value in JOB_MODES[job]:
        return str(value)
    if value == STEP_GRAPHS:
        raise UserError(f"{what}: step-graphs records the search's steps only; for training use "
                        "reduce-overhead or cudagraphs (CUDA graphs of the compiled network)")
    raise UserError(f"{what}: expected false, true, auto or one of {', '.join(JOB_MODES[job])}, got {value!r}")


# What `runtime.streams: auto` means, per compile mode on CUDA: how many CUDA streams the ops into
# a search cell's node run on side by side (itnas/accel/streams.py). Measured on one H200 (2026-11-28,
# 8-cell supernet, batch 64, step-graphs), weight + arch step / validation batch of 250:
# 1 stream 184 / 83 ms, 4 streams 94 / 69 ms, 8 streams 88 / 95 ms (the larger validation
# batch contends for memory bandwidth); a 50-epoch search with its validation passes 1.11,
# 0.61 and 0.61 GPU-hours. 4, the fewer. With deterministic cuDNN the steps on 4 and 8 streams
# were bit-identical to those on one. Eager steps are bound by the host, where streams only
# add events: 1 there.
AUTO_STREAMS: dict[str, int] = {STEP_GRAPHS: 4}


def resolve_streams(value: int | str, device: torch.device, mode: str | None) -> int:
    """A `streams` setting (an int >= 1 or 'auto') as a count for a search on `device` in compile
    `mode`: 'auto' is `AUTO_STREAMS[mode]` on CUDA, else 1; any count is 1 off CUDA."""
    if value == "auto":
        value = AUTO_STREAMS.get(mode, 1) if device.type == "cuda" else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"runtime.streams: expected auto or an integer >= 1, got {value!r}")
    return value if device.type == "cuda" else 1


def uses_cuda_graphs(mode: str | None) -> bool:
    """Whether compiled code in `mode` replays CUDA graphs (on a CUDA device; on the CPU
    Inductor skips them, and marking steps costs nothing)."""
    return mode in CUDA_GRAPH_MODES


def batch_to(x: torch.Tensor, y: torch.Tensor, device: torch.device,
             channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch on `device` (asynchronously from pinned memory), images in the run's layout."""
    x = x.to(device, non_blocking=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(device, non_blocking=True)


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


# ----------------------------------------------------------------------------- the resolved block


@dataclass(frozen=True)
class Runtime:
    """A `runtime:` block resolved for one job on one device: every `auto` decided."""

    device: torch.device
    accel: bool  # False: the plain computation, every speed-up off
    amp: bool
    channels_last: bool
    compile: str | None  # a torch.compile mode, STEP_GRAPHS, or None for eager
    streams: int
    deterministic: bool
    workers: int
    pipeline: str  # auto | loader | device: data.gpu_pipeline decides per dataset
    eval_batch_size: int | None
    max_batch_per_process: int | None
    eval_every: int
    progress: bool

    @property
    def cuda_graphs(self) -> bool:
        """Whether compiled code replays CUDA graphs (torch.compile's CUDA-graph modes)."""
        return uses_cuda_graphs(self.compile)

    def autocast(self):
        return autocast(self.device, self.amp)

    def batch_to(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return batch_to(x, y, self.device, self.channels_last)

    def accelerate(self, job) -> None:
        """Apply this runtime's speed-ups to a built Searcher or Trainer (`job.kind` 'search' or
        'train'): itnas/accel, which the method files never import. None with accel off."""
        if self.accel:
            (accel.accelerate_search if job.kind == "search" else accel.accelerate_training)(job, self)

    def describe(self) -> str:
        extras = [name for name, on in (("bf16", self.amp), ("channels-last", self.channels_last)) if on]
        if self.compile:
            extras.append(f"compile {self.compile}")
        if self.streams > 1:
            extras.append(f"{self.streams} streams")
        if not self.accel:
            extras.append("plain (accel off)")
        return ", ".join([describe(self.device), *extras])


def resolve_runtime(block: dict, job: str, device: torch.device | None = None, distributed: bool = False,
                    one_stream: str | None = None) -> Runtime:
    """The `runtime:` block `block` of a `job` ('search' or 'train') resolved on `device` (default:
    the block's own `device`). `distributed` (DDP training) keeps compile's `auto` eager;
    `one_stream` says why the search must run on one stream (e.g. second order), if it must."""
    device = device if device is not None else resolve_device(block["device"])
    accel = block["accel"]
    if accel:
        amp = resolve_flag(block["amp"], device, "amp")
        channels_last = resolve_flag(block["channels_last"], device, "channels_last")
        mode = compile_mode(block["compile"], "key 'runtime.compile'", device, job, distributed)
        streams = resolve_streams(block["streams"], device, mode) if job == "search" else 1
    else:
        forced = [k for k in ("amp", "channels_last", "compile") if block[k] not in ("auto", False)]
        if forced:
            log.warning("runtime.accel: false runs the plain computation; ignoring runtime.%s", forced[0])
        amp = channels_last = False
        mode, streams = None, 1
    if streams > 1:
        # Second-order architecture steps call autograd.grad, which frees saved tensors that side
        # streams may still read; torch.compile's modes are untested with streams.
        why = one_stream or (f"compile {mode} is untested with streams" if mode in COMPILE_MODES else None)
        if why:
            if block["streams"] != "auto":
                log.warning("runtime.streams: %s; streams set to 1", why)
            streams = 1
    return Runtime(device=device, accel=accel, amp=amp, channels_last=channels_last, compile=mode,
                   streams=streams, deterministic=block["deterministic"], workers=block["workers"],
                   pipeline=block["pipeline"], eval_batch_size=block["eval_batch_size"],
                   max_batch_per_process=block["max_batch_per_process"], eval_every=block["eval_every"],
                   progress=block["progress"])
