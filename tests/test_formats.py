"""formats.py: the arch-state file (itnas-arch-state/1). What a search writes is read back
normalised; anything else is one line naming the file and the entry at fault, and the writer
checks before it writes."""

from __future__ import annotations

import copy
import json

import pytest

from itnas.errors import UserError
from itnas.formats import ARCH_STATE_FORMAT, load_arch_state, save_arch_state, validate_arch_state
from itnas.space import (
    ALL_EDGES,
    OUTER_EDGES,
    PRIMITIVES,
    TRIPLES,
    edge_key,
    search_primitives,
    triple_key,
)

K = len(PRIMITIVES)


def _softmax_state(primitives=PRIMITIVES) -> dict:
    """A state of a softmax / Gumbel variant: alpha on all 14 edges, integers among the numbers."""
    cell = {"alpha": {edge_key(i, j): [n % 3 for n in range(len(primitives))] for i, j in reversed(ALL_EDGES)}}
    return {"format": ARCH_STATE_FORMAT, "primitives": list(primitives), "variant": "darts", "epoch": 3,
            "normal": cell, "reduce": copy.deepcopy(cell)}


def _transition_state() -> dict:
    """A transition variant's state: alpha on the 8 outer edges, a row-stochastic P and an
    attention beta summing to 1 over each inner edge's predecessors."""
    uniform = [[1 / K] * K for _ in range(K)]
    beta = {triple_key(m, i, j): 1 / i for m, i, j in TRIPLES}
    cell = {"alpha": {edge_key(i, j): [0.5] * K for i, j in OUTER_EDGES},
            "transition": {triple_key(*t): copy.deepcopy(uniform) for t in TRIPLES}, "beta": beta}
    return {"format": ARCH_STATE_FORMAT, "primitives": list(PRIMITIVES), "tau": 0.5, "derive_tau": 1,
            "normal": cell, "reduce": copy.deepcopy(cell)}


def test_a_softmax_state_is_normalised_to_floats_in_edge_order():
    state = _softmax_state()
    state["unrelated"] = "dropped"
    out = validate_arch_state(state, "s.json")
    assert list(out["normal"]["alpha"]) == [edge_key(i, j) for i, j in ALL_EDGES]  # by node, then input
    assert all(type(v) is float for v in out["reduce"]["alpha"]["0->2"])
    assert (out["variant"], out["epoch"]) == ("darts", 3) and "unrelated" not in out and "transition" not in out["normal"]


def test_a_transition_state_keeps_p_and_beta_and_the_derivation_temperature():
    out = validate_arch_state(_transition_state(), "s.json")
    assert set(out["normal"]["alpha"]) == {edge_key(i, j) for i, j in OUTER_EDGES}
    assert len(out["normal"]["transition"]) == len(TRIPLES) == 16 and len(out["reduce"]["beta"]) == 16
    assert out["derive_tau"] == 1.0 and type(out["derive_tau"]) is float and out["tau"] == 0.5


def test_the_none_op_comes_first_when_a_search_adds_it():
    out = validate_arch_state(_softmax_state(search_primitives(none_op=True)), "s.json")
    assert out["primitives"][0] == "none" and len(out["normal"]["alpha"]["0->2"]) == K + 1
    with pytest.raises(UserError, match="'primitives' must be"):
        validate_arch_state(_softmax_state((*PRIMITIVES, "none")), "s.json")


def test_save_then_load_gives_back_the_normalised_state(tmp_path):
    path = tmp_path / "arch_state.json"
    state = _transition_state()
    save_arch_state(path, state)
    assert load_arch_state(path) == validate_arch_state(state, "x")


def _broken(change) -> dict:
    state = _transition_state()
    change(state)
    return state


BROKEN = {
    "empty object": (lambda s: s.clear(), "'format' must be"),
    "other format": (lambda s: s.update(format="itnas-arch-state/2"), "'format' must be 'itnas-arch-state/1'"),
    "no reduce cell": (lambda s: s.pop("reduce"), "missing 'reduce' object"),
    "unknown cell key": (lambda s: s["normal"].update(gamma={}), "'normal': unknown key 'gamma'"),
    "missing outer edge": (lambda s: s["normal"]["alpha"].pop("1->5"), "'normal.alpha' is missing edge '1->5'"),
    "inner edge beside a transition": (lambda s: s["normal"]["alpha"].update({"2->3": [0.0] * K}),
                                       "unexpected edge '2->3' (inner edges come from the transition)"),
    "short vector": (lambda s: s["reduce"]["alpha"].update({"0->2": [1.0]}), "'reduce.alpha.0->2': expected a list of 7"),
    "NaN in alpha": (lambda s: s["normal"]["alpha"]["0->3"].__setitem__(2, float("nan")), "expected finite numbers"),
    "P row not stochastic": (lambda s: s["normal"]["transition"]["0->2->3"][4].__setitem__(0, 1.0),
                             "'normal.transition.0->2->3': row 4 is not a probability vector"),
    "missing triple": (lambda s: s["reduce"]["beta"].pop("1->4->5"), "'reduce.beta' is missing '1->4->5'"),
    "negative beta": (lambda s: s["normal"]["beta"].update({"0->2->3": -0.5}), "expected a finite number >= 0"),
    "beta not summing to 1": (lambda s: s["normal"]["beta"].update({"0->3->4": 0.9}),
                              "'normal.beta' for edge 3->4 sums to"),
    "transition on one cell only": (lambda s: s.update(reduce=_softmax_state()["reduce"]),
                                    "must both have or both lack transitions"),
    "zero derivation temperature": (lambda s: s.update(derive_tau=0), "'derive_tau': expected a finite number > 0"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_state_is_one_line_naming_the_file_and_entry(case):
    change, needle = BROKEN[case]
    with pytest.raises(UserError) as err:
        validate_arch_state(_broken(change), "run/arch_state.json")
    message = str(err.value)
    assert message.startswith("run/arch_state.json: ") and needle in message and "\n" not in message, message


def test_the_writer_checks_before_it_writes(tmp_path):
    path = tmp_path / "arch_state.json"
    with pytest.raises(UserError, match="is missing edge"):
        save_arch_state(path, _broken(lambda s: s["normal"]["alpha"].pop("0->2")))
    assert not path.exists()


def test_the_reader_names_the_file(tmp_path):
    path = tmp_path / "arch_state.json"
    path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(UserError, match=rf"^{path}: 'format' must be"):
        load_arch_state(path)
    with pytest.raises(UserError, match=r"^x.json: expected a JSON object$"):
        validate_arch_state([], "x.json")
