"""Genotypes: the derived cell type, its validation, hashing, and a registry of published cells.

A genotype lists, for each of the normal and reduction cells, eight (op, input) pairs: two per
intermediate node 2..5, node by node. Inputs 0 and 1 are the two previous cells' outputs.
Published cells are registered by name so they can be typed on the command line; each entry
cites where it comes from.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from itnas.errors import UserError
from itnas.ops import PRIMITIVES

NODES = 4  # intermediate nodes 2..5
CONCAT = (2, 3, 4, 5)

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


def from_json(obj: Any, source: str = "genotype") -> Genotype:
    """Validate a parsed genotype JSON object; every problem is one line naming `source`."""
    if not isinstance(obj, dict):
        raise UserError(f"{source}: expected a JSON object with 'normal' and 'reduce', got {type(obj).__name__}")
    unknown = set(obj) - {"normal", "normal_concat", "reduce", "reduce_concat", "name", "source"}
    if unknown:
        raise UserError(f"{source}: unknown key '{sorted(unknown)[0]}' in genotype")
    return Genotype(
        normal=_check_cell(obj, "normal", source),
        normal_concat=_check_concat(obj, "normal_concat", source),
        reduce=_check_cell(obj, "reduce", source),
        reduce_concat=_check_concat(obj, "reduce_concat", source),
    )


def _g(normal: list[Pair], reduce: list[Pair]) -> Genotype:
    return Genotype(tuple(normal), CONCAT, tuple(reduce), CONCAT)


# Published cells of the DARTS space that use only our seven primitives. Sources: the
# `genotypes.py` files of the authors' public repositories (cited per entry).
PUBLISHED: dict[str, tuple[Genotype, str]] = {
    # Liu et al., DARTS (ICLR 2019), first order; quark0/darts cnn/genotypes.py.
    "DARTS_V1": (_g(
        [("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
         ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
        [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
         ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
    ), "DARTS (1st order), quark0/darts cnn/genotypes.py"),
    # Liu et al., DARTS (ICLR 2019), second order; quark0/darts cnn/genotypes.py.
    "DARTS_V2": (_g(
        [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
         ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
        [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
         ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    ), "DARTS (2nd order), quark0/darts cnn/genotypes.py"),
    # Xu et al., PC-DARTS (ICLR 2020), CIFAR-10 cell; yuhuixu1993/PC-DARTS genotypes.py.
    "PC_DARTS": (_g(
        [("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 0), ("dil_conv_3x3", 1),
         ("sep_conv_5x5", 0), ("sep_conv_3x3", 1), ("avg_pool_3x3", 0), ("dil_conv_3x3", 1)],
        [("sep_conv_5x5", 1), ("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 2),
         ("sep_conv_3x3", 0), ("sep_conv_3x3", 3), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2)],
    ), "PC-DARTS CIFAR-10 cell, yuhuixu1993/PC-DARTS genotypes.py"),
    # Chen et al., P-DARTS (ICCV 2019); chenxin061/pdarts genotypes.py.
    "PDARTS": (_g(
        [("skip_connect", 0), ("dil_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 1),
         ("sep_conv_3x3", 1), ("sep_conv_3x3", 3), ("sep_conv_3x3", 0), ("dil_conv_5x5", 4)],
        [("avg_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("dil_conv_5x5", 2),
         ("max_pool_3x3", 0), ("dil_conv_3x3", 1), ("dil_conv_3x3", 1), ("dil_conv_5x5", 3)],
    ), "P-DARTS, chenxin061/pdarts genotypes.py"),
    # Li et al., SGAS (CVPR 2020), criterion 1, best CIFAR cell (Cri1_CIFAR_3); lightaime/sgas cnn/genotypes.py.
    "SGAS_CRI1": (_g(
        [("sep_conv_3x3", 0), ("dil_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
         ("sep_conv_5x5", 1), ("sep_conv_5x5", 3), ("skip_connect", 0), ("dil_conv_5x5", 2)],
        [("max_pool_3x3", 0), ("dil_conv_5x5", 1), ("sep_conv_3x3", 0), ("skip_connect", 2),
         ("sep_conv_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0), ("max_pool_3x3", 1)],
    ), "SGAS Cri.1 (Cri1_CIFAR_3, the authors' best), lightaime/sgas cnn/genotypes.py"),
    # Li et al., SGAS (CVPR 2020), criterion 2, best CIFAR cell (Cri2_CIFAR_3); lightaime/sgas cnn/genotypes.py.
    "SGAS_CRI2": (_g(
        [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 2),
         ("max_pool_3x3", 0), ("sep_conv_3x3", 3), ("sep_conv_3x3", 2), ("sep_conv_3x3", 3)],
        [("sep_conv_3x3", 0), ("max_pool_3x3", 1), ("dil_conv_3x3", 0), ("max_pool_3x3", 1),
         ("max_pool_3x3", 0), ("sep_conv_3x3", 2), ("max_pool_3x3", 0), ("sep_conv_5x5", 2)],
    ), "SGAS Cri.2 (Cri2_CIFAR_3, the authors' best), lightaime/sgas cnn/genotypes.py"),
}
# Not registered: NASNet-A and AmoebaNet-A use ops outside this space (sep_conv_7x7, conv_7x1_1x7)
# and five-node cells; SNAS, GDAS, MiLeNAS and the others of Table 1 have no cell in an authors'
# repository that we could check.


def published_names() -> list[str]:
    return sorted(PUBLISHED)


def lookup(name: str) -> Genotype | None:
    """A published genotype by name (case-insensitive), or None."""
    for key, (genotype, _) in PUBLISHED.items():
        if key.lower() == name.lower():
            return genotype
    return None
