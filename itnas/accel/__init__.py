"""What makes the method fast without changing what it computes: everything a reader of the
method may skip. The method files (itnas/search, itnas/train, itnas/ops.py) never import this
package; `Runtime.accelerate` (itnas/runtime.py) hands a Searcher or Trainer here once it is
built, and `runtime.accel: false` keeps it plain (nothing here is loaded then).

- auto.py      what `auto` means per job and device: the measured rules (`runtime.resolve_runtime`)
- kernels.py   faster CPU depthwise convs, counter-free BN, the channels-last-safe pooling
- supernet.py  the supernet's shared ReLU/pooling and one product per node; CUDA streams
- streams.py   independent branches of a step on several CUDA streams
- graphs.py    whole search steps recorded as CUDA graphs (`compile: step-graphs`)
- compile.py   torch.compile of the networks and its CUDA-graph step marks
- bench.py     step-time benchmarks (`itnas bench`)

Every speed-up is checked against the plain computation in tests/accel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import Any

import torch

from itnas.accel.compile import compile_module, cuda_graph_step_begin
from itnas.accel.graphs import StepGraph, graphs_backend, make_capturable
from itnas.accel.kernels import use_fast_kernels
from itnas.accel.streams import backward_kwargs
from itnas.accel.supernet import use_fast_cells

log = logging.getLogger(__name__)


def accelerate_search(searcher: Any, rt: Any) -> None:
    """Speed up a Searcher (search/loop.py) as its Runtime `rt` asks: faster kernels and cells,
    channels-last, the compiled network, and steps recorded as CUDA graphs or marked for
    torch.compile's CUDA graphs."""
    net = searcher.net
    use_fast_kernels(net)
    use_fast_cells(net, rt.streams)
    if rt.channels_last:
        net.to(memory_format=torch.channels_last)
    searcher.forward_net = compile_module(net, rt.compile)
    # The backward of a step whose forward branched onto streams keeps its saved tensors to the
    # step's end (streams.py, 'Memory').
    searcher.backward_options = backward_kwargs(rt.streams, rt.device)
    if rt.compile == "step-graphs":
        searcher.graphs = _record_steps(searcher, rt)
        searcher.run_step = _recorded(searcher)
    elif rt.cuda_graphs:
        searcher.run_step = _marked(searcher.steps)


def accelerate_training(trainer: Any, rt: Any) -> None:
    """Speed up a Trainer (train/loop.py): faster kernels, channels-last, the compiled network,
    and each step marked for torch.compile's CUDA graphs."""
    model = trainer.model
    use_fast_kernels(model)
    if rt.channels_last:
        model.to(memory_format=torch.channels_last)
    trainer.forward_net = compile_module(model, rt.compile)
    if rt.cuda_graphs:
        trainer.begin_step = cuda_graph_step_begin


def _marked(steps: dict[str, Callable[..., Any]]) -> Callable[..., Any]:
    """Run a step after starting a CUDA-graph generation (compile.cuda_graph_step_begin)."""

    def run(name: str, *inputs: torch.Tensor) -> Any:
        cuda_graph_step_begin()
        return steps[name](*inputs)

    return run


def graph_key(searcher: Any) -> Hashable:
    """The Python numbers a recorded search step freezes: the weights' learning rate and the
    temperature (both change once per epoch; a new key records the steps again)."""
    return searcher.w_opt.param_groups[0]["lr"], float(searcher.policy.tau)


def _record_steps(searcher: Any, rt: Any) -> dict[str, StepGraph]:
    backend = graphs_backend(rt.device)
    if backend == "eager":
        log.warning("runtime.compile: step-graphs records CUDA graphs; on %s the steps run eagerly",
                    rt.device.type)
    if searcher.cfg["arch_optim"]["order"] == "second":
        log.warning("runtime.compile: step-graphs records first-order architecture steps only; "
                    "the second-order ones run eagerly")
    # Adam's update inside a recording reads its step count on the device.
    make_capturable(searcher.architect.optimizer, backend != "eager")
    return {name: StepGraph(fn, f"{name} step", backend) for name, fn in searcher.steps.items()
            if name in ("arch", "weight", "eval")}


def _recorded(searcher: Any) -> Callable[..., Any]:
    """Run the recorded steps through their StepGraph; others (the second-order architecture
    step) plainly. A checkpoint restores Adam's `capturable` flag as its run had it; this run's
    recordings decide it again before each step."""
    graphs = searcher.graphs
    capturable = graphs["arch"].backend != "eager"

    def run(name: str, *inputs: torch.Tensor) -> Any:
        optimizer = searcher.architect.optimizer
        if any(g.get("capturable") != capturable for g in optimizer.param_groups):
            make_capturable(optimizer, capturable)
        if name in graphs:
            return graphs[name](graph_key(searcher), *inputs)
        return searcher.steps[name](*inputs)

    return run
