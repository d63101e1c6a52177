"""Genotype format, validation, hashing and the registry of published cells."""

import json

import pytest

from itnas.errors import UserError
from itnas.genotypes import PUBLISHED, lookup, resolve_genotype
from itnas.space import genotype_from_json as from_json


def test_published_cells_round_trip_through_json():
    for name, (genotype, source) in PUBLISHED.items():
        assert source
        assert from_json(json.loads(json.dumps(genotype.to_json())), name) == genotype


def test_registry_lookup_is_case_insensitive_and_files_resolve(tmp_path):
    assert lookup("darts_v2") is PUBLISHED["DARTS_V2"][0]
    path = tmp_path / "cell.json"
    path.write_text(json.dumps(PUBLISHED["DARTS_V1"][0].to_json()))
    genotype, _ = resolve_genotype(str(path))
    assert genotype == PUBLISHED["DARTS_V1"][0]
    with pytest.raises(UserError, match="unknown genotype 'nope'"):
        resolve_genotype("nope")


def test_a_genotype_file_is_labelled_by_its_name_or_its_folders_never_its_path(tmp_path):
    cells = PUBLISHED["DARTS_V1"][0].to_json()
    named = tmp_path / "select" / "itnas" / "genotype.json"
    named.parent.mkdir(parents=True)
    named.write_text(json.dumps({**cells, "name": "itnas-selected"}))
    assert resolve_genotype(str(named))[1] == "itnas-selected"
    derived = tmp_path / "derive" / "gumbel" / "seed3" / "genotype.json"  # written without a name
    derived.parent.mkdir(parents=True)
    derived.write_text(json.dumps(cells))
    assert resolve_genotype(str(derived))[1] == "gumbel-seed3"
    plain = tmp_path / "cell.json"
    plain.write_text(json.dumps(cells))
    assert resolve_genotype(str(plain))[1] == "cell"


def test_hash_depends_on_content_only():
    v1, v2 = PUBLISHED["DARTS_V1"][0], PUBLISHED["DARTS_V2"][0]
    assert v1.hash() != v2.hash()
    assert from_json(v2.to_json()).hash() == v2.hash()


def _mutated(**changes):
    obj = PUBLISHED["DARTS_V2"][0].to_json()
    obj.update(changes)
    return obj


@pytest.mark.parametrize("obj,message", [
    (_mutated(normal=[["conv_7x7", 0]] + PUBLISHED["DARTS_V2"][0].to_json()["normal"][1:]), "unknown op 'conv_7x7'"),
    (_mutated(normal=PUBLISHED["DARTS_V2"][0].to_json()["normal"][:7]), "must list 8"),
    (_mutated(reduce=PUBLISHED["DARTS_V2"][0].to_json()["reduce"][:6] + [["skip_connect", 5], ["skip_connect", 0]]),
     "input 5 out of range for node 5"),
    (_mutated(normal_concat=[2, 3]), "'normal_concat' must be"),
    (_mutated(normal=[["sep_conv_3x3"]] * 8), "must be an [op, input] pair"),
    (_mutated(extra=1), "unknown key 'extra'"),
    ([1], "expected a JSON object"),
])
def test_bad_genotypes_are_refused_with_one_line(obj, message):
    with pytest.raises(UserError) as err:
        from_json(obj, "g.json")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_sampled_cells_are_valid_and_uniform_over_inputs_and_operations():
    """The random baseline's law (docs/method.md): node j's two inputs are a uniform pair of
    0..j-1, every kept edge's op is uniform over the 7, and the normal and reduction cells are
    drawn independently. Counts over 3000 cells, within 4.5 standard deviations."""
    import itertools
    import math
    from collections import Counter

    from itnas.space import PRIMITIVES, genotype_from_json, sample_genotype

    n = 3000
    cells = [sample_genotype(seed) for seed in range(n)]
    ops, pairs, same_first = Counter(), {j: Counter() for j in range(2, 6)}, 0
    for g in cells:
        assert genotype_from_json(g.to_json()) == g  # valid
        same_first += g.normal[0][0] == g.reduce[0][0]
        for cell in (g.normal, g.reduce):
            ops.update(op for op, _ in cell)
            for j in range(2, 6):
                pairs[j][tuple(i for _, i in cell[2 * (j - 2):2 * (j - 1)])] += 1

    def uniform(counter, outcomes, trials):
        p = 1 / len(outcomes)
        sd = math.sqrt(trials * p * (1 - p))
        return set(counter) == set(outcomes) and all(abs(counter[o] - trials * p) <= 4.5 * sd for o in outcomes)

    assert uniform(ops, PRIMITIVES, 2 * 8 * n)
    for j in range(2, 6):
        assert uniform(pairs[j], list(itertools.combinations(range(j), 2)), 2 * n), (j, pairs[j])
    assert abs(same_first - n / 7) < 4.5 * math.sqrt(n / 7 * 6 / 7)  # independent cells
    assert sample_genotype(5) == sample_genotype(5) and sample_genotype(5) != sample_genotype(6)


def test_sample_cli_writes_a_named_genotype(tmp_path, capsys):
    from itnas.cli import main
    from itnas.space import load_genotype, sample_genotype

    assert main(["sample", "--seed", "7", "--out", str(tmp_path / "g.json")]) == 0
    assert load_genotype(tmp_path / "g.json") == sample_genotype(7)
    assert json.loads((tmp_path / "g.json").read_text())["name"] == "random7"
