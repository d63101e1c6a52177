"""Genotype derivation from an arch state: the DARTS top-2 rule and TIEP (Algorithm 1).

Both work on a validated `itnas-arch-state/1` object (formats.validate_arch_state), in
float64 on the CPU, so a file written by hand derives exactly as one written by a search.

- Outer-edge weights are softmax(alpha / tau): no noise, at the derivation temperature `tau`
  (SPEC section 4; `derive.tau`, whose default docs/method.md explains). Under TIEP the inner
  edges come from one-hot predecessors, so `tau` decides whether outer or inner edges win.
- DARTS rule: for each node keep the two incoming edges with the largest max_k Z_k, and on each
  the argmax op. For transition variants the inner Z first come from Eq. 11 with soft
  predecessors (Algorithm 1, lines 3-6: "topology initialisation").
- TIEP: node 2 keeps (0,2) and (1,2), made one-hot. For j = 3, 4, 5 in order, each inner Z(i,j)
  is recomputed from the kept (one-hot) predecessor edges of node i only, with beta renormalised
  over the kept ones (Eq. 15); the two strongest edges into j are kept and made one-hot.
- Ties (equal strengths or equal op weights) go to the lower index, so results are stable.
- DARTS's `none` op, in a state searched with it (`arch.none_op`), is never chosen: an edge's
  strength and its op are the max and argmax over the other ops, as DARTS derives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from itnas.config import defaults
from itnas.errors import UserError
from itnas.search.policies import eq11, transition_weights
from itnas.space import (
    ALL_EDGES,
    CONCAT,
    NONE,
    OUTER_EDGES,
    PRIMITIVES,
    TRIPLES,
    Edge,
    Genotype,
    edge_key,
    triple_key,
)
from itnas.variants import DERIVE_METHODS, flags_of

METHODS = DERIVE_METHODS


def _outer(cell: dict, edges: list[Edge], tau: float) -> dict[Edge, torch.Tensor]:
    return {e: torch.softmax(torch.tensor(cell["alpha"][edge_key(*e)], dtype=torch.float64) / tau, 0)
            for e in edges}


def _matrix(cell: dict, m: int, i: int, j: int) -> torch.Tensor:
    return torch.tensor(cell["transition"][triple_key(m, i, j)], dtype=torch.float64)


def _candidates(z: torch.Tensor, primitives: Sequence[str]) -> torch.Tensor:
    """z with `none` out of the running (it can never be the max)."""
    if NONE not in primitives:
        return z
    return z.masked_fill(torch.tensor([p == NONE for p in primitives]), float("-inf"))


def _one_hot(z: torch.Tensor, primitives: Sequence[str]) -> torch.Tensor:
    out = torch.zeros_like(z)
    out[_argmax(z, primitives)] = 1.0
    return out


def _argmax(z: torch.Tensor, primitives: Sequence[str]) -> int:
    # torch.argmax's tie-breaking is unspecified on some backends; take the first maximum.
    z = _candidates(z, primitives)
    return int((z == z.max()).nonzero()[0, 0])


def _strength(z: torch.Tensor, primitives: Sequence[str]) -> float:
    return float(_candidates(z, primitives).max())


def soft_weights(cell: dict, tau: float = 1.0) -> dict[Edge, torch.Tensor]:
    """Z of all 14 edges: softmax(alpha / tau), and for transition cells Eq. 11 with soft
    predecessors."""
    if "transition" not in cell:
        return _outer(cell, ALL_EDGES, tau)
    outer = _outer(cell, OUTER_EDGES, tau)
    trans = torch.stack([_matrix(cell, *t) for t in TRIPLES])
    beta = torch.tensor([cell["beta"][triple_key(*t)] for t in TRIPLES], dtype=torch.float64)
    z = transition_weights(torch.stack([outer[e] for e in OUTER_EDGES]), trans, beta)
    return {e: z[n] for n, e in enumerate(ALL_EDGES)}


def _top2(z: dict[Edge, torch.Tensor], j: int, primitives: Sequence[str]) -> list[Edge]:
    incoming = [(i, j) for i in range(j)]
    # Sort by strength descending; Python's sort is stable, so ties keep the lower i first.
    ranked = sorted(incoming, key=lambda e: -_strength(z[e], primitives))
    return sorted(ranked[:2])


def _pairs(z: dict[Edge, torch.Tensor], kept: dict[int, list[Edge]],
           primitives: Sequence[str]) -> tuple[tuple[str, int], ...]:
    return tuple((primitives[_argmax(z[e], primitives)], e[0]) for j in range(2, 6) for e in kept[j])


def darts_cell(cell: dict, tau: float = 1.0, primitives: Sequence[str] = PRIMITIVES) -> tuple[tuple[str, int], ...]:
    z = soft_weights(cell, tau)
    return _pairs(z, {j: _top2(z, j, primitives) for j in range(2, 6)}, primitives)


def tiep_cell(cell: dict, tau: float = 1.0, primitives: Sequence[str] = PRIMITIVES) -> tuple[tuple[str, int], ...]:
    if "transition" not in cell:
        raise UserError("TIEP needs transition matrices and attention in the arch state "
                        "(search with transition: true), or use --method darts")
    z = _outer(cell, OUTER_EDGES, tau)
    kept: dict[int, list[Edge]] = {2: [(0, 2), (1, 2)]}
    for e in kept[2]:
        z[e] = _one_hot(z[e], primitives)
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
        kept[j] = _top2(z, j, primitives)
        for e in kept[j]:
            z[e] = _one_hot(z[e], primitives)  # its argmax, hence the op chosen, is unchanged
    return _pairs(z, kept, primitives)


def derive(state: dict, method: str, tau: float = 1.0) -> Genotype:
    """Derive a genotype from a validated arch state with `method` in METHODS at derivation
    temperature `tau`."""
    if method not in METHODS:
        raise UserError(f"--method {method}: expected one of {', '.join(METHODS)}")
    if not (tau > 0 and math.isfinite(tau)):
        raise UserError(f"--tau {tau}: the derivation temperature must be a finite number > 0")
    rule = tiep_cell if method == "tiep" else darts_cell
    primitives = state["primitives"]
    return Genotype(normal=rule(state["normal"], tau, primitives), normal_concat=CONCAT,
                    reduce=rule(state["reduce"], tau, primitives), reduce_concat=CONCAT)


def derive_tau(cfg: dict) -> float:
    """The derivation temperature of a search config: `derive.tau`, where `auto` is the search's
    final temperature for Gumbel variants (the scale their architecture was last trained at) and
    1 for softmax variants (the scale they were trained at throughout)."""
    tau = cfg["derive"]["tau"]
    if tau == "auto":
        return float(cfg["tau"]["end"]) if cfg["arch"]["gumbel"] else 1.0
    return float(tau)


def state_derive_tau(state: dict, source: str) -> tuple[float, str]:
    """The temperature to derive a validated arch state at when none is given, and where it comes
    from: the one its search recorded (`derive_tau`), else `derive.tau: auto` for the variant the
    state records, with the search config's defaults (tau.end 0.5 for Gumbel variants, 1 for
    softmax ones). A state with neither is refused: only the user can say which it was."""
    if "derive_tau" in state:
        return state["derive_tau"], "recorded by its search"
    variant = state.get("variant")
    flags = flags_of(variant) if isinstance(variant, str) else None
    if flags is None:
        what = f"an unknown variant {variant!r}" if variant is not None else "no variant"
        raise UserError(f"{source}: records no derivation temperature ('derive_tau') and {what}, so the "
                        "temperature to derive at is unknown; give it with --tau (docs/method.md, derive.tau)")
    cfg = defaults("search")
    cfg["arch"].update(flags)
    return derive_tau(cfg), f"derive.tau: auto for its variant '{variant}', with the default tau.end"


def differences(a: Genotype, b: Genotype) -> dict[str, int]:
    """How far two genotypes are apart: `edges`, the kept input edges one has and the other has
    not (per node, counted once per pair); `ops`, the edges both keep with different ops."""
    edges = ops = 0
    for reduction in (False, True):
        pa, pb = a.cell(reduction)[0], b.cell(reduction)[0]
        for node in range(len(pa) // 2):
            ea = {i: op for op, i in pa[2 * node:2 * node + 2]}
            eb = {i: op for op, i in pb[2 * node:2 * node + 2]}
            edges += len(set(ea) - set(eb))
            ops += sum(1 for i in set(ea) & set(eb) if ea[i] != eb[i])
    return {"edges": edges, "ops": ops}


def stability(state: dict, method: str, chosen: Genotype, taus: list[float]) -> dict:
    """How the genotype changes over derivation temperatures: for each tau in `taus`, its
    differences from `chosen` (`differences`) and its hash."""
    out = {}
    for tau in taus:
        genotype = derive(state, method, tau)
        out[f"{tau:g}"] = {**differences(genotype, chosen), "genotype_hash": genotype.hash()}
    return out
