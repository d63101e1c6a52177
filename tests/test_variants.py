"""The variant registry (itnas/variants.py): one home for what each variant is, read by the
command line, the search, derivation, the tables and the workflow."""

import pytest

from itnas import variants
from itnas.config import defaults, load_config
from itnas.errors import UserError
from tests.conftest import REPO


def test_the_paper_ablation_and_darts_in_its_own_setting_are_registered():
    table2 = {name: variants.get(name).flags for name in ("darts", "gumbel", "gumbel_transition", "itnas")}
    assert table2["itnas"] == {"gumbel": True, "transition": True, "tiep": True}
    assert table2["gumbel_transition"]["tiep"] is False and table2["darts"] == {k: False for k in table2["darts"]}
    assert [variants.get(n).derive_method for n in table2] == ["darts", "darts", "darts", "tiep"]
    second = variants.get("darts_2nd")
    assert second.flags == table2["darts"] and second.none_op and second.second_order
    assert second.setting == "2nd order, 8 ops (none)" and variants.get("darts").setting == "1st order, 7 ops"
    with pytest.raises(UserError, match="unknown variant 'nas'"):
        variants.get("nas")


@pytest.mark.parametrize("name", list(variants.VARIANTS))
def test_a_config_given_a_variants_overrides_runs_that_variant(name):
    cfg = load_config(REPO / "config/recipes/search.yaml", "search", variants.get(name).overrides())
    assert variants.variant_of(cfg) == name


def test_variant_overrides_leave_settings_they_do_not_fix_to_the_user():
    cfg = load_config(REPO / "config/recipes/search.yaml", "search",
                      ["arch_optim.order=second", *variants.get("darts").overrides()])
    assert cfg["arch_optim"]["order"] == "second"
    assert variants.variant_of(cfg) == "darts"  # by its flags; metrics.json records the order


def test_flag_sets_outside_the_registry_get_stable_path_safe_names():
    cfg = defaults("search")
    cfg["arch"].update(gumbel=False, transition=True, tiep=True)
    assert variants.variant_of(cfg) == "softmax_transition_tiep"
    assert variants.method_for(transition=False, tiep=True) == "darts"


def test_variants_that_differ_only_in_the_derivation_share_one_search():
    assert {n: variants.search_of(n) for n in variants.NAMES} == {
        "darts": "darts", "gumbel": "gumbel", "gumbel_transition": "gumbel_transition",
        "itnas": "gumbel_transition", "darts_2nd": "darts_2nd"}
    assert variants.sharing("gumbel_transition") == ["gumbel_transition", "itnas"]
    assert variants.sharing("gumbel_transition", ["itnas", "darts"]) == ["itnas"]
    # the shared search runs a config that differs from the other variant's in `arch.tiep` only
    own = load_config(REPO / "config/recipes/search.yaml", "search", variants.get("itnas").overrides())
    shared = load_config(REPO / "config/recipes/search.yaml", "search", variants.get("gumbel_transition").overrides())
    own["arch"].pop("tiep"), shared["arch"].pop("tiep")
    assert own == shared
    with pytest.raises(UserError, match="unknown variant"):
        variants.search_of("nas")
