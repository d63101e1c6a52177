"""Genotype derivation from an arch state: the DARTS top-2 rule and TIEP (Algorithm 1).

Both work on a validated `itnas-arch-state/1` object (formats.validate_arch_state), in
float64 on the CPU, so a file written by hand derives exactly as one written by a search.

- Outer-edge weights are softmax(alpha): no noise, tau = 1 (SPEC section 4).
- DARTS rule: for each node keep the two incoming edges with the largest max_k Z_k, and on each
  the argmax op. For transition variants the inner Z first come from Eq. 11 with soft
  predecessors (Algorithm 1, lines 3-6: "topology initialisation").
- TIEP: node 2 keeps (0,2) and (1,2), made one-hot. For j = 3, 4, 5 in order, each inner Z(i,j)
  is recomputed from the kept (one-hot) predecessor edges of node i only, with beta renormalised
  over the kept ones (Eq. 15); the two strongest edges into j are kept and made one-hot.
- Ties (equal strengths or equal op weights) go to the lower index, so results are stable.
"""

from __future__ import annotations

import torch

from itnas.errors import UserError
from itnas.search.policies import eq11, transition_weights
from itnas.space import (
    ALL_EDGES,
    CONCAT,
    OUTER_EDGES,
    PRIMITIVES,
    TRIPLES,
    Edge,
    Genotype,
    edge_key,
    triple_key,
)
from itnas.variants import DERIVE_METHODS

METHODS = DERIVE_METHODS


def _outer(cell: dict, edges: list[Edge]) -> dict[Edge, torch.Tensor]:
    return {e: torch.softmax(torch.tensor(cell["alpha"][edge_key(*e)], dtype=torch.float64), 0)
            for e in edges}


def _matrix(cell: dict, m: int, i: int, j: int) -> torch.Tensor:
    return torch.tensor(cell["transition"][triple_key(m, i, j)], dtype=torch.float64)


def _one_hot(z: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(z)
    out[_argmax(z)] = 1.0
    return out


def _argmax(z: torch.Tensor) -> int:
    # torch.argmax's tie-breaking is unspecified on some backends; take the first maximum.
    return int((z == z.max()).nonzero()[0, 0])


def soft_weights(cell: dict) -> dict[Edge, torch.Tensor]:
    """Z of all 14 edges: softmax(alpha), and for transition cells Eq. 11 with soft predecessors."""
    if "transition" not in cell:
        return _outer(cell, ALL_EDGES)
    outer = _outer(cell, OUTER_EDGES)
    trans = torch.stack([_matrix(cell, *t) for t in TRIPLES])
    beta = torch.tensor([cell["beta"][triple_key(*t)] for t in TRIPLES], dtype=torch.float64)
    z = transition_weights(torch.stack([outer[e] for e in OUTER_EDGES]), trans, beta)
    return {e: z[n] for n, e in enumerate(ALL_EDGES)}


def _top2(z: dict[Edge, torch.Tensor], j: int) -> list[Edge]:
    incoming = [(i, j) for i in range(j)]
    # Sort by strength descending; Python's sort is stable, so ties keep the lower i first.
    ranked = sorted(incoming, key=lambda e: -float(z[e].max()))
    return sorted(ranked[:2])


def _pairs(z: dict[Edge, torch.Tensor], kept: dict[int, list[Edge]]) -> tuple[tuple[str, int], ...]:
    return tuple((PRIMITIVES[_argmax(z[e])], e[0]) for j in range(2, 6) for e in kept[j])


def darts_cell(cell: dict) -> tuple[tuple[str, int], ...]:
    z = soft_weights(cell)
    return _pairs(z, {j: _top2(z, j) for j in range(2, 6)})


def tiep_cell(cell: dict) -> tuple[tuple[str, int], ...]:
    if "transition" not in cell:
        raise UserError("TIEP needs transition matrices and attention in the arch state "
                        "(search with transition: true), or use --method darts")
    z = _outer(cell, OUTER_EDGES)
    kept: dict[int, list[Edge]] = {2: [(0, 2), (1, 2)]}
    for e in kept[2]:
        z[e] = _one_hot(z[e])
    for j in range(3, 6):
        for i in range(2, j):
            preds = [m for m, _ in kept[i]]  # (m, i) edges kept into node i: already one-hot
            beta = [cell["beta"][triple_key(m, i, j)] for m in preds]
            total = sum(beta)
            if total <= 0:
                raise UserError(f"TIEP: attention of the kept predecessors of edge {edge_key(i, j)} "
                                "sums to 0; cannot renormalise (Eq. 15)")
            z[(i, j)] = eq11([z[(m, i)] for m in preds], [b / total for b in beta],
                             [_matrix(cell, m, i, j) for m in preds])
        kept[j] = _top2(z, j)
        for e in kept[j]:
            z[e] = _one_hot(z[e])  # its argmax, hence the op chosen, is unchanged
    return _pairs(z, kept)


def derive(state: dict, method: str) -> Genotype:
    """Derive a genotype from a validated arch state with `method` in METHODS."""
    if method not in METHODS:
        raise UserError(f"--method {method}: expected one of {', '.join(METHODS)}")
    rule = tiep_cell if method == "tiep" else darts_cell
    return Genotype(normal=rule(state["normal"]), normal_concat=CONCAT,
                    reduce=rule(state["reduce"]), reduce_concat=CONCAT)
