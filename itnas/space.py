"""The DARTS search space without torch: primitives, the edge layout of a cell, and genotypes.

A cell has input nodes 0 and 1 (the outputs of the two previous cells), intermediate nodes
2..5, and outputs the channel concatenation of 2..5. Its 14 edges (i, j), i < j, j in 2..5,
are listed node by node (`ALL_EDGES`). Outer edges leave the inputs (i in {0, 1}); inner
edges join intermediate nodes; for ITNAS each inner edge (i, j) has one transition per
predecessor edge (m, i): the 16 `TRIPLES` of a cell type (docs/method.md).

A genotype lists, for the normal and the reduction cell, eight (op, input) pairs: two per
intermediate node 2..5, node by node. Its JSON form is DARTS's (README.md, "Outputs").
Reading a genotype never loads torch.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itnas.errors import UserError
from itnas.files import read_json, write_json

PRIMITIVES: tuple[str, ...] = (
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
    "avg_pool_3x3",
    "max_pool_3x3",
    "skip_connect",
)
K = len(PRIMITIVES)
POOLING = frozenset({"avg_pool_3x3", "max_pool_3x3"})
# DARTS's eighth candidate, which outputs zeros. Not in the ITNAS space; a search may add it
# (`arch.none_op`, to run DARTS in its own setting), and derivation never chooses it.
NONE = "none"


def search_primitives(none_op: bool = False) -> tuple[str, ...]:
    """The candidate ops of a search: the seven, after DARTS's `none` when `none_op`."""
    return (NONE, *PRIMITIVES) if none_op else PRIMITIVES
CELL_TYPES = ("normal", "reduce")

NODES = 4  # intermediate nodes 2..5
CONCAT = (2, 3, 4, 5)
Edge = tuple[int, int]
OUTER_EDGES: list[Edge] = [(i, j) for j in range(2, 6) for i in (0, 1)]
INNER_EDGES: list[Edge] = [(i, j) for j in range(3, 6) for i in range(2, j)]
ALL_EDGES: list[Edge] = [(i, j) for j in range(2, 6) for i in range(j)]
TRIPLES: list[tuple[int, int, int]] = [(m, i, j) for (i, j) in INNER_EDGES for m in range(i)]
EDGE_INDEX: dict[Edge, int] = {e: n for n, e in enumerate(ALL_EDGES)}
TRIPLE_INDEX: dict[tuple[int, int, int], int] = {t: n for n, t in enumerate(TRIPLES)}


def cell_plan(layers: int, channels: int, reduction_prev: bool = False) -> list[tuple[int, bool, bool]]:
    """Per cell of a network of `layers` cells: (its channel count, whether it is a reduction
    cell, whether its first input comes at twice its resolution: a reduction before it, or for
    the first cell `reduction_prev`). Reduction cells sit at 1/3 and 2/3 of the depth and double
    the channels (DARTS; supernet and evaluation networks alike)."""
    plan = []
    for layer in range(layers):
        reduction = layer in (layers // 3, 2 * layers // 3)
        channels *= 2 if reduction else 1
        plan.append((channels, reduction, reduction_prev))
        reduction_prev = reduction
    return plan


def edge_key(i: int, j: int) -> str:
    return f"{i}->{j}"


def triple_key(m: int, i: int, j: int) -> str:
    return f"{m}->{i}->{j}"


# ----------------------------------------------------------------------------- genotypes

Pair = tuple[str, int]


@dataclass(frozen=True)
class Genotype:
    normal: tuple[Pair, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Pair, ...]
    reduce_concat: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "normal": [[op, int(i)] for op, i in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, int(i)] for op, i in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    def hash(self) -> str:
        """A short content hash: equal cells give equal hashes, whatever their name or file."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def cell(self, reduction: bool) -> tuple[tuple[Pair, ...], tuple[int, ...]]:
        return (self.reduce, self.reduce_concat) if reduction else (self.normal, self.normal_concat)


def make_genotype(normal: list[Pair] | tuple[Pair, ...], reduce: list[Pair] | tuple[Pair, ...]) -> Genotype:
    return Genotype(tuple(normal), CONCAT, tuple(reduce), CONCAT)


def _check_cell(obj: Any, key: str, source: str) -> tuple[Pair, ...]:
    pairs = obj.get(key)
    if not isinstance(pairs, list) or len(pairs) != 2 * NODES:
        got = len(pairs) if isinstance(pairs, list) else type(pairs).__name__
        raise UserError(f"{source}: '{key}' must list {2 * NODES} [op, input] pairs, got {got}")
    out = []
    for k, pair in enumerate(pairs):
        node = 2 + k // 2
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2 or not isinstance(pair[0], str)
                or isinstance(pair[1], bool) or not isinstance(pair[1], int)):
            raise UserError(f"{source}: '{key}[{k}]' must be an [op, input] pair, got {pair!r}")
        op, inp = pair
        if op not in PRIMITIVES:
            raise UserError(f"{source}: '{key}[{k}]': unknown op '{op}' "
                            f"(expected one of: {', '.join(PRIMITIVES)})")
        if not 0 <= inp < node:
            raise UserError(f"{source}: '{key}[{k}]': input {inp} out of range for node {node} "
                            f"(expected 0..{node - 1})")
        out.append((op, inp))
    return tuple(out)


def _check_concat(obj: Any, key: str, source: str) -> tuple[int, ...]:
    concat = obj.get(key, list(CONCAT))
    if not isinstance(concat, list) or tuple(concat) != CONCAT:
        raise UserError(f"{source}: '{key}' must be {list(CONCAT)}, got {concat!r}")
    return CONCAT


def sample_genotype(seed: int) -> Genotype:
    """A cell drawn uniformly from the search space, the random baseline (docs/method.md): each
    intermediate node j takes 2 distinct inputs, a uniform pair of 0..j-1, and each of its two
    edges one of the 7 primitives, uniformly; the normal and the reduction cell independently.
    A pure function of `seed` (Python's Mersenne Twister, stable across versions)."""
    rng = random.Random(seed)

    def cell() -> list[Pair]:
        pairs = []
        for j in range(2, 2 + NODES):
            for i in sorted(rng.sample(range(j), 2)):
                pairs.append((rng.choice(PRIMITIVES), i))
        return pairs

    return make_genotype(cell(), cell())


def genotype_from_json(obj: Any, source: str = "genotype") -> Genotype:
    """Validate a parsed genotype JSON object; every problem is one line naming `source`."""
    if not isinstance(obj, dict):
        raise UserError(f"{source}: expected a JSON object with 'normal' and 'reduce', got {type(obj).__name__}")
    # `derive_tau`: the temperature `itnas derive` and the search derived the cell at (a record).
    unknown = set(obj) - {"normal", "normal_concat", "reduce", "reduce_concat", "name", "source", "derive_tau"}
    if unknown:
        raise UserError(f"{source}: unknown key '{sorted(unknown)[0]}' in genotype")
    return Genotype(
        normal=_check_cell(obj, "normal", source),
        normal_concat=_check_concat(obj, "normal_concat", source),
        reduce=_check_cell(obj, "reduce", source),
        reduce_concat=_check_concat(obj, "reduce_concat", source),
    )


def load_genotype(path: str | Path) -> Genotype:
    return genotype_from_json(read_json(path, "genotype"), source=str(path))


def save_genotype(path: str | Path, genotype: Genotype, **extra: Any) -> None:
    """The genotype's JSON, with `extra` keys (`name`, `source`) beside the cells."""
    write_json(path, {**genotype.to_json(), **extra})
