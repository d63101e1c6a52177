"""How a run runs, resolved once per job into a `Runtime` that the search, the training and the
benchmarks share; and the one place that touches devices, seeding, determinism and memory
figures.

Every command's config has the same `runtime:` block (itnas/schemas/runtime.json). Its keys say
how a run runs, not what it computes (beyond float rounding, the order of augmentation draws
between the two data pipelines, and gradient accumulation), so a run may be resumed with other
values. `auto` means what was measured fastest per device type (itnas/accel/auto.py,
docs/performance.md). `accel: false` is the one switch that turns every speed-up off: eager
float32 NCHW on one stream with the plain modules of itnas/ops.py, the computation exactly as
the method files write it; itnas/accel holds everything it turns off, and this module loads it
only for a block whose `accel` is on.
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

from itnas.errors import UserError

log = logging.getLogger(__name__)


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


# The `compile` values a config may name (the schema lists the same; itnas/accel/compile.py
# compiles with them, itnas/accel/auto.py says what `auto` means). torch.compile's modes (true =
# "default"), and 'cudagraphs': torch's backend of that name, which replays the captured graphs
# (dynamo + AOTAutograd, eager kernels) as CUDA graphs without Inductor's code generation, so it
# removes launch overhead at a fraction of the compile time (on the CPU it runs the captured graphs
# eagerly). The ones that replay CUDA graphs are 'cudagraphs' and those for which
# torch._inductor.list_mode_options sets triton.cudagraphs.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", "cudagraphs")
# Not a torch.compile mode: the search's whole steps recorded as CUDA graphs with
# torch.cuda.graph, nothing compiled (accel/graphs.py). Search only; eager where CUDA is absent.
STEP_GRAPHS = "step-graphs"
JOB_MODES = {"search": (*COMPILE_MODES, STEP_GRAPHS), "train": COMPILE_MODES}
CUDA_GRAPH_MODES = frozenset({"reduce-overhead", "max-autotune", "cudagraphs"})


def check_compile(value: bool | str | None, what: str = "key 'compile'", job: str = "train") -> None:
    """Refuse a `compile` value that a `job` ('search' or 'train') cannot run, whether or not
    acceleration is on; `what` names the setting (the schema refuses other values first)."""
    if value is None or isinstance(value, bool) or value == "auto" or value in JOB_MODES[job]:
        return
    if value == STEP_GRAPHS:
        raise UserError(f"{what}: step-graphs records the search's steps only; for training use "
                        "reduce-overhead or cudagraphs (CUDA graphs of the compiled network)")
    raise UserError(f"{what}: expected false, true, auto or one of {', '.join(JOB_MODES[job])}, got {value!r}")


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
            # Imported here, not at the top: acceleration is an optional heavy dependency of the
            # method (five modules, CUDA graphs, streams, kernels), loaded only when switched on.
            from itnas import accel

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
        # Imported here, not at the top: what `auto` means is part of itnas/accel, an optional
        # heavy dependency of the method that only a block with acceleration switched on loads.
        from itnas.accel.auto import resolve_speedups

        amp, channels_last, mode, streams = resolve_speedups(block, job, device, distributed, one_stream)
    else:
        forced = [k for k in ("amp", "channels_last", "compile") if block[k] not in ("auto", False)]
        if forced:
            log.warning("runtime.accel: false runs the plain computation; ignoring runtime.%s", forced[0])
        amp = channels_last = False
        mode, streams = None, 1
    return Runtime(device=device, accel=accel, amp=amp, channels_last=channels_last, compile=mode,
                   streams=streams, deterministic=block["deterministic"], workers=block["workers"],
                   pipeline=block["pipeline"], eval_batch_size=block["eval_batch_size"],
                   max_batch_per_process=block["max_batch_per_process"], eval_every=block["eval_every"],
                   progress=block["progress"])
