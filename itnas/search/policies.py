"""Architecture policies: how each cell type's 14 edge-weight vectors Z(i, j) are produced.

One small interface (`ArchPolicy.edge_weights`) hands the supernet a [14, K] tensor per cell
type, rows in `space.ALL_EDGES` order. Three policies implement it (docs/method.md):

- `SoftmaxPolicy`     DARTS: softmax(alpha), one alpha per edge.
- `GumbelPolicy`      annealed Gumbel-softmax: softmax((alpha + G) / tau), G = -log(-log U),
                      one draw per cell type per forward pass, shared by every cell of that type.
- `TransitionPolicy`  ITNAS: outer edges from softmax or Gumbel, inner edges from Eq. 11,
                      Z(i,j) = sum_m beta(m,i,j) Z(m,i) @ P(m,i,j), in topological order.

Eq. 11 lives here once (`eq11`); derivation (derive.py) uses it too. Interpretations where
the paper is silent are listed in docs/method.md; the ones this file decides:
- alpha are logits (Eq. 5's log alpha is read as alpha, as DARTS/GDAS implementations do).
- P and beta are raw logits: P = row-softmax, beta = softmax over m. All logits start at
  1e-3 * N(0, 1), as DARTS initialises alpha.
- Gumbel noise is drawn in training mode only; in eval mode (validation) the policy returns
  softmax(alpha / tau) without noise.
- One draw per cell type per forward pass; inside `one_draw()` every forward pass reuses the
  first draw (the second-order architecture step evaluates the loss four times for one
  gradient, and its finite difference must not subtract two different noises).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from itnas.space import (
    ALL_EDGES,
    CELL_TYPES,
    INNER_EDGES,
    OUTER_EDGES,
    TRIPLE_INDEX,
    TRIPLES,
    K,
    edge_key,
    triple_key,
)


def temperature(epoch: int, epochs: int, start: float = 5.0, end: float = 0.5) -> float:
    """Linear per-epoch annealing: start at epoch 0, end at the last epoch (docs/method.md)."""
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


def eq11(z_in: Sequence[torch.Tensor], beta: Sequence[torch.Tensor | float],
         p: Sequence[torch.Tensor]) -> torch.Tensor:
    """Eq. 11 for one inner edge (i, j): sum over the predecessors m given of
    beta(m, i, j) * Z(m, i) @ P(m, i, j), with Z(m, i) a row vector and P row-stochastic."""
    out = None
    for z, b, matrix in zip(z_in, beta, p):
        term = b * (z @ matrix)
        out = term if out is None else out + term
    return out


def transition_weights(outer: torch.Tensor, trans: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Every edge's Z of one cell type: outer: [8, K] weights of OUTER_EDGES; trans: [16, K, K]
    row-stochastic P per TRIPLES entry; beta: [16] attention, summing to 1 over m for each inner
    edge. Inner edges come from Eq. 11 in topological order (sorted by j, every Z(m, i) with
    i < j is ready). Returns [14, K] in ALL_EDGES order."""
    z: dict[tuple[int, int], torch.Tensor] = {e: outer[n] for n, e in enumerate(OUTER_EDGES)}
    for i, j in INNER_EDGES:
        ts = [TRIPLE_INDEX[(m, i, j)] for m in range(i)]
        z[(i, j)] = eq11([z[(m, i)] for m in range(i)], [beta[t] for t in ts], [trans[t] for t in ts])
    return torch.stack([z[e] for e in ALL_EDGES])


def attention(logits: torch.Tensor) -> torch.Tensor:
    """beta from its 16 logits: a softmax over m for each inner edge (i, j) (TRIPLES lists the
    i predecessors of each inner edge together)."""
    parts, start = [], 0
    for i, _ in INNER_EDGES:
        parts.append(torch.softmax(logits[start:start + i], dim=0))
        start += i
    return torch.cat(parts)


def _logits(rows: int, *shape: int) -> nn.Parameter:
    return nn.Parameter(1e-3 * torch.randn(rows, *shape))


class ArchPolicy(nn.Module):
    """Holds the architecture parameters of both cell types and turns them into edge weights."""

    tau: float = 1.0

    def edge_weights(self, cell: str) -> torch.Tensor:  # [14, K]
        raise NotImplementedError

    def all_weights(self) -> dict[str, torch.Tensor]:
        return {cell: self.edge_weights(cell) for cell in CELL_TYPES}

    def set_temperature(self, tau: float) -> None:
        self.tau = float(tau)

    @contextlib.contextmanager
    def one_draw(self) -> Iterator[None]:
        """Within the block, each cell type's Gumbel noise is drawn once and reused by every
        forward pass (no effect on policies without noise)."""
        samplers = [m for m in self.modules() if isinstance(m, IndependentPolicy)]
        for m in samplers:
            m.held_noise = {}
        try:
            yield
        finally:
            for m in samplers:
                m.held_noise = None

    def arch_state(self) -> dict:
        """The parameters in the `itnas-arch-state/1` layout (formats.py), without the header."""
        raise NotImplementedError

    def load_arch_state(self, state: dict) -> None:
        raise NotImplementedError


class IndependentPolicy(ArchPolicy):
    """Independent per-edge logits alpha over `edges`, mapped through softmax or Gumbel."""

    def __init__(self, edges: list[tuple[int, int]] = ALL_EDGES, gumbel: bool = False, k: int = K):
        super().__init__()
        self.edges = list(edges)
        self.gumbel = gumbel
        self.alpha = nn.ParameterDict({cell: _logits(len(self.edges), k) for cell in CELL_TYPES})
        self.held_noise: dict[str, torch.Tensor] | None = None  # see ArchPolicy.one_draw

    def edge_weights(self, cell: str) -> torch.Tensor:
        alpha = self.alpha[cell]
        if not self.gumbel:
            return torch.softmax(alpha, dim=-1)
        if self.training:
            return torch.softmax((alpha + self._noise(cell, alpha)) / self.tau, dim=-1)
        return torch.softmax(alpha / self.tau, dim=-1)

    def _noise(self, cell: str, alpha: torch.Tensor) -> torch.Tensor:
        if self.held_noise is None:
            return gumbel_noise(alpha.shape, alpha.device, alpha.dtype)
        if cell not in self.held_noise:
            self.held_noise[cell] = gumbel_noise(alpha.shape, alpha.device, alpha.dtype)
        return self.held_noise[cell]

    def alpha_state(self, cell: str) -> dict[str, list[float]]:
        rows = self.alpha[cell].detach().cpu().double().tolist()
        return {edge_key(*e): row for e, row in zip(self.edges, rows)}

    def load_alpha(self, cell: str, alpha: dict[str, list[float]]) -> None:
        values = torch.tensor([alpha[edge_key(*e)] for e in self.edges], dtype=self.alpha[cell].dtype)
        with torch.no_grad():
            self.alpha[cell].copy_(values)

    def arch_state(self) -> dict:
        return {cell: {"alpha": self.alpha_state(cell)} for cell in CELL_TYPES}

    def load_arch_state(self, state: dict) -> None:
        for cell in CELL_TYPES:
            self.load_alpha(cell, state[cell]["alpha"])


class SoftmaxPolicy(IndependentPolicy):
    def __init__(self, k: int = K) -> None:
        super().__init__(ALL_EDGES, gumbel=False, k=k)


class GumbelPolicy(IndependentPolicy):
    def __init__(self, k: int = K) -> None:
        super().__init__(ALL_EDGES, gumbel=True, k=k)


class TransitionPolicy(ArchPolicy):
    """Outer edges: softmax or annealed Gumbel over alpha; inner edges: Eq. 11."""

    def __init__(self, gumbel: bool = True, k: int = K):
        super().__init__()
        self.outer = IndependentPolicy(OUTER_EDGES, gumbel=gumbel, k=k)
        self.trans_logits = nn.ParameterDict({c: _logits(len(TRIPLES), k, k) for c in CELL_TYPES})
        self.beta_logits = nn.ParameterDict({c: _logits(len(TRIPLES)) for c in CELL_TYPES})

    def set_temperature(self, tau: float) -> None:
        super().set_temperature(tau)
        self.outer.set_temperature(tau)

    def transition(self, cell: str) -> torch.Tensor:
        return torch.softmax(self.trans_logits[cell], dim=-1)

    def beta(self, cell: str) -> torch.Tensor:
        return attention(self.beta_logits[cell])

    def edge_weights(self, cell: str) -> torch.Tensor:
        return transition_weights(self.outer.edge_weights(cell), self.transition(cell), self.beta(cell))

    def arch_state(self) -> dict:
        state = {}
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


def build_policy(gumbel: bool, transition: bool, k: int = K) -> ArchPolicy:
    """The policy of a flag set over `k` candidate ops (8 with DARTS's `none`)."""
    if transition:
        return TransitionPolicy(gumbel=gumbel, k=k)
    return GumbelPolicy(k) if gumbel else SoftmaxPolicy(k)


def arch_param_count(policy: ArchPolicy) -> int:
    return sum(p.numel() for p in policy.parameters())


def entropy(weights: torch.Tensor) -> float:
    """Mean entropy (nats) of the rows of an edge-weight tensor; log K is uniform, 0 one-hot."""
    w = weights.detach().double().clamp_min(1e-30)
    return float(-(w * w.log()).sum(-1).mean())

