"""Architecture policies: how each cell type's 14 edge-weight vectors Z(i, j) are produced.

One small interface (`ArchPolicy.edge_weights`) hands the supernet a [14, K] tensor per cell
type, rows in `formats.ALL_EDGES` order. Three policies implement it (SPEC section 2):

- `SoftmaxPolicy`     DARTS: softmax(alpha), one alpha per edge.
- `GumbelPolicy`      annealed Gumbel-softmax: softmax((alpha + G) / tau), G = -log(-log U),
                      one draw per cell type per forward pass, shared by every cell of that type.
- `TransitionPolicy`  ITNAS: outer edges from an inner policy (softmax or Gumbel), inner edges
                      from Eq. 11, Z(i,j) = sum_m beta(m,i,j) Z(m,i) @ P(m,i,j), in topological order.

Interpretations where the paper is silent (also in the README of the method, docs/method.md):
- alpha are logits (Eq. 5's log alpha is read as alpha, as DARTS/GDAS implementations do).
- P and beta are parameterised by raw logits: P = row-softmax, beta = softmax over m.
  All logits start at 1e-3 * N(0, 1), as DARTS initialises alpha.
- Gumbel noise is drawn in training mode only; in eval mode (validation, derivation) the
  policy returns softmax(alpha / tau) without noise.
- The weight step and the architecture step each draw their own noise (one draw per forward).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from itnas.formats import (
    ALL_EDGES,
    ARCH_STATE_FORMAT,
    INNER_EDGES,
    OUTER_EDGES,
    TRIPLES,
    edge_key,
    triple_key,
)
from itnas.ops import PRIMITIVES

CELL_TYPES = ("normal", "reduce")
K = len(PRIMITIVES)
EDGE_INDEX = {e: n for n, e in enumerate(ALL_EDGES)}
# For inner edge (i, j): positions in TRIPLES of its predecessors (m, i, j), m = 0..i-1.
_TRIPLE_INDEX = {t: n for n, t in enumerate(TRIPLES)}


def temperature(epoch: int, epochs: int, start: float = 5.0, end: float = 0.5) -> float:
    """Linear per-epoch annealing: start at epoch 0, end at the last epoch (SPEC section 2)."""
    if epochs <= 1:
        return float(start)
    return float(start - (start - end) * epoch / (epochs - 1))


def gumbel_noise(shape: torch.Size, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """G = -log(-log U) with U kept away from 0 and 1, so no log 0 and no infinities.

    The margin is the dtype's machine epsilon: a fixed 1e-10 would round 1 - 1e-10 to 1 in float32.
    """
    eps = torch.finfo(dtype).eps
    u = torch.rand(shape, device=device, dtype=dtype).clamp_(eps, 1.0 - eps)
    return -torch.log(-torch.log(u))


def _logits(rows: int, *shape: int) -> nn.Parameter:
    return nn.Parameter(1e-3 * torch.randn(rows, *shape))


class ArchPolicy(nn.Module):
    """Holds the architecture parameters of both cell types and turns them into edge weights."""

    variant = "base"
    tau: float = 1.0

    def edge_weights(self, cell: str) -> torch.Tensor:  # [14, K]
        raise NotImplementedError

    def all_weights(self) -> dict[str, torch.Tensor]:
        return {cell: self.edge_weights(cell) for cell in CELL_TYPES}

    def set_temperature(self, tau: float) -> None:
        self.tau = float(tau)

    def arch_state(self) -> dict:
        raise NotImplementedError

    def load_arch_state(self, state: dict) -> None:
        raise NotImplementedError


class IndependentPolicy(ArchPolicy):
    """Independent per-edge logits alpha over `edges`, mapped through softmax or Gumbel."""

    def __init__(self, edges: list[tuple[int, int]] = ALL_EDGES, gumbel: bool = False):
        super().__init__()
        self.edges = list(edges)
        self.gumbel = gumbel
        self.alpha = nn.ParameterDict({cell: _logits(len(self.edges), K) for cell in CELL_TYPES})

    def probabilities(self, cell: str) -> torch.Tensor:
        alpha = self.alpha[cell]
        if not self.gumbel:
            return torch.softmax(alpha, dim=-1)
        if self.training:
            return torch.softmax((alpha + gumbel_noise(alpha.shape, alpha.device, alpha.dtype)) / self.tau, dim=-1)
        return torch.softmax(alpha / self.tau, dim=-1)

    def edge_weights(self, cell: str) -> torch.Tensor:
        return self.probabilities(cell)

    def alpha_state(self, cell: str) -> dict[str, list[float]]:
        rows = self.alpha[cell].detach().cpu().double().tolist()
        return {edge_key(*e): row for e, row in zip(self.edges, rows)}

    def load_alpha(self, cell: str, alpha: dict[str, list[float]]) -> None:
        values = torch.tensor([alpha[edge_key(*e)] for e in self.edges], dtype=self.alpha[cell].dtype)
        with torch.no_grad():
            self.alpha[cell].copy_(values)

    def arch_state(self) -> dict:
        return {"format": ARCH_STATE_FORMAT, "primitives": list(PRIMITIVES), "variant": self.variant,
                **{cell: {"alpha": self.alpha_state(cell)} for cell in CELL_TYPES}}

    def load_arch_state(self, state: dict) -> None:
        for cell in CELL_TYPES:
            self.load_alpha(cell, state[cell]["alpha"])


class SoftmaxPolicy(IndependentPolicy):
    variant = "darts"

    def __init__(self) -> None:
        super().__init__(ALL_EDGES, gumbel=False)


class GumbelPolicy(IndependentPolicy):
    variant = "gumbel"

    def __init__(self) -> None:
        super().__init__(ALL_EDGES, gumbel=True)


def _transition_levels() -> list[tuple[list[tuple[int, int]], list[int], list[int]]]:
    """The inner edges in dependency levels: each level needs Z only of outer edges and earlier
    levels: (2,3) (2,4) (2,5); (3,4) (3,5); (4,5). All edges (i, j) of a level share i, so each
    has i triples (m, i, j). Per level: its edges, and for its triples, edge by edge and m by m,
    their TRIPLES indices and their source rows (m, i) in ALL_EDGES."""
    ready, pending, levels = set(OUTER_EDGES), list(INNER_EDGES), []
    while pending:
        edges = [(i, j) for i, j in pending if all((m, i) in ready for m in range(i))]
        assert len({i for i, _ in edges}) == 1, "a level's edges leave one node"
        triples = [(m, i, j) for i, j in edges for m in range(i)]
        levels.append((edges, [_TRIPLE_INDEX[t] for t in triples], [EDGE_INDEX[(m, i)] for m, i, _ in triples]))
        ready.update(edges)
        pending = [e for e in pending if e not in edges]
    return levels


_LEVELS = _transition_levels()
_LEVEL_INDEX: dict[torch.device, list[torch.Tensor]] = {}


def _level_index(device: torch.device) -> list[torch.Tensor]:
    if device not in _LEVEL_INDEX:
        _LEVEL_INDEX[device] = [torch.tensor(t, device=device) for _, t, _ in _LEVELS]
    return _LEVEL_INDEX[device]


def transition_weights(outer: torch.Tensor, trans: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Eq. 11 in topological order, batched: one batch of vector-matrix products per dependency
    level (3 instead of 16 separate products: fewer, larger kernels where launches dominate).

    outer: [8, K] weights of OUTER_EDGES; trans: [16, K, K] row-stochastic P per TRIPLES entry;
    beta: [16] attention, summing to 1 over m for each inner edge. Returns [14, K] in ALL_EDGES order.
    Equal to `transition_weights_plain` up to float rounding (tests/perf).
    """
    rows: list[torch.Tensor | None] = [None] * len(ALL_EDGES)
    for n, e in enumerate(OUTER_EDGES):
        rows[EDGE_INDEX[e]] = outer[n]
    for (edges, _, sources), index in zip(_LEVELS, _level_index(trans.device)):
        z = torch.stack([rows[s] for s in sources])  # [T, K]: Z(m, i) of each triple
        terms = torch.bmm(z.unsqueeze(1), trans.index_select(0, index)).squeeze(1)
        terms = terms * beta.index_select(0, index).unsqueeze(1)
        acc = terms.view(len(edges), -1, terms.shape[1]).sum(1)  # over m, for each edge
        for d, e in enumerate(edges):
            rows[EDGE_INDEX[e]] = acc[d]
    return torch.stack(rows)


def transition_weights_plain(outer: torch.Tensor, trans: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Eq. 11 edge by edge, term by term: the reference `transition_weights` is tested against."""
    z: dict[tuple[int, int], torch.Tensor] = {e: outer[n] for n, e in enumerate(OUTER_EDGES)}
    for i, j in INNER_EDGES:  # sorted by j, so every Z(m, i) with i < j is ready
        acc = None
        for m in range(i):
            t = _TRIPLE_INDEX[(m, i, j)]
            term = beta[t] * (z[(m, i)] @ trans[t])
            acc = term if acc is None else acc + term
        z[(i, j)] = acc
    return torch.stack([z[e] for e in ALL_EDGES])


# Beta logits laid out as a [6, 4] table, one row per inner edge (i, j), column m; the unused
# cells (m >= i) hold -inf, which softmax turns into exact zeros.
_BETA_SLOTS = [n * 4 + m for n, (i, _) in enumerate(INNER_EDGES) for m in range(i)]
_BETA_INDEX: dict[torch.device, torch.Tensor] = {}


def _inner_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over m of the 16 beta logits, separately for each inner edge (i, j), as one
    softmax over the rows of the padded [6, 4] table."""
    if logits.device not in _BETA_INDEX:
        _BETA_INDEX[logits.device] = torch.tensor(_BETA_SLOTS, device=logits.device)
    slots = _BETA_INDEX[logits.device]
    table = logits.new_full((len(INNER_EDGES) * 4,), float("-inf")).index_copy(0, slots, logits)
    return torch.softmax(table.view(len(INNER_EDGES), 4), dim=1).view(-1).index_select(0, slots)


def _inner_softmax_plain(logits: torch.Tensor) -> torch.Tensor:
    """Segment by segment: the reference `_inner_softmax` is tested against."""
    out = torch.empty_like(logits)
    start = 0
    for i, _ in INNER_EDGES:  # TRIPLES lists the i predecessors of each inner edge together
        out[start:start + i] = torch.softmax(logits[start:start + i], dim=0)
        start += i
    return out


class TransitionPolicy(ArchPolicy):
    """Outer edges: softmax or annealed Gumbel over alpha; inner edges: Eq. 11."""

    def __init__(self, gumbel: bool = True):
        super().__init__()
        self.variant = "gumbel_transition" if gumbel else "transition"
        self.outer = IndependentPolicy(OUTER_EDGES, gumbel=gumbel)
        self.trans_logits = nn.ParameterDict({c: _logits(len(TRIPLES), K, K) for c in CELL_TYPES})
        self.beta_logits = nn.ParameterDict({c: _logits(len(TRIPLES)) for c in CELL_TYPES})

    def set_temperature(self, tau: float) -> None:
        super().set_temperature(tau)
        self.outer.set_temperature(tau)

    def transition(self, cell: str) -> torch.Tensor:
        return torch.softmax(self.trans_logits[cell], dim=-1)

    def beta(self, cell: str) -> torch.Tensor:
        return _inner_softmax(self.beta_logits[cell])

    def edge_weights(self, cell: str) -> torch.Tensor:
        return transition_weights(self.outer.edge_weights(cell), self.transition(cell), self.beta(cell))

    def arch_state(self) -> dict:
        state = {"format": ARCH_STATE_FORMAT, "primitives": list(PRIMITIVES), "variant": self.variant}
        for cell in CELL_TYPES:
            trans = self.transition(cell).detach().cpu().double()
            beta = self.beta(cell).detach().cpu().double()
            state[cell] = {
                "alpha": self.outer.alpha_state(cell),
                "transition": {triple_key(*t): trans[n].tolist() for n, t in enumerate(TRIPLES)},
                "beta": {triple_key(*t): float(beta[n]) for n, t in enumerate(TRIPLES)},
            }
        return state

    def load_arch_state(self, state: dict) -> None:
        """Set logits so that the normalised P and beta equal those in `state` (log of probs)."""
        for cell in CELL_TYPES:
            self.outer.load_alpha(cell, state[cell]["alpha"])
            trans = torch.tensor([state[cell]["transition"][triple_key(*t)] for t in TRIPLES])
            beta = torch.tensor([state[cell]["beta"][triple_key(*t)] for t in TRIPLES])
            with torch.no_grad():
                self.trans_logits[cell].copy_(trans.clamp_min(1e-30).log())
                self.beta_logits[cell].copy_(beta.clamp_min(1e-30).log())


VARIANT_FLAGS = {
    "darts": {"gumbel": False, "transition": False, "tiep": False},
    "gumbel": {"gumbel": True, "transition": False, "tiep": False},
    "gumbel_transition": {"gumbel": True, "transition": True, "tiep": False},
    "itnas": {"gumbel": True, "transition": True, "tiep": True},
}


def variant_name(gumbel: bool, transition: bool, tiep: bool) -> str:
    for name, flags in VARIANT_FLAGS.items():
        if flags == {"gumbel": gumbel, "transition": transition, "tiep": tiep}:
            return name
    # Combinations outside the paper's ablation still get a stable, path-safe name.
    return "_".join(n for n, on in (("softmax", not gumbel), ("gumbel", gumbel),
                                    ("transition", transition), ("tiep", tiep)) if on)


def build_policy(gumbel: bool, transition: bool) -> ArchPolicy:
    if transition:
        return TransitionPolicy(gumbel=gumbel)
    return GumbelPolicy() if gumbel else SoftmaxPolicy()


def arch_param_count(policy: ArchPolicy) -> int:
    return sum(p.numel() for p in policy.parameters())


def entropy(weights: torch.Tensor) -> float:
    """Mean entropy (nats) of the rows of an edge-weight tensor; log K is uniform, 0 one-hot."""
    w = weights.detach().double().clamp_min(1e-30)
    return float(-(w * w.log()).sum(-1).mean())


MAX_ENTROPY = math.log(K)
