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

On the CPU there is no CUDA graph; the tests check this protocol with a stand-in that records
the aten ops a step dispatches and replays that tape (tests/accel/tape.py, registered in
`GRAPH_CLASSES`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch

log = logging.getLogger(__name__)

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


# What each StepGraph backend records with (the tests add a CPU stand-in).
GRAPH_CLASSES: dict[str, type] = {"cuda": _CudaGraph}


def _signature(inputs: Sequence[torch.Tensor]) -> tuple:
    return tuple((t.shape, t.dtype, t.stride(), t.device) for t in inputs)


class StepGraph:
    """`fn(*inputs) -> tensors`, run as a recorded graph (the protocol in the module docstring).

    `backend` is 'cuda' (torch.cuda.graph), another key of `GRAPH_CLASSES`, or 'eager' (every
    call runs `fn`: the same code path without a graph, for comparisons).
    """

    def __init__(self, fn: Callable[..., Any], name: str, backend: str = "cuda", warmup: int = 2):
        if backend != "eager" and backend not in GRAPH_CLASSES:
            raise ValueError(f"StepGraph backend {backend!r}: expected eager or one of {', '.join(GRAPH_CLASSES)}")
        self.fn, self.name, self.backend, self.warmup = fn, name, backend, warmup
        self.graph: Any = None
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
# run as they are); the tests set their CPU stand-in to check the recording protocol.
NON_CUDA_BACKEND = "eager"


def graphs_backend(device: torch.device) -> str:
    """How `compile: step-graphs` runs on `device`: 'cuda' on a CUDA device, else `NON_CUDA_BACKEND`."""
    return "cuda" if device.type == "cuda" else NON_CUDA_BACKEND
