"""The architecture-state file (`itnas-arch-state/1`): written by every search, read by
`itnas derive` (docs/architecture.md). The reader validates and reports every problem as one line
naming the file; the writer validates first and writes atomically. Keep the format stable.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from itnas.errors import UserError
from itnas.files import read_json, write_json
from itnas.space import (
    ALL_EDGES,
    INNER_EDGES,
    OUTER_EDGES,
    PRIMITIVES,
    TRIPLES,
    edge_key,
    search_primitives,
    triple_key,
)

ARCH_STATE_FORMAT = "itnas-arch-state/1"


def _vector(value: Any, where: str, size: int) -> list[float]:
    if not isinstance(value, list) or len(value) != size:
        raise UserError(f"{where}: expected a list of {size} numbers")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise UserError(f"{where}: expected finite numbers, got {v!r}")
        out.append(float(v))
    return out


def validate_arch_state(state: Any, source: str) -> dict:
    """Check an arch-state object (written by a search or by hand) and return it normalised.

    Transition variants carry alpha for the 8 outer edges plus `transition` and `beta` for the
    16 (m, i, j) triples; other variants carry alpha for all 14 edges.
    """
    if not isinstance(state, dict):
        raise UserError(f"{source}: expected a JSON object")
    if state.get("format") != ARCH_STATE_FORMAT:
        raise UserError(f"{source}: 'format' must be '{ARCH_STATE_FORMAT}', got {state.get('format')!r}")
    prims = state.get("primitives")
    if prims not in (list(PRIMITIVES), list(search_primitives(none_op=True))):
        raise UserError(f"{source}: 'primitives' must be {list(PRIMITIVES)}, optionally after 'none', got {prims!r}")
    k = len(prims)
    out: dict[str, Any] = {"format": ARCH_STATE_FORMAT, "primitives": list(prims)}
    for extra in ("variant", "epoch", "tau"):
        if extra in state:
            out[extra] = state[extra]
    if "derive_tau" in state:  # the temperature its search derives at (itnas derive's default)
        tau = state["derive_tau"]
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau <= 0:
            raise UserError(f"{source}: 'derive_tau': expected a finite number > 0, got {tau!r}")
        out["derive_tau"] = float(tau)
    for cell in ("normal", "reduce"):
        body = state.get(cell)
        if not isinstance(body, dict):
            raise UserError(f"{source}: missing '{cell}' object")
        unknown = set(body) - {"alpha", "transition", "beta"}
        if unknown:
            raise UserError(f"{source}: '{cell}': unknown key '{sorted(unknown)[0]}'")
        alpha = body.get("alpha")
        if not isinstance(alpha, dict):
            raise UserError(f"{source}: '{cell}.alpha' missing or not an object")
        has_transition = "transition" in body or "beta" in body
        edges = OUTER_EDGES if has_transition else ALL_EDGES
        expected = {edge_key(i, j) for i, j in edges}
        missing = sorted(expected - set(alpha))
        if missing:
            raise UserError(f"{source}: '{cell}.alpha' is missing edge '{missing[0]}'")
        extra_edges = sorted(set(alpha) - expected)
        if extra_edges:
            raise UserError(f"{source}: '{cell}.alpha' has unexpected edge '{extra_edges[0]}'"
                            + (" (inner edges come from the transition)" if has_transition else ""))
        cell_out: dict[str, Any] = {"alpha": {key: _vector(alpha[key], f"{source}: '{cell}.alpha.{key}'", k)
                                              for key in sorted(expected, key=_edge_order)}}
        if has_transition:
            trans, beta = body.get("transition"), body.get("beta")
            if not isinstance(trans, dict) or not isinstance(beta, dict):
                raise UserError(f"{source}: '{cell}' needs both 'transition' and 'beta' objects")
            tkeys = [triple_key(*t) for t in TRIPLES]
            for name, obj in (("transition", trans), ("beta", beta)):
                missing = [t for t in tkeys if t not in obj]
                if missing:
                    raise UserError(f"{source}: '{cell}.{name}' is missing '{missing[0]}'")
                extra_keys = sorted(set(obj) - set(tkeys))
                if extra_keys:
                    raise UserError(f"{source}: '{cell}.{name}' has unexpected key '{extra_keys[0]}'")
            cell_out["transition"] = {}
            for t in tkeys:
                where = f"{source}: '{cell}.transition.{t}'"
                mat = trans[t]
                if not isinstance(mat, list) or len(mat) != k:
                    raise UserError(f"{where}: expected a {k} x {k} matrix")
                rows = [_vector(row, f"{where} row {r}", k) for r, row in enumerate(mat)]
                for r, row in enumerate(rows):
                    if min(row) < 0 or abs(sum(row) - 1.0) > 1e-4:
                        raise UserError(f"{where}: row {r} is not a probability vector "
                                        f"(entries >= 0 summing to 1; sum is {sum(row):.6g})")
                cell_out["transition"][t] = rows
            cell_out["beta"] = {}
            for t in tkeys:
                b = beta[t]
                if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b < 0:
                    raise UserError(f"{source}: '{cell}.beta.{t}': expected a finite number >= 0, got {b!r}")
                cell_out["beta"][t] = float(b)
            for i, j in INNER_EDGES:
                total = sum(cell_out["beta"][triple_key(m, i, j)] for m in range(i))
                if abs(total - 1.0) > 1e-4:
                    raise UserError(f"{source}: '{cell}.beta' for edge {edge_key(i, j)} sums to "
                                    f"{total:.6g}; the attention over predecessors must sum to 1")
        out[cell] = cell_out
    has = ["transition" in out[c] for c in ("normal", "reduce")]
    if has[0] != has[1]:
        raise UserError(f"{source}: 'normal' and 'reduce' must both have or both lack transitions")
    return out


def _edge_order(key: str) -> tuple[int, int]:
    i, j = key.split("->")
    return int(j), int(i)


def load_arch_state(path: str | Path) -> dict:
    return validate_arch_state(read_json(path, "arch-state file"), str(path))


def save_arch_state(path: str | Path, state: dict) -> None:
    validate_arch_state(state, str(path))
    write_json(path, state)
