"""The search supernet (docs/method.md): a mixed op on each of a cell's 14 edges, cells stacked
with reductions at 1/3 and 2/3 of the depth.

The network is plain PyTorch: its forward takes the edge weights of each cell type from the
policy (policies.py), which holds the architecture parameters beside it, as pt.darts keeps its
controller. Node j of a cell is I(j) = sum_i sum_k Z_k(i, j) o_k(I(i)) (Eq. 2 of the paper).
"""

from __future__ import annotations

import torch
from torch import nn

from itnas.ops import make_op, preprocess
from itnas.space import ALL_EDGES, POOLING, PRIMITIVES, cell_plan


class MixedOp(nn.Module):
    """sum_k Z_k o_k(x) over the candidate ops (the seven primitives, or DARTS's eight with
    `none`); each pooling is followed by a non-affine BN (DARTS)."""

    def __init__(self, channels: int, stride: int, primitives: tuple[str, ...] = PRIMITIVES):
        super().__init__()
        self.primitives = tuple(primitives)
        ops = []
        for name in self.primitives:
            op = make_op(name, channels, stride, affine=False)
            if name in POOLING:
                op = nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
            ops.append(op)
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out = weights[0] * self.ops[0](x)
        for k in range(1, len(self.ops)):
            out = out + weights[k] * self.ops[k](x)
        return out


class SearchCell(nn.Module):
    def __init__(self, c_prev_prev: int, c_prev: int, channels: int, reduction: bool, reduction_prev: bool,
                 primitives: tuple[str, ...] = PRIMITIVES):
        super().__init__()
        self.reduction = reduction
        self.pre0, self.pre1 = preprocess(c_prev_prev, c_prev, channels, reduction_prev, affine=False)
        # Edges from the two inputs stride in a reduction cell; inner edges never do.
        self.edges = nn.ModuleList(MixedOp(channels, 2 if reduction and i < 2 else 1, primitives)
                                   for i, _ in ALL_EDGES)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """`weights`: [14, K], one row per edge in ALL_EDGES order (node by node)."""
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
                 stem_multiplier: int = 3, in_channels: int = 3, primitives: tuple[str, ...] = PRIMITIVES):
        super().__init__()
        if layers < 3:
            raise ValueError(f"layers must be >= 3 (two reduction cells and a normal one), got {layers}")
        c = init_channels
        c_stem = stem_multiplier * c
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        c_pp, c_p = c_stem, c_stem
        self.cells = nn.ModuleList()
        for c_cur, reduction, reduction_prev in cell_plan(layers, c):
            self.cells.append(SearchCell(c_pp, c_p, c_cur, reduction, reduction_prev, primitives))
            c_pp, c_p = c_p, 4 * c_cur
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        """`weights` maps 'normal' and 'reduce' to their cell type's [14, K] edge weights."""
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, weights["reduce" if cell.reduction else "normal"])
        return self.classifier(self.pool(s1).flatten(1))
