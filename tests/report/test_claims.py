"""The claims table: verdicts on hand-made results (a clear hold, a clear reversal, an undecided
case, a level inside and outside its margin, one seed), intervals from the right units, the file
checked when loaded, and `itnas tables --claims` writing and printing it first."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pandas as pd
import pytest

from itnas.cli import main
from itnas.errors import UserError
from itnas.power import t_quantile
from itnas.report import claims, inputs, tables
from itnas.report.stats import contrast_interval
from tests.report.test_tables import PUBLISHED, _search, _selection, _train

REPO = Path(__file__).resolve().parents[2]
CLAIMS = REPO / "config" / "paper" / "claims.yaml"


def _runs(root: Path, errors: dict[str, list[float]], random: dict[str, list[float]] | None = None,
          held_out: dict[str, tuple[float, ...]] | None = None, dataset: str = "cifar10") -> dict[str, list[str]]:
    """Searches (two seeds) and selections of every variant, trainings with the given errors."""
    search, select, train = [], [], []
    for v in inputs.VARIANTS:
        search += [_search(root, dataset, v, s, gpu_hours=0.6 + 0.1 * s, standin=False) for s in (0, 1)]
        select.append(_selection(root, dataset, v, 0, (held_out or {}).get(v, (9.0, 10.0))))
    for label, values in {**errors, **(random or {})}.items():
        train += [_train(root, dataset, label, s, e, standin=False) for s, e in enumerate(values)]
    return {"search": search, "select": select, "train": train}


def _table(runs: dict[str, list[str]]):
    return tables.build(PUBLISHED, runs["search"], runs["train"], runs["select"], tables=[], claims=CLAIMS)[0]


def _rows(table) -> dict[str, dict]:
    return {r["id"]: r for r in table.csv_rows}


CLEAR = {"itnas": [2.40, 2.42, 2.44, 2.46, 2.48], "DARTS_V1": [3.00, 3.02, 3.04, 2.98, 2.96],
         "DARTS_V2": [2.30, 2.32, 2.28, 2.31, 2.29], "darts": [2.9, 3.1, 3.0, 2.8, 3.2],
         "gumbel": [2.7, 3.1, 2.5, 3.3, 2.9], "gumbel_transition": [2.5, 2.6, 2.4, 2.5, 2.6]}


def test_a_clear_difference_holds_a_clear_reversal_is_reversed_and_an_overlap_is_undecided(tmp_path):
    rows = _rows(_table(_runs(tmp_path, CLEAR)))
    assert rows["itnas-beats-darts1-cifar10"]["verdict"] == "holds"  # 2.44 vs 3.00, tiny spread
    assert rows["itnas-beats-darts1-cifar10"]["high"] < 0
    assert rows["itnas-beats-darts2-cifar10"]["verdict"] == "reversed"  # DARTS_V2 clearly better here
    assert rows["itnas-beats-darts2-cifar10"]["low"] > 0
    gumbel = rows["gumbel-helps"]  # 2.9 +- 0.32 against 3.0 +- 0.16: the interval holds zero
    assert gumbel["verdict"].startswith("undecided") and gumbel["low"] < 0 < gumbel["high"]
    assert gumbel["to_decide"].startswith("≥ ") and gumbel["to_decide"].endswith("seeds per cell")


def test_the_interval_of_a_difference_is_welchs(tmp_path):
    rows = _rows(_table(_runs(tmp_path, CLEAR)))
    a, b = CLEAR["itnas"], CLEAR["DARTS_V1"]
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = t_quantile(0.975, df) * (va + vb) ** 0.5
    diff = statistics.fmean(a) - statistics.fmean(b)
    row = rows["itnas-beats-darts1-cifar10"]
    assert row["ours"] == pytest.approx(diff)
    assert (row["low"], row["high"]) == pytest.approx((diff - half, diff + half))
    assert row["paper_value"] == pytest.approx(2.45 - 3.00) and row["paper_source"] == "table1: ITNAS − DARTS (1st)"


def test_a_level_inside_its_margin_is_reproduced_and_one_outside_is_not(tmp_path):
    inside = _rows(_table(_runs(tmp_path / "in", CLEAR)))["itnas-error-cifar10"]
    assert inside["verdict"] == "reproduced" and 2.25 <= inside["low"] and inside["high"] <= 2.65
    outside = dict(CLEAR, itnas=[3.10, 3.12, 3.08, 3.11, 3.09])
    row = _rows(_table(_runs(tmp_path / "out", outside)))["itnas-error-cifar10"]
    assert row["verdict"] == "not reproduced" and row["low"] > 2.45 + 0.2
    wide = dict(CLEAR, itnas=[2.0, 3.0, 2.5, 2.2, 2.8])  # mean 2.5, but the interval reaches far beyond the margin
    row = _rows(_table(_runs(tmp_path / "wide", wide)))["itnas-error-cifar10"]
    assert row["verdict"] == "undecided" and row["to_decide"].startswith("≥ ")


def test_the_level_rule_and_the_ordering_rule_on_their_edges():
    assert claims.level_verdict(2.30, 2.60, 2.45, 0.2) == "reproduced"
    assert claims.level_verdict(2.20, 2.60, 2.45, 0.2) == "undecided"
    assert claims.level_verdict(2.70, 2.90, 2.45, 0.2) == "not reproduced"
    assert claims.level_verdict(0.01, 0.03, 0.3, 0.05, bound="upper") == "reproduced"  # a cost ceiling
    assert claims.level_verdict(0.40, 0.50, 0.3, 0.05, bound="upper") == "not reproduced"
    assert claims.ordering_verdict(-0.5, -0.1) == "holds"
    assert claims.ordering_verdict(0.1, 0.5) == "reversed"
    assert claims.ordering_verdict(-0.1, 0.1) == "undecided"


def test_one_seed_gives_no_interval_and_says_it_needs_two(tmp_path):
    one = {label: values[:1] for label, values in CLEAR.items()}
    rows = _rows(_table(_runs(tmp_path, one)))
    for key in ("itnas-error-cifar10", "itnas-beats-darts1-cifar10", "gumbel-helps"):
        assert rows[key]["verdict"] == "undecided" and rows[key]["to_decide"] == "needs ≥ 2 seeds", key
        assert rows[key]["low"] is None
    # a count needs no spread: 3.35 M (the fixture's) is decided from one seed, outside 4.0 +- 0.1
    assert rows["itnas-params-cifar10"]["verdict"] == "not reproduced"
    assert rows["itnas-params-cifar10"]["ours"] == pytest.approx(3.349342)


def test_searched_variants_are_also_compared_across_their_searches(tmp_path):
    held = {"darts": (9.0, 9.2), "gumbel": (8.0, 8.1), "gumbel_transition": (8.0, 8.2), "itnas": (8.0, 8.1)}
    rows = _rows(_table(_runs(tmp_path, CLEAR, held_out=held)))
    method = rows["gumbel-helps/searches"]
    assert method["scope"].startswith("methods (searches")
    assert method["ours"] == pytest.approx(8.05 - 9.1) and method["verdict"] == "holds"
    assert "itnas-beats-darts1-cifar10/searches" not in rows  # a published cell has no searches
    assert rows["itnas-error-cifar10"]["scope"] == "selected cell only (seeds)"
    # the search cost: one sample per search, a ceiling of 0.3 GPU-days (0.6 and 0.7 GPU-hours here)
    cost = rows["itnas-search-cost"]
    assert cost["ours"] == pytest.approx(0.65 / 24) and cost["verdict"] == "reproduced"


def test_searches_without_gpu_time_leave_the_search_cost_claim_not_run(tmp_path):
    runs = _runs(tmp_path, CLEAR)
    for path in runs["search"]:  # as a CPU search records it
        data = json.loads(Path(path).read_text())
        Path(path).write_text(json.dumps({**data, "gpu_hours": 0.0}))
    row = _rows(_table(runs))["itnas-search-cost"]
    assert row["verdict"] == "not run" and "no GPU time" in row["to_decide"]


def test_the_difference_of_differences_weights_each_cell(tmp_path):
    rows = _rows(_table(_runs(tmp_path, CLEAR)))
    m = {k: statistics.fmean(v) for k, v in CLEAR.items()}
    row = rows["transition-gain-exceeds-gumbel-gain"]
    assert row["ours"] == pytest.approx(m["gumbel_transition"] + m["darts"] - 2 * m["gumbel"])
    assert row["paper_value"] == pytest.approx(2.53 + 2.76 - 2 * 2.72)  # -0.15: a 0.19 gain against 0.04
    expected = contrast_interval([(1, CLEAR["gumbel_transition"]), (1, CLEAR["darts"]), (-2, CLEAR["gumbel"])])
    assert (row["low"], row["high"]) == pytest.approx(expected[1:])


def test_random_cells_use_the_hierarchical_bootstrap_and_random_search_is_not_run_until_it_exists(tmp_path):
    random = {"random0": [3.5, 3.7, 3.6, 3.5, 3.6], "random1": [3.3, 3.1, 3.2, 3.3, 3.2]}
    runs = _runs(tmp_path, CLEAR, random=random)
    rows = _rows(_table(runs))
    inp_diff = rows["itnas-beats-random-cells"]
    from itnas.report.stats import difference_to_random

    assert (inp_diff["ours"], inp_diff["low"], inp_diff["high"]) == pytest.approx(
        difference_to_random(CLEAR["itnas"], list(random.values())))
    assert inp_diff["verdict"] == "holds" and inp_diff["paper_value"] is None
    assert rows["itnas-beats-random-search"]["verdict"] == "not run"


def test_random_search_is_compared_when_inputs_has_the_row(tmp_path, monkeypatch):
    runs = _runs(tmp_path, {**CLEAR, "rs": [3.4, 3.5, 3.6, 3.5, 3.4]})
    monkeypatch.setattr(inputs.Inputs, "random_search", lambda self, bench: self.train_group(bench, "rs"),
                        raising=False)
    rows = _rows(_table(runs))
    assert rows["itnas-beats-random-search"]["verdict"] == "holds"


def test_a_missing_row_is_not_run_and_no_crash(tmp_path):
    rows = _rows(_table(_runs(tmp_path, {"itnas": [2.4, 2.5]})))
    assert rows["itnas-beats-darts1-cifar10"]["verdict"] == "not run"
    assert rows["itnas-beats-darts1-cifar10"]["to_decide"] == "train DARTS_V1 on CIFAR-10"
    assert rows["itnas-top1-imagenet"]["verdict"] == "not run"


def test_stand_in_runs_title_the_claims_table_as_stand_in(tmp_path):
    root = tmp_path / "standin"
    search = [_search(root, "synthetic-cifar10", v, s, 0.05, True) for v in inputs.VARIANTS for s in (0, 1)]
    train = [_train(root, "synthetic-cifar10", "itnas", s, 50.0 + s, True) for s in (0, 1)]
    table = tables.build(PUBLISHED, search, train, [], tables=[], claims=CLAIMS)[0]
    assert inputs.STANDIN_NOTE in table.title and table.title.startswith(claims.TITLE)


@pytest.mark.parametrize("edit, message", [
    ("claims: []", "expected a mapping with a non-empty list 'claims'"),
    ("claims:\n  - {id: a, text: t, kind: level, row: itnas, benchmark: cifar10, paper: table1, margin: 0}",
     "claims[0] (a).margin: expected a positive number"),
    ("claims:\n  - {id: a, text: t, kind: ordering, better: itnas, than: nope, benchmark: cifar10, paper: table1, margin: 1}",
     "claims[0] (a): row 'nope' is not one we train"),
    ("claims:\n  - {id: a, text: t, kind: level, row: gumbel, benchmark: cifar10, paper: table3, margin: 1}",
     "claims[0] (a).paper: table3 of the published numbers has no error for 'gumbel'"),
    ("claims:\n  - {id: a, text: t, kind: contrast, weights: {darts: 1, gumbel: 1}, benchmark: cifar10, paper: null, margin: 1}",
     "claims[0] (a).weights: must sum to 0"),
    ("claims:\n  - {id: a, text: t, kind: level, row: itnas, benchmark: mnist, paper: table1, margin: 1}",
     "claims[0] (a).benchmark: 'mnist'"),
    ("claims:\n  - {id: a, text: t, kind: level, row: itnas, benchmark: cifar10, paper: table1, margin: 1, typo: 1}",
     "claims[0].typo: unknown key"),
])
def test_a_bad_claims_file_is_a_one_line_error_naming_file_and_key(tmp_path, capsys, edit, message):
    bad = tmp_path / "claims.yaml"
    bad.write_text(edit + "\n")
    with pytest.raises(UserError, match=None) as err:
        tables.build(PUBLISHED, [], [], [], tables=[], claims=bad)
    assert str(bad) in str(err.value) and message in str(err.value), str(err.value)
    rc = main(["tables", "--published", str(PUBLISHED), "--out-dir", str(tmp_path / "t"), "--claims", str(bad)])
    captured = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(captured) == 1 and message in captured[0]


def test_the_shipped_claims_file_loads_and_covers_the_papers_claims():
    loaded = claims.load_claims(CLAIMS, tables.load_published(PUBLISHED))
    by_id = {c.id: c for c in loaded}
    assert by_id["itnas-error-cifar10"].paper_value == 2.45 and by_id["itnas-params-cifar10"].paper_value == 4.0
    assert by_id["itnas-top1-imagenet"].paper_value == 24.04 and by_id["itnas-search-cost"].paper_value == 0.3
    assert [by_id[k].paper_value for k in ("gumbel-helps", "transition-helps", "tiep-helps")] == \
        pytest.approx([-0.04, -0.19, -0.08])
    assert by_id["itnas-beats-darts1-svhn"].paper_value == pytest.approx(1.78 - 1.94)
    # margins differ per dataset: SVHN's errors are the smallest, CIFAR-100's the largest
    margin = {c.benchmark: c.margin for c in loaded if c.metric == "error"}
    assert margin["svhn"] < margin["cifar10"] < margin["cinic10"] < margin["cifar100"] < margin["imagenet"]


def test_the_command_writes_the_claims_table_first_and_prints_it(tmp_path, capsys):
    runs = _runs(tmp_path / "r", CLEAR)
    out = tmp_path / "tables"
    rc = main(["tables", "--published", str(PUBLISHED), "--out-dir", str(out), "--claims", str(CLAIMS),
               "--search", *runs["search"], "--select", *runs["select"], "--train", *runs["train"]])
    assert rc == 0
    log = capsys.readouterr().err
    for ext in ("md", "csv", "tex", "html"):
        assert (out / f"claims.{ext}").stat().st_size > 0
    md = (out / "claims.md").read_text()
    assert md.startswith(f"# {claims.TITLE}") and "| ITNAS beats DARTS (1st) on CIFAR-10 |" in md
    assert "| holds |" in md and md in log  # the verdicts in the terminal
    frame = pd.read_csv(out / "claims.csv")
    assert frame.loc[frame["id"] == "itnas-beats-darts1-cifar10", "verdict"].item() == "holds"
    assert (out / "claims.tex").read_text().isascii()
