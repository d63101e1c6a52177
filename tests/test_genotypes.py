"""genotypes.py: the published cells by name, `resolve_genotype` (a name or a file) and how a
genotype file is labelled in runs and tables (`file_label`)."""

from __future__ import annotations

import json

import pytest

from itnas.errors import UserError
from itnas.genotypes import PUBLISHED, file_label, lookup, published_names, resolve_genotype
from itnas.space import CONCAT, PRIMITIVES, Genotype, make_genotype, save_genotype

CELL = make_genotype([("sep_conv_3x3", 0), ("skip_connect", 1)] * 4, [("max_pool_3x3", 0), ("avg_pool_3x3", 1)] * 4)


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_every_published_cell_is_a_cell_of_our_space_with_its_source(name):
    genotype, source = PUBLISHED[name]
    assert isinstance(genotype, Genotype) and genotype.normal_concat == genotype.reduce_concat == CONCAT
    for cell in (genotype.normal, genotype.reduce):
        assert len(cell) == 8  # two inputs for each of the four nodes
        for k, (op, i) in enumerate(cell):
            assert op in PRIMITIVES and 0 <= i < 2 + k // 2, (name, k, op, i)  # node 2 + k//2 reads earlier ones
    assert "genotypes.py" in source  # the authors' file it was copied from


def test_the_published_cells_are_distinct_and_listed_sorted():
    assert published_names() == sorted(PUBLISHED) and {"DARTS_V1", "DARTS_V2"} <= set(PUBLISHED)
    assert len({genotype.hash() for genotype, _ in PUBLISHED.values()}) == len(PUBLISHED)


def test_darts_v2_is_the_published_second_order_cell():
    normal = PUBLISHED["DARTS_V2"][0].normal
    assert normal[:2] == (("sep_conv_3x3", 0), ("sep_conv_3x3", 1)) and normal[-1] == ("dil_conv_3x3", 2)


def test_lookup_ignores_case_and_knows_only_registered_names():
    assert lookup("darts_v2") is lookup("DARTS_V2") is PUBLISHED["DARTS_V2"][0]
    assert lookup("DARTS_V3") is None


def test_a_name_resolves_to_its_cell_labelled_in_capitals():
    assert resolve_genotype("pc_darts") == (PUBLISHED["PC_DARTS"][0], "PC_DARTS")


def test_a_file_resolves_to_its_cell_labelled_by_its_name(tmp_path):
    path = tmp_path / "genotype.json"
    save_genotype(path, CELL, name="itnas-seed3")
    assert resolve_genotype(str(path)) == (CELL, "itnas-seed3")


def test_an_unknown_name_is_one_line_listing_the_registered_ones(tmp_path):
    with pytest.raises(UserError) as err:
        resolve_genotype(str(tmp_path / "nothing.json"))
    message = str(err.value)
    assert "not a registered name (DARTS_V1, DARTS_V2," in message and "nor an existing file" in message
    assert "\n" not in message


def test_a_registered_name_wins_over_a_file_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_genotype(tmp_path / "DARTS_V1", CELL)
    assert resolve_genotype("DARTS_V1") == (PUBLISHED["DARTS_V1"][0], "DARTS_V1")


def _write(path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("where, data, label", [
    ("a/genotype.json", {**CELL.to_json(), "name": "  gumbel-selected "}, "gumbel-selected"),  # its name, stripped
    ("a/best_cell.json", CELL.to_json(), "best_cell"),  # no name: the file's stem
    ("itnas/seed2/genotype.json", CELL.to_json(), "itnas-seed2"),  # a search's folder: variant-seedN
    ("itnas/seed1/genotype.json", {**CELL.to_json(), "name": " "}, "itnas-seed1"),  # a blank name is none
    ("darts/genotype.json", CELL.to_json(), "darts"),  # any other folder: its name
])
def test_a_genotype_file_is_labelled_by_its_name_else_its_place(tmp_path, where, data, label):
    path = tmp_path / where
    _write(path, data)
    assert file_label(path) == label
