"""The search supernet (SPEC section 1): mixed ops on all 14 edges, cells stacked with
reductions at 1/3 and 2/3 of the depth. The network is plain PyTorch: its forward takes the
edge weights of each cell type from an `ArchPolicy` (policies.py), which holds the
architecture parameters beside it, as pt.darts keeps its controller.

A cell computes the ReLU and the poolings of each state once for all edges leaving it
(`SharedInput`); `ops.set_fast_paths(net, False)` restores the plain per-edge computation,
which tests/perf compares it with (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from itnas.formats import ALL_EDGES
from itnas.ops import (
    POOLING,
    PRIMITIVES,
    BatchNorm,
    Identity,
    is_channels_last,
    make_op,
    preprocess,
)
from itnas.streams import run_branches


class SharedInput:
    """A cell state and what all the edges leaving it compute alike: ReLU(x), with which every
    conv op and FactorizedReduce starts, and the two poolings (the same stride on every edge
    from one state). Each is computed once, on first use, instead of once per edge and op;
    the per-edge BN after a pooling stays per edge."""

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


class MixedOp(nn.Module):
    """sum_k Z_k * o_k(x) over the seven primitives; pooling gets a non-affine BN (DARTS)."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        ops = []
        for name in PRIMITIVES:
            op = make_op(name, channels, stride, affine=False)
            if name in POOLING:
                op = nn.Sequential(op, BatchNorm(channels, affine=False))
            ops.append(op)
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The plain computation: each op on x, weighted and summed in primitive order."""
        out = weights[0] * self.ops[0](x)
        for k in range(1, len(self.ops)):
            out = out + weights[k] * self.ops[k](x)
        return out

    def branches(self, inp: SharedInput) -> list[Callable[[], torch.Tensor]]:
        """The seven op outputs o_k(x) in primitive order, as callables. What they share with the
        other edges leaving `inp` (its ReLU and poolings) is computed here, before any of them
        runs, so they may run in any order, or side by side on CUDA streams (itnas/streams.py)."""
        out: list[Callable[[], torch.Tensor]] = []
        for name, op in zip(PRIMITIVES, self.ops):
            if name in POOLING:
                out.append(partial(op[1], inp.pooled(name, op[0])))
            elif isinstance(op, Identity):
                out.append(partial(_same, inp.x))
            else:  # the convs and FactorizedReduce, which all start with ReLU(x)
                out.append(partial(op.from_activated, inp.relu()))
        return out

    def terms(self, inp: SharedInput) -> list[torch.Tensor]:
        """The seven op outputs o_k(x) in primitive order, reusing the ReLU and poolings of `inp`."""
        return [branch() for branch in self.branches(inp)]

    def forward_shared(self, inp: SharedInput, weights: torch.Tensor) -> torch.Tensor:
        """`forward(inp.x, weights)` reusing the ReLU and poolings of `inp`, mixed by `mix`."""
        return mix(self.terms(inp), weights)


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def mix(terms: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """sum_t weights[t] * terms[t] as one matrix-vector product over the stacked terms.

    The per-term form (select, multiply, add per term; in backward a select_backward, two
    multiplies, a reduction and an add per term) dispatches about 20 ops per term, and a node
    sums 14-28 terms; this dispatches 3 forward and about 4 backward for the whole node, which
    is what a launch-bound GPU step pays for (docs/performance.md). The terms are stacked in
    their own memory layout (channels-last stays channels-last), and the sum of products is
    the same up to float rounding."""
    channels_last = is_channels_last(terms[0])
    if channels_last:  # [N, C, H, W] with NHWC strides -> the contiguous [N, H, W, C] view
        terms = [t.permute(0, 2, 3, 1) for t in terms]
    stacked = torch.stack(terms)
    out = (weights.to(stacked.dtype) @ stacked.flatten(1)).view(stacked.shape[1:])
    return out.permute(0, 3, 1, 2) if channels_last else out


class SearchCell(nn.Module):
    # False: every edge computes everything itself (the plain path the tests compare with).
    fast = True
    # CUDA streams the ops into a node run on side by side (`set_branch_streams`; 1 = none).
    streams = 1

    def __init__(self, c_prev_prev: int, c_prev: int, channels: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.pre0, self.pre1 = preprocess(c_prev_prev, c_prev, channels, reduction_prev, affine=False)
        # Edges from the two inputs stride in a reduction cell; inner edges never do.
        self.edges = nn.ModuleList(MixedOp(channels, 2 if reduction and i < 2 else 1) for i, _ in ALL_EDGES)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if not self.fast:
            return self._forward_plain(s0, s1, weights)
        states = [SharedInput(self.pre0(s0)), SharedInput(self.pre1(s1))]
        n = 0
        for j in range(2, 6):
            # Node j sums the seven weighted ops of its j incoming edges: one product over all 7j.
            branches = [b for i in range(j) for b in self.edges[n + i].branches(states[i])]
            terms = run_branches(branches, s1.device, self.streams)
            states.append(SharedInput(mix(terms, weights[n:n + j].reshape(-1))))
            n += j
        return torch.cat([s.x for s in states[2:]], dim=1)

    def _forward_plain(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        n = 0
        for j in range(2, 6):
            node = None
            for i in range(j):
                out = self.edges[n](states[i], weights[n])
                node = out if node is None else node + out
                n += 1
            states.append(node)
        return torch.cat(states[2:], dim=1)


class SearchNetwork(nn.Module):
    """Stem (3 -> stem_multiplier * C), `layers` cells, global pooling, linear classifier."""

    def __init__(self, num_classes: int, layers: int = 8, init_channels: int = 16,
                 stem_multiplier: int = 3, in_channels: int = 3):
        super().__init__()
        if layers < 3:
            raise ValueError(f"layers must be >= 3 (two reduction cells and a normal one), got {layers}")
        c = init_channels
        c_stem = stem_multiplier * c
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), BatchNorm(c_stem))
        c_pp, c_p, c_cur = c_stem, c_stem, c
        self.cells = nn.ModuleList()
        reduction_prev = False
        for layer in range(layers):
            reduction = layer in (layers // 3, 2 * layers // 3)
            if reduction:
                c_cur *= 2
            self.cells.append(SearchCell(c_pp, c_p, c_cur, reduction, reduction_prev))
            reduction_prev = reduction
            c_pp, c_p = c_p, 4 * c_cur
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, weights["reduce" if cell.reduction else "normal"])
        return self.classifier(self.pool(s1).flatten(1))


def set_branch_streams(net: nn.Module, streams: int) -> nn.Module:
    """Run the ops into each node of `net`'s search cells on `streams` CUDA streams side by side
    (itnas/streams.py; 1 = all on the calling stream, as on the CPU); returns `net`. It needs
    the fast path (`ops.set_fast_paths`), which computes a state's shared ReLU and poolings
    once before its edges' ops."""
    if streams < 1:
        raise ValueError(f"streams must be >= 1, got {streams}")
    for m in net.modules():
        if isinstance(m, SearchCell):
            m.streams = int(streams)
    return net


def supernet_stats(variant: str, dataset: str, layers: int | None = None,
                   init_channels: int | None = None) -> dict[str, int]:
    """Weight and architecture-parameter counts of the search network (`itnas stats --supernet`)."""
    from itnas.data import get_spec
    from itnas.errors import UserError
    from itnas.policies import VARIANT_FLAGS, arch_param_count, build_policy

    if variant not in VARIANT_FLAGS:
        raise UserError(f"--variant {variant}: expected one of {', '.join(VARIANT_FLAGS)}")
    spec = get_spec(dataset)
    flags = VARIANT_FLAGS[variant]
    net = SearchNetwork(spec.num_classes, layers or 8, init_channels or 16, in_channels=spec.channels)
    policy = build_policy(flags["gumbel"], flags["transition"])
    return {"weights": sum(p.numel() for p in net.parameters()), "arch_params": arch_param_count(policy)}
