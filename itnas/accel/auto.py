"""What `auto` means in a `runtime:` block, per job and device type: the settings measured fastest
(docs/performance.md), and the resolution of the speed-up keys of a block whose `accel` is on.
`runtime.resolve_runtime` comes here only then; with `accel: false` nothing here is loaded."""

from __future__ import annotations

import logging

import torch

from itnas.errors import UserError
from itnas.runtime import COMPILE_MODES, STEP_GRAPHS, check_compile

log = logging.getLogger(__name__)


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
    check_compile(value, what, job)
    if value is None or value is False:
        return None
    if value is True:
        return "default"
    if value == "auto":
        return None if device is None or distributed else AUTO_COMPILE[job].get(device.type)
    return str(value)


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


def resolve_speedups(block: dict, job: str, device: torch.device, distributed: bool = False,
                     one_stream: str | None = None) -> tuple[bool, bool, str | None, int]:
    """(amp, channels_last, compile mode, streams) of the `runtime:` block `block` of a `job`
    ('search' or 'train') on `device`, every `auto` decided; see `runtime.resolve_runtime`."""
    amp = resolve_flag(block["amp"], device, "amp")
    channels_last = resolve_flag(block["channels_last"], device, "channels_last")
    mode = compile_mode(block["compile"], "key 'runtime.compile'", device, job, distributed)
    streams = resolve_streams(block["streams"], device, mode) if job == "search" else 1
    if streams > 1:
        # Second-order architecture steps call autograd.grad, which frees saved tensors that side
        # streams may still read; torch.compile's modes are untested with streams.
        why = one_stream or (f"compile {mode} is untested with streams" if mode in COMPILE_MODES else None)
        if why:
            if block["streams"] != "auto":
                log.warning("runtime.streams: %s; streams set to 1", why)
            streams = 1
    return amp, channels_last, mode, streams
