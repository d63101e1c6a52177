"""torch.compile for the networks (`runtime.compile`): compiling a module, and the step marks the
CUDA-graph modes need. The modes a config may name are listed in
itnas/runtime.py (`COMPILE_MODES`, `STEP_GRAPHS`); which one `auto` means, in auto.py."""

from __future__ import annotations

import torch

from itnas.runtime import STEP_GRAPHS

BACKEND_MODES = frozenset({"cudagraphs"})  # modes that name a torch.compile backend, not an Inductor mode


def compile_module(module: torch.nn.Module, mode: str | None) -> torch.nn.Module:
    """`module` itself for eager, else torch.compile'd in `mode` (parameters stay shared).

    Shapes are static (`dynamic=False`): a run sees two or three batch sizes (the training
    batch, the evaluation batch and a shorter last one), each its own graph, and CUDA graphs are
    recorded per size anyway. With torch's automatic dynamic shapes the evaluation's sizes made
    the batch dimension symbolic for the training graph too, and its recompilation when
    drop-path switches on (epoch 2) then failed in fake-tensor tracing of `torch.rand` with a
    symbolic size and a `generator` argument (networks.drop_masks; torch 2.14, CPU aot_eager).
    """
    if mode is None or mode == STEP_GRAPHS:  # step-graphs records the whole step instead (graphs.py)
        return module
    import torch._inductor.config as inductor_config  # runtime.deterministic_algorithms left it unset

    inductor_config.deterministic = torch.are_deterministic_algorithms_enabled()
    if mode in BACKEND_MODES:
        return torch.compile(module, backend=mode, dynamic=False)
    return torch.compile(module, mode=mode, dynamic=False)



def cuda_graph_step_begin() -> None:
    """Start a new CUDA-graph generation; callers compiled in a `CUDA_GRAPH_MODES` mode call it
    at the start of every step that runs the compiled network, evaluation batches included.

    A replay writes its outputs (gradients included) into the same pool memory as the previous
    generation's, so nothing from an earlier step may be read afterwards: losses and logits are
    reduced to floats or fresh tensors within their step, and no backward may accumulate into
    an earlier step's gradients (set them to None first). Once a process has called this,
    CUDA-graph trees start generations only here; without it they start one at every call with
    no backward pending, which would invalidate a first micro-batch's gradients before the
    second is accumulated into them.
    """
    torch.compiler.cudagraph_mark_step_begin()
