"""Derivation: the DARTS rule, topology initialisation and TIEP on hand-written arch states."""

import json
import math

import pytest

from itnas.cli import main
from itnas.errors import UserError
from itnas.formats import validate_arch_state
from itnas.search.derive import darts_cell, derive, soft_weights, tiep_cell
from itnas.space import (
    ALL_EDGES,
    OUTER_EDGES,
    PRIMITIVES,
    TRIPLES,
    edge_key,
    genotype_from_json,
    triple_key,
)

K = 7
UNIFORM = [1.0 / K] * K


def _onehot_logits(op: int, prob: float) -> list[float]:
    """Logits whose softmax puts `prob` on `op` and the rest evenly on the other six ops."""
    v = [0.0] * K
    v[op] = math.log(prob * (K - 1) / (1 - prob))
    return v


def hand_worked_cell() -> dict:
    """A cell where TIEP keeps edge (2,3) and the DARTS rule drops it.

    Z(0,2) puts 0.552 on sep_conv_3x3, Z(1,2) 0.552 on sep_conv_5x5. P(0,2,3) sends
    sep_conv_3x3 and P(1,2,3) sends sep_conv_5x5 to dil_conv_3x3; every other row is uniform.
    Soft (DARTS after topology init): Z(2,3)[dil_conv_3x3] = 0.552 + 0.448/7 = 0.616, weaker than
    (0,3) at 0.70 and (1,3) at 0.667, so DARTS keeps (0,3) and (1,3).
    TIEP: Z(0,2), Z(1,2) become one-hot, so Z(2,3) = one-hot dil_conv_3x3 (strength 1.0) and
    TIEP keeps (2,3) and (0,3). Nodes 4 and 5 have strong outer edges and agree in both.
    """
    alpha = {
        edge_key(0, 2): _onehot_logits(0, 0.5519), edge_key(1, 2): _onehot_logits(1, 0.5519),
        edge_key(0, 3): _onehot_logits(4, 0.70), edge_key(1, 3): _onehot_logits(5, 2 / 3),
        edge_key(0, 4): _onehot_logits(0, 0.96), edge_key(1, 4): _onehot_logits(6, 0.95),
        edge_key(0, 5): _onehot_logits(1, 0.96), edge_key(1, 5): _onehot_logits(3, 0.95),
    }
    transition, beta = {}, {}
    for m, i, j in TRIPLES:
        rows = [list(UNIFORM) for _ in range(K)]
        if (i, j) == (2, 3):
            rows[m] = [1.0 if t == 2 else 0.0 for t in range(K)]  # m=0: sep3 -> dil3; m=1: sep5 -> dil3
        transition[triple_key(m, i, j)] = rows
        beta[triple_key(m, i, j)] = 1.0 / i
    return {"alpha": alpha, "transition": transition, "beta": beta}


def state_of(cell: dict) -> dict:
    return {"format": "itnas-arch-state/1", "primitives": list(PRIMITIVES), "normal": cell, "reduce": cell}


def test_soft_inner_weight_matches_the_hand_computation():
    z = soft_weights(hand_worked_cell())
    assert float(z[(2, 3)][2]) == pytest.approx(0.5519 + 0.4481 / 7, abs=1e-4)
    assert float(z[(2, 3)].sum()) == pytest.approx(1.0)


def test_tiep_and_darts_choose_different_edges_on_the_hand_worked_cell():
    cell = hand_worked_cell()
    darts, tiep = darts_cell(cell), tiep_cell(cell)
    assert darts[2:4] == (("avg_pool_3x3", 0), ("max_pool_3x3", 1))
    assert tiep[2:4] == (("avg_pool_3x3", 0), ("dil_conv_3x3", 2))
    # Both keep node 2's two edges and agree where the outer edges dominate.
    assert darts[:2] == tiep[:2] == (("sep_conv_3x3", 0), ("sep_conv_5x5", 1))
    assert darts[4:] == tiep[4:] == (("sep_conv_3x3", 0), ("skip_connect", 1),
                                     ("sep_conv_5x5", 0), ("dil_conv_5x5", 1))


def test_tiep_renormalises_attention_over_kept_predecessors_only():
    """Eq. 15: a pruned predecessor's P must not leak into its descendant's weights."""
    cell = hand_worked_cell()
    # Node 3 keeps (0,3) and (2,3) under TIEP; make P(1,3,4), from the pruned edge (1,3), point
    # at max_pool with most of the attention. If it leaked, (3,4) would pick max_pool.
    cell["transition"][triple_key(1, 3, 4)] = [[1.0 if t == 5 else 0.0 for t in range(K)] for _ in range(K)]
    cell["transition"][triple_key(0, 3, 4)] = [[1.0 if t == 3 else 0.0 for t in range(K)] for _ in range(K)]
    cell["beta"][triple_key(0, 3, 4)], cell["beta"][triple_key(1, 3, 4)] = 0.1, 0.8
    cell["beta"][triple_key(2, 3, 4)] = 0.1
    cell["alpha"][edge_key(0, 4)] = _onehot_logits(0, 0.3)  # let (3,4) win a place at node 4
    pairs = tiep_cell(cell)
    node4 = dict((i, op) for op, i in pairs[4:6])
    assert node4.get(3) == "dil_conv_5x5"


def test_darts_rule_on_an_independent_state_keeps_the_two_strongest_edges():
    alpha = {edge_key(i, j): [0.0] * K for i, j in ALL_EDGES}
    alpha[edge_key(2, 3)] = _onehot_logits(6, 0.9)
    alpha[edge_key(1, 3)] = _onehot_logits(3, 0.8)
    alpha[edge_key(0, 3)] = _onehot_logits(4, 0.5)
    genotype = derive(validate_arch_state(state_of({"alpha": alpha}), "x"), "darts")
    assert genotype.normal[2:4] == (("dil_conv_5x5", 1), ("skip_connect", 2))


def test_tiep_refuses_a_state_without_transitions():
    alpha = {edge_key(i, j): [0.0] * K for i, j in ALL_EDGES}
    with pytest.raises(UserError, match="TIEP needs transition"):
        derive(validate_arch_state(state_of({"alpha": alpha}), "x"), "tiep")


def _write(tmp_path, obj, name="state.json"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_derive_cli_writes_the_tiep_genotype_of_a_hand_written_file(tmp_path, capsys):
    src = _write(tmp_path, state_of(hand_worked_cell()))
    out = tmp_path / "g.json"
    assert main(["derive", "--arch-state", str(src), "--method", "tiep", "--out", str(out),
                 "--name", "itnas-seed2", "--tau", "1"]) == 0
    written = json.loads(out.read_text())
    assert written["normal"][3] == ["dil_conv_3x3", 2] and written["name"] == "itnas-seed2"
    assert written["reduce_concat"] == [2, 3, 4, 5]


def _broken_states():
    good = state_of(hand_worked_cell())
    wrong_tag = dict(good, format="itnas-arch-state/0")
    missing = json.loads(json.dumps(good))
    del missing["normal"]["alpha"]["1->4"]
    not_stochastic = json.loads(json.dumps(good))
    not_stochastic["reduce"]["transition"]["0->2->3"][0] = [0.5] * K
    nan_text = json.dumps(good).replace("0.25", "NaN", 1)
    beta_off = json.loads(json.dumps(good))
    beta_off["normal"]["beta"]["0->2->3"] = 0.9
    return {
        "wrong format tag": (wrong_tag, "'format' must be"),
        "missing edge": (missing, "missing edge '1->4'"),
        "not row-stochastic": (not_stochastic, "not a probability vector"),
        "NaN": (nan_text, "not valid JSON"),
        "attention not summing to 1": (beta_off, "sums to"),
        "truncated": (json.dumps(good)[:200], "not valid JSON"),
        "not an object": ([1, 2], "expected a JSON object"),
    }


@pytest.mark.parametrize("case", list(_broken_states()))
def test_derive_refuses_malformed_arch_states_with_one_line(tmp_path, capsys, case):
    obj, message = _broken_states()[case]
    src = _write(tmp_path, obj)
    out = tmp_path / "g.json"
    assert main(["derive", "--arch-state", str(src), "--method", "darts", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and str(src) in err
    assert not out.exists()


def test_outer_edges_are_the_eight_from_the_cell_inputs():
    assert OUTER_EDGES == [(0, 2), (1, 2), (0, 3), (1, 3), (0, 4), (1, 4), (0, 5), (1, 5)]
    assert len(TRIPLES) == 16


def tau_sensitive_cell() -> dict:
    """A cell where the derivation temperature decides TIEP's choice at node 3.

    Outer edges (0,3) and (1,3) put 0.55 on their op at tau = 1; the inner edge (2,3), computed
    from the one-hot Z(0,2), Z(1,2) through P rows that put 0.7 on dil_conv_3x3, has strength
    0.7 whatever tau. At tau = 1 TIEP keeps (2,3) and one outer edge; at tau = 0.5 the outer
    edges sharpen to 0.85 and beat it; at tau = 2 they flatten to 0.33 and lose."""
    cell = hand_worked_cell()
    cell["alpha"][edge_key(0, 3)] = _onehot_logits(4, 0.55)
    cell["alpha"][edge_key(1, 3)] = _onehot_logits(5, 0.549)
    for m in (0, 1):
        row = [0.3 / (K - 1)] * K
        row[2] = 0.7
        cell["transition"][triple_key(m, 2, 3)][m] = row
    return cell


def _node3(genotype) -> list[int]:
    return sorted(i for _, i in genotype.normal[2:4])


def test_the_derivation_temperature_decides_which_edges_tiep_keeps():
    state = validate_arch_state(state_of(tau_sensitive_cell()), "test")
    assert _node3(derive(state, "tiep", 1.0)) == [0, 2]
    assert _node3(derive(state, "tiep", 0.5)) == [0, 1]
    assert _node3(derive(state, "tiep", 2.0)) == [0, 2]
    z = soft_weights(state["normal"], 0.5)
    assert float(z[(0, 3)].max()) == pytest.approx(0.55 ** 2 / (0.55 ** 2 + 6 * (0.45 / 6) ** 2), abs=1e-6)


def test_derive_takes_the_temperature_from_the_cli_else_from_the_arch_state(tmp_path, capsys):
    path = tmp_path / "state.json"
    out = tmp_path / "g.json"
    path.write_text(json.dumps({**state_of(tau_sensitive_cell()), "derive_tau": 0.5}))
    cases = [([], [0, 1]), (["--tau", "1"], [0, 2]), (["--tau", "0.5"], [0, 1])]
    for extra, kept in cases:
        assert main(["derive", "--arch-state", str(path), "--method", "tiep", "--out", str(out), *extra]) == 0
        capsys.readouterr()
        assert sorted(i for _, i in json.loads(out.read_text())["normal"][2:4]) == kept, extra
    for bad in ("0", "-1", "inf", "nan"):
        assert main(["derive", "--arch-state", str(path), "--method", "tiep", "--out", str(out), "--tau", bad]) == 2
        assert "--tau" in capsys.readouterr().err


def _derive_cli(tmp_path, capsys, extra_state: dict, *args: str) -> tuple[int, dict | None, str]:
    """`itnas derive --method tiep` on the tau-sensitive cell with `extra_state` keys: (exit
    status, the genotype file or None, stderr)."""
    src = _write(tmp_path, {**state_of(tau_sensitive_cell()), **extra_state})
    out = tmp_path / "g.json"
    out.unlink(missing_ok=True)
    rc = main(["derive", "--arch-state", str(src), "--method", "tiep", "--out", str(out), *args])
    return rc, json.loads(out.read_text()) if out.exists() else None, capsys.readouterr().err


@pytest.mark.parametrize("extra_state, tau, kept, origin", [
    ({"derive_tau": 2.0, "variant": "itnas"}, 2.0, [0, 2], "recorded by its search"),  # the record wins
    ({"variant": "itnas"}, 0.5, [0, 1], "auto for its variant 'itnas'"),  # Gumbel: the final tau.end
    ({"variant": "gumbel_transition"}, 0.5, [0, 1], "auto for its variant 'gumbel_transition'"),
    ({"variant": "darts"}, 1.0, [0, 2], "auto for its variant 'darts'"),  # softmax: 1
    ({"variant": "softmax_transition_tiep"}, 1.0, [0, 2], "softmax_transition_tiep"),  # unregistered flags
])
def test_derive_without_tau_takes_the_recorded_one_else_the_variants_and_says_which(
        tmp_path, capsys, extra_state, tau, kept, origin):
    rc, written, err = _derive_cli(tmp_path, capsys, extra_state)
    assert rc == 0
    assert written["derive_tau"] == tau and _node3(genotype_from_json(written)) == kept
    line = [x for x in err.splitlines() if "temperature" in x]
    assert len(line) == 1 and f"temperature {tau:g} " in line[0] and origin in line[0]


def test_derive_with_tau_records_the_given_one(tmp_path, capsys):
    rc, written, err = _derive_cli(tmp_path, capsys, {"derive_tau": 0.5, "variant": "itnas"}, "--tau", "2")
    assert rc == 0 and written["derive_tau"] == 2.0 and _node3(genotype_from_json(written)) == [0, 2]
    assert "temperature 2 (--tau)" in err


@pytest.mark.parametrize("extra_state, says", [({}, "no variant"), ({"variant": "mystery"}, "'mystery'")])
def test_derive_refuses_a_state_with_neither_tau_nor_a_known_variant_until_tau_is_given(
        tmp_path, capsys, extra_state, says):
    rc, written, err = _derive_cli(tmp_path, capsys, extra_state)
    assert rc == 2 and written is None
    assert err.count("\n") == 1 and "derive_tau" in err and "--tau" in err and says in err
    rc, written, _ = _derive_cli(tmp_path, capsys, extra_state, "--tau", "0.5")
    assert rc == 0 and written["derive_tau"] == 0.5


def test_genotype_files_with_a_derive_tau_are_read_like_any_other(tmp_path):
    from itnas.genotypes import lookup, resolve_genotype
    from itnas.space import load_genotype, save_genotype

    path = tmp_path / "itnas" / "seed0" / "genotype.json"
    path.parent.mkdir(parents=True)
    save_genotype(path, lookup("DARTS_V2"), name="itnas-seed0", derive_tau=0.5)
    assert load_genotype(path) == lookup("DARTS_V2")
    assert resolve_genotype(str(path)) == (lookup("DARTS_V2"), "itnas-seed0")


def test_auto_derives_at_the_final_search_temperature_for_gumbel_variants_and_at_1_otherwise():
    from itnas.config import defaults
    from itnas.search.derive import derive_tau

    cfg = defaults("search")
    cfg["tau"]["end"] = 0.3
    assert derive_tau(cfg) == 0.3
    cfg["arch"]["gumbel"] = False
    assert derive_tau(cfg) == 1.0
    cfg["derive"]["tau"] = 2.5
    assert derive_tau(cfg) == 2.5


def test_the_stability_report_counts_edges_and_ops_that_change_across_temperatures():
    from itnas.search.derive import differences, stability

    state = validate_arch_state(state_of(tau_sensitive_cell()), "test")
    chosen = derive(state, "tiep", 1.0)
    report = stability(state, "tiep", chosen, [0.5, 1.0, 2.0])
    # tau 0.5 keeps (1,3) instead of (2,3) at node 3, in both cell types (the same cell)
    assert report["0.5"]["edges"] == 2 and report["1"] == {"edges": 0, "ops": 0, "genotype_hash": chosen.hash()}
    other = derive(state, "tiep", 0.5)
    assert differences(chosen, other) == {"edges": 2, "ops": 0}
    from itnas.genotypes import lookup
    from itnas.space import make_genotype

    v2 = lookup("DARTS_V2")
    changed_op = make_genotype([("sep_conv_5x5", 0), *v2.normal[1:]], v2.reduce)
    changed_edge = make_genotype([("sep_conv_3x3", 0), ("sep_conv_3x3", 0), *v2.normal[2:]], v2.reduce)
    assert differences(v2, changed_op) == {"edges": 0, "ops": 1}
    assert differences(v2, changed_edge)["edges"] == 1


def test_darts_none_op_is_never_chosen_even_where_it_is_strongest():
    """A state searched with DARTS's `none` (8 ops, `none` first): on every edge `none` holds the
    most weight, yet each kept edge takes its best real op and the edges rank by their real ops."""
    k = K + 1
    alpha = {}
    for n, (i, j) in enumerate(ALL_EDGES):
        row = [5.0] + [0.0] * K  # none dominates
        row[1 + (n % K)] = 1.0 + 0.1 * i  # the best real op; later inputs a little stronger
        alpha[edge_key(i, j)] = row
    cell = {"alpha": alpha}
    state = validate_arch_state({"format": "itnas-arch-state/1", "primitives": ["none", *PRIMITIVES],
                                 "normal": cell, "reduce": cell}, "test")
    genotype = derive(state, "darts")
    assert all(op != "none" for op, _ in genotype.normal + genotype.reduce)
    # node 5 ranks by the real ops' weights: inputs 3 and 4 are the strongest
    assert sorted(i for _, i in genotype.normal[6:]) == [3, 4]
    assert genotype.normal[0][0] == PRIMITIVES[ALL_EDGES.index((0, 2)) % K]
    assert len(alpha[edge_key(0, 2)]) == k
