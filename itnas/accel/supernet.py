"""The supernet's fast forward, swapped into every search cell by `use_fast_cells`: what
`SearchCell.forward` computes, with less work and fewer kernels.

- A state's ReLU, with which every conv op and FactorizedReduce starts, and its two poolings
  (the same stride on every edge from one state) are computed once for all the edges leaving
  it (`SharedInput`), instead of once per edge and op; the per-edge BN after a pooling stays.
- Each node's weighted sum of its 7j op outputs is one matrix-vector product (`mix`).
- The ops into a node may run side by side on CUDA streams (streams.py).

Logits, BN statistics and gradients equal the plain forward's up to float rounding (tests/accel).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from itnas.accel.kernels import _swap, is_channels_last
from itnas.accel.streams import run_branches
from itnas.ops import DilConv, FactorizedReduce, Identity, SepConv
from itnas.search.supernet import MixedOp, SearchCell
from itnas.space import POOLING


class SharedInput:
    """A cell state and what all the edges leaving it compute alike: ReLU(x) and the two poolings,
    each computed once, on first use."""

    __slots__ = ("x", "_relu", "_pooled")

    def __init__(self, x: torch.Tensor):
        self.x = x
        self._relu: torch.Tensor | None = None
        self._pooled: dict[str, torch.Tensor] = {}

    def relu(self) -> torch.Tensor:
        if self._relu is None:
            self._relu = torch.relu(self.x)
        return self._relu

    def pooled(self, name: str, pool: nn.Module) -> torch.Tensor:
        if name not in self._pooled:
            self._pooled[name] = pool(self.x)
        return self._pooled[name]


def after_relu(op: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The op as a function of r = ReLU(x), for the ops that start with that ReLU; else None."""
    if isinstance(op, DilConv):  # ReLU, depthwise, pointwise, BN
        return lambda r: op[3](op[2](op[1](r)))
    if isinstance(op, SepConv):  # two DilConvs: only the first one's ReLU is shared
        first = after_relu(op[0])
        return lambda r: op[1](first(r))
    if isinstance(op, FactorizedReduce):
        return op.halves
    return None


def branches(edge: MixedOp, inp: SharedInput) -> list[Callable[[], torch.Tensor]]:
    """The op outputs o_k(x) of an edge, in the order of its candidates, as callables. What they share
    with the other edges leaving `inp` (its ReLU and poolings) is computed here, before any of
    them runs, so they may run in any order, or side by side on CUDA streams."""
    out: list[Callable[[], torch.Tensor]] = []
    for name, op in zip(edge.primitives, edge.ops):
        if name in POOLING:  # Sequential(pool, BN)
            out.append(partial(op[1], inp.pooled(name, op[0])))
        elif isinstance(op, Identity):
            out.append(partial(_same, inp.x))
        elif (activated := after_relu(op)) is not None:
            out.append(partial(activated, inp.relu()))
        else:  # an op that shares nothing with the others (the `none` op, say)
            out.append(partial(op, inp.x))
    return out


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def mix(terms: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """sum_t weights[t] * terms[t] as one matrix-vector product over the stacked terms.

    The per-term form (select, multiply, add per term; in backward a select_backward, two
    multiplies, a reduction and an add per term) dispatches about 20 ops per term, and a node
    sums 14-28 terms; this dispatches 3 forward and about 4 backward for the whole node, which
    is what a launch-bound GPU step pays for (docs/performance.md). The terms are stacked in
    their own memory layout (channels-last stays channels-last)."""
    channels_last = is_channels_last(terms[0])
    if channels_last:  # [N, C, H, W] with NHWC strides -> the contiguous [N, H, W, C] view
        terms = [t.permute(0, 2, 3, 1) for t in terms]
    stacked = torch.stack(terms)
    out = (weights.to(stacked.dtype) @ stacked.flatten(1)).view(stacked.shape[1:])
    return out.permute(0, 3, 1, 2) if channels_last else out


class FastSearchCell(SearchCell):
    """`SearchCell` with the shared inputs, one product per node and optional CUDA streams."""

    streams = 1  # CUDA streams the ops into a node run on side by side (1 = none)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [SharedInput(self.pre0(s0)), SharedInput(self.pre1(s1))]
        n = 0
        for j in range(2, 6):
            # Node j sums the seven weighted ops of its j incoming edges: one product over all 7j.
            work = [b for i in range(j) for b in branches(self.edges[n + i], states[i])]
            terms = run_branches(work, s1.device, self.streams)
            states.append(SharedInput(mix(terms, weights[n:n + j].reshape(-1))))
            n += j
        return torch.cat([s.x for s in states[2:]], dim=1)


def use_fast_cells(net: nn.Module, streams: int = 1) -> nn.Module:
    """Give every search cell of `net` the fast forward, its node ops on `streams` CUDA streams
    (1 = all on the calling stream, as on the CPU); returns `net`."""
    if streams < 1:
        raise ValueError(f"streams must be >= 1, got {streams}")
    for m in net.modules():
        if isinstance(m, SearchCell):
            if type(m) is SearchCell:
                _swap(m, FastSearchCell)
            m.streams = int(streams)
    return net
