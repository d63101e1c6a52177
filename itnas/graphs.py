"""Whole steps as CUDA graphs (`compile: step-graphs`): a step's every kernel, from the forward
through the backward, the gradient clipping and the optimiser update, recorded once with
`torch.cuda.graph` and then replayed with one launch per step.

Why: the search's steps are bound by the host (docs/performance.md): on an H200 the eager
supernet weight step spent 328 ms issuing about 12,000 small kernels, and torch.compile's
CUDA-graph modes either compiled for minutes (Inductor) or kept thousands of host-side copies
per step (the `cudagraphs` backend). A recorded step pays neither: nothing is compiled, and a
replay is one launch.

The protocol (`StepGraph`):
- The first `warmup` calls for a shape run eagerly (on a side stream, as torch asks before a
  capture): they are real steps, and they create the optimiser's state and pick cuDNN's
  algorithms.
- The next call records the step on static copies of its inputs, then replays it once: a
  capture only records, so this call's step is that first replay. Later calls copy their
  inputs into the static ones and replay.
- Whatever the step reads as a Python number is frozen into the recording: here the learning
  rate and the Gumbel temperature, which change once per epoch. The caller passes them as the
  `key`; a new key records the step again (no warm-up: the shapes are known).
- Calls with another input shape (the validation's shorter last batch) run eagerly; the
  recording stays.
- The step returns tensors, which the next replay overwrites: read them before the next call.
- Random numbers come from the default generator, which CUDA graphs advance per replay.

On the CPU there is no CUDA graph. `TapeGraph` stands in for tests: it records the aten ops a
step dispatches, with their tensors and frozen arguments, and replays that tape. A tape replay
sees what a graph replay sees: a learning rate that was not re-recorded stays stale, an input
not copied into the static buffers stays old, and a host read (`.item()`) inside the step is
refused as CUDA capture would refuse it. A step recorded on a tape also runs while it is
recorded, so the recording call's step is not replayed again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

log = logging.getLogger(__name__)

# aten ops a CUDA graph cannot record: reads of a tensor's value on the host (`.item()`, data-
# dependent shapes), and tensors made from host data (`torch.tensor(...)`: on CUDA a copy from
# host memory that a capture refuses; make such constants once, outside the step).
_HOST_READS = frozenset({"aten::_local_scalar_dense", "aten::is_nonzero", "aten::equal", "aten::nonzero",
                         "aten::_assert_async", "aten::lift_fresh"})


class HostReadInStep(RuntimeError):
    """A step exchanged data with the host (e.g. `.item()`), which a CUDA graph cannot record."""


class _Recorder(TorchDispatchMode):
    def __init__(self, tape: list) -> None:
        super().__init__()
        self.tape = tape

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func._schema.name in _HOST_READS:
            raise HostReadInStep(f"{func._schema.name} inside a recorded step: a CUDA graph cannot record an "
                                 "exchange with the host; return tensors and read them after the step, and make "
                                 "constant tensors before it")
        out = func(*args, **kwargs)
        self.tape.append((func, args, kwargs, out))
        return out


# In-place ops that change only a tensor's shape or strides. The recorded tensor already has
# its final metadata (the same Python object went on to be squeezed, say, while recording), so a
# replay skips them and writes the producing op's result into that final shape.
_METADATA_OPS = frozenset({"aten::squeeze_", "aten::unsqueeze_", "aten::transpose_", "aten::t_",
                           "aten::as_strided_", "aten::swapdims_", "aten::swapaxes_", "aten::resize_",
                           "aten::resize_as_"})


def _write_back(recorded: Any, fresh: Any) -> None:
    """Copy a replayed op's results into the tensors its recording produced (which later ops
    and the caller hold), unless they share memory already (in-place ops, views)."""
    if isinstance(recorded, torch.Tensor):
        if recorded.untyped_storage().data_ptr() != fresh.untyped_storage().data_ptr():
            recorded.copy_(fresh if fresh.shape == recorded.shape else fresh.reshape(recorded.shape))
    elif isinstance(recorded, (list, tuple)):
        for r, f in zip(recorded, fresh):
            if f is not None:
                _write_back(r, f)


class TapeGraph:
    """A CPU stand-in for `torch.cuda.CUDAGraph` (see the module docstring): `capture()` is the
    context in which the step runs and is recorded; `replay()` re-runs the recorded aten ops on
    the recorded tensors. For tests: a tape holds every intermediate tensor of the step."""

    executes_on_capture = True
    warm_up_on_side_stream = False

    def __init__(self) -> None:
        self.tape: list = []

    def capture(self):
        return _Recorder(self.tape)

    @torch.no_grad()
    def replay(self) -> None:
        for func, args, kwargs, out in self.tape:
            if func._schema.name not in _METADATA_OPS:
                _write_back(out, func(*args, **kwargs))


class _CudaGraph:
    """`torch.cuda.CUDAGraph` behind the interface `StepGraph` uses."""

    executes_on_capture = False
    warm_up_on_side_stream = True  # as torch asks before a capture

    def __init__(self) -> None:
        self.graph = torch.cuda.CUDAGraph()

    def capture(self):
        # thread_local: a DataLoader's pin-memory thread may query CUDA events meanwhile, which
        # the default ('global') mode would turn into a failed capture. The backward, run by
        # autograd's device thread on the capturing stream, is recorded either way.
        return torch.cuda.graph(self.graph, capture_error_mode="thread_local")

    def replay(self) -> None:
        self.graph.replay()


# What each StepGraph backend records with (tests swap in other stand-ins).
GRAPH_CLASSES: dict[str, type] = {"cuda": _CudaGraph, "tape": TapeGraph}


def _signature(inputs: Sequence[torch.Tensor]) -> tuple:
    return tuple((t.shape, t.dtype, t.stride(), t.device) for t in inputs)


class StepGraph:
    """`fn(*inputs) -> tensors`, run as a recorded graph (the protocol in the module docstring).

    `backend` is 'cuda' (torch.cuda.graph), 'tape' (`TapeGraph`, the CPU stand-in) or 'eager'
    (every call runs `fn`: the same code path without a graph, for comparisons).
    """

    def __init__(self, fn: Callable[..., Any], name: str, backend: str = "cuda", warmup: int = 2):
        if backend != "eager" and backend not in GRAPH_CLASSES:
            raise ValueError(f"StepGraph backend {backend!r}: expected eager or one of {', '.join(GRAPH_CLASSES)}")
        self.fn, self.name, self.backend, self.warmup = fn, name, backend, warmup
        self.graph: _CudaGraph | TapeGraph | None = None
        self.key: Hashable = None
        self.shape: tuple | None = None  # the recorded input signature
        self.static_inputs: list[torch.Tensor] = []
        self.outputs: Any = None
        self.warm: dict[tuple, int] = {}  # eager calls so far, per input signature
        self.captures = self.replays = 0
        self._side: torch.cuda.Stream | None = None

    def __call__(self, key: Hashable, *inputs: torch.Tensor) -> Any:
        if self.backend == "eager":
            return self.fn(*inputs)
        shape = _signature(inputs)
        if self.graph is not None and shape == self.shape:
            if key != self.key:
                return self._record(key, inputs)
            for static, new in zip(self.static_inputs, inputs):
                static.copy_(new)
            self.graph.replay()
            self.replays += 1
            return self.outputs
        if self.graph is not None or self.warm.get(shape, 0) < self.warmup:
            # Another shape than the recorded one, or still warming up: an ordinary eager step.
            self.warm[shape] = self.warm.get(shape, 0) + 1
            return self._eager(inputs)
        return self._record(key, inputs)

    def _eager(self, inputs: Sequence[torch.Tensor]) -> Any:
        if self.graph is not None or not GRAPH_CLASSES[self.backend].warm_up_on_side_stream:
            return self.fn(*inputs)
        # A warm-up before a capture runs on a side stream (one per StepGraph, so that the
        # allocator's blocks cached for it are reused).
        if self._side is None:
            self._side = torch.cuda.Stream()
        self._side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self._side):
            out = self.fn(*inputs)
        torch.cuda.current_stream().wait_stream(self._side)
        return out

    def _record(self, key: Hashable, inputs: Sequence[torch.Tensor]) -> Any:
        # Drop the old recording first: its memory pool is freed before the new one fills.
        self.graph = self.outputs = None
        self.static_inputs = [t.detach().clone() for t in inputs]  # clone keeps the memory layout
        graph = GRAPH_CLASSES[self.backend]()
        try:
            with graph.capture():
                outputs = self.fn(*self.static_inputs)
        except RuntimeError as exc:
            if graph.executes_on_capture:  # the step ran part way: nothing to fall back to
                raise
            # A capture runs nothing, so this call's step has not happened: run it eagerly, and
            # every later one too (`captures` stays as it was, which the GPU tests check).
            log.warning("compile: step-graphs could not record the %s as a CUDA graph; it runs eagerly "
                        "from now on (%s: %s)", self.name, type(exc).__name__, (str(exc) or "-").splitlines()[0])
            self.backend, self.static_inputs = "eager", []
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            return self.fn(*inputs)
        self.graph, self.outputs, self.key, self.shape = graph, outputs, key, _signature(inputs)
        self.captures += 1
        log.debug("step graph %s recorded (%d so far) for key %r", self.name, self.captures, key)
        if not graph.executes_on_capture:
            graph.replay()  # this call's step (`replays` counts the calls after the recording one)
        return outputs


def make_capturable(optimizer: torch.optim.Optimizer, enabled: bool) -> None:
    """Set the `capturable` flag of an optimiser that has one (Adam keeps its step count on the
    device then, so a recorded update reads the current count), and move its step counts to
    their parameters' devices. Also after `load_state_dict`, which restores the saved flag."""
    if not all("capturable" in g for g in optimizer.param_groups):
        return
    for group in optimizer.param_groups:
        group["capturable"] = enabled
        if enabled:
            for p in group["params"]:
                state = optimizer.state.get(p, {})
                if isinstance(state.get("step"), torch.Tensor):
                    state["step"] = state["step"].to(device=p.device, dtype=torch.float32)


# The backend `graphs_backend` gives a device without CUDA graphs: 'eager' for users (the steps
# run as they are); tests set 'tape' to check the recording protocol on the CPU.
NON_CUDA_BACKEND = "eager"


def graphs_backend(device: torch.device) -> str:
    """How `compile: step-graphs` runs on `device`: 'cuda' on a CUDA device, else `NON_CUDA_BACKEND`."""
    return "cuda" if device.type == "cuda" else NON_CUDA_BACKEND
