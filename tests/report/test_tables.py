"""Tables 1-4 from fake run folders: published rows, mean ± std over seeds, loud missing seeds,
stand-in titles, and the four output formats as other tools read them (pandas for the CSV, a
LaTeX engine for the .tex where one is installed, an HTML parser)."""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from itnas.cli import main
from itnas.errors import UserError
from itnas.report import inputs, render, tables
from itnas.variants import search_of

REPO = Path(__file__).resolve().parents[2]
PUBLISHED = REPO / "config" / "paper" / "published.yaml"
# The searches the workflow runs: variants that search alike share one (itnas -> gumbel_transition).
SEARCHES = list(dict.fromkeys(search_of(v) for v in inputs.VARIANTS))


def _write(path: Path, obj: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return str(path)


def _search(root: Path, dataset: str, variant: str, seed: int, gpu_hours: float, standin: bool) -> str:
    return _write(root / "search" / dataset / variant / f"seed{seed}" / "metrics.json",
                  {"variant": variant, "seed": seed, "dataset": dataset, "standin": standin,
                   "gpu_hours": gpu_hours, "wall_clock_s": 3600 * gpu_hours})


def _train(root: Path, dataset: str, label: str, seed: int, err: float, standin: bool,
           macs: int = 528_000_000) -> str:
    return _write(root / "train" / dataset / label / f"seed{seed}" / "metrics.json",
                  {"test_top1_err": err, "test_top5_err": err / 3, "params": 3_349_342,
                   "params_with_aux": 3_980_000, "macs": macs, "dataset": dataset,
                   "standin": standin, "gpu_hours": 5.0})


def _selection(root: Path, dataset: str, variant: str, winner_seed: int, held_out=(9.0, 10.0)) -> str:
    path = root / "select" / dataset / variant / "selection.json"
    candidates = [{"genotype": f"{variant}-seed{k}", "valid_top1_err": e} for k, e in enumerate(held_out)]
    return _write(path, {"label": variant, "winner": {"genotype": f"{variant}-seed{winner_seed}", "accuracy": 90.0},
                         "candidates": candidates, "winner_search_seed": winner_seed})


@pytest.fixture
def runs(tmp_path):
    """Two search seeds per variant on CIFAR-10; trainings on all five benchmarks."""
    root = tmp_path / "results"
    ds = {"cifar10": "cifar10", "cifar100": "cifar100", "cinic10": "cinic10", "svhn": "svhn",
          "imagenet": "imagenet"}
    search, train, select = [], [], []
    for v in SEARCHES:
        for s in (0, 1):
            search.append(_search(root, "cifar10", v, s, gpu_hours=7.2 + s, standin=False))
    for v in inputs.VARIANTS:
        select.append(_selection(root, "cifar10", v, 1))
    errs = {"darts": [2.9, 3.1], "gumbel": [2.8, 2.7], "gumbel_transition": [2.6, 2.5],
            "itnas": [2.4, 2.5], "DARTS_V1": [3.0, 3.1], "DARTS_V2": [2.8, 2.7]}
    for label, values in errs.items():
        for s, e in enumerate(values):
            train.append(_train(root, "cifar10", label, s, e, standin=False))
    for bench in ("cifar100", "cinic10", "svhn"):
        for label in ("itnas", "DARTS_V2"):
            for s in (0, 1):
                train.append(_train(root, ds[bench], label, s, 10.0 + s, standin=False))
    train.append(_train(root, "imagenet", "itnas", 0, 24.5, standin=False))
    return {"root": root, "search": search, "train": train, "select": select}


def _by_name(table: render.Table) -> dict[str, list[str]]:
    return {row[0]: row for row in table.rows}


def test_every_published_row_of_the_paper_is_in_config():
    pub = tables.load_published(PUBLISHED)
    assert len(pub["table1"]["rows"]) == 18
    assert len(pub["table2"]["rows"]) == 5  # the ablation, and DARTS in its own setting (optional)
    assert len(pub["table3"]["rows"]) == 22
    assert len(pub["table4"]["rows"]) == 9
    itnas = {t: next(r for r in pub[t]["rows"] if r["name"] == "ITNAS") for t in ("table1", "table3", "table4")}
    assert (itnas["table1"]["error"], itnas["table1"]["params_m"], itnas["table1"]["cost_gpu_days"]) == (2.45, 4.0, 0.30)
    assert (itnas["table3"]["top1"], itnas["table3"]["top5"], itnas["table3"]["flops_m"]) == (24.04, 7.29, 627)
    assert (itnas["table4"]["cinic10"], itnas["table4"]["cifar100"], itnas["table4"]["svhn"]) == (6.72, 15.5, 1.78)
    ablation = {r["variant"]: r["error"] for r in pub["table2"]["rows"]}
    assert ablation == {"darts": 2.76, "darts_2nd": 2.76, "gumbel": 2.72, "gumbel_transition": 2.53, "itnas": 2.45}


def test_reproduced_rows_are_mean_and_sample_std_over_seeds_with_the_difference_to_the_paper(runs):
    t1, t2, t3, t4 = tables.build(PUBLISHED, runs["search"], runs["train"], runs["select"])
    row = _by_name(t1)["ITNAS (our search)"]
    mean, std = statistics.fmean([2.4, 2.5]), statistics.stdev([2.4, 2.5])
    assert row[2] == f"{mean:.2f} ± {std:.2f}"
    assert row[3] == "2"
    assert row[4] == "3.35" and row[5] == "528"  # params (M), MACs (M)
    assert row[6] == f"{(7.2 + 8.2) / 2 / 24:.3f}"  # mean GPU-days of one search
    assert row[7].startswith("2.45") and row[8] == f"{mean - 2.45:+.2f}"
    assert _by_name(t1)["DARTS_V2 (published cell, retrained)"][7].startswith("2.76")
    assert "NASNet-A" in _by_name(t1)  # published rows stay
    assert "STAND-IN" not in t1.title

    abl = {row[0]: row for row in t2.rows}
    gumbel = abl["Gumbel only (gumbel)"]
    assert gumbel[5] == "2.72" and gumbel[7] == "2" and gumbel[-1] == "1"
    assert abl["DARTS (darts)"][5] == "2.76"

    imagenet = _by_name(t3)["ITNAS (our search)"]
    assert imagenet[2] == "24.50" and imagenet[4] == "1" and imagenet[-1] == "+0.46"

    transfer = _by_name(t4)["DARTS_V2 (published cell, retrained)"]
    assert transfer[2:5] == [f"10.50 ± {statistics.stdev([10, 11]):.2f}"] * 3
    assert transfer[-3] == f"{10.5 - 6.88:+.2f}"


def test_a_missing_seed_fails_loudly_naming_the_file(runs):
    missing = Path(runs["train"][1])  # darts, seed 1 on cifar10
    missing.unlink()
    with pytest.raises(UserError, match=rf"missing seed 1 .*{missing}"):
        tables.build(PUBLISHED, runs["search"], runs["train"], runs["select"])
    # Left out of the list entirely: the other rows' seeds still reveal the gap.
    train = [p for p in runs["train"] if Path(p) != missing]
    with pytest.raises(UserError, match=rf"missing seed 1 of train cifar10/darts: {missing} does not exist"):
        tables.build(PUBLISHED, runs["search"], train, runs["select"])


def test_a_run_without_the_error_metric_is_refused(runs):
    path = Path(runs["train"][0])
    path.write_text(json.dumps({"params": 1}))
    with pytest.raises(UserError, match="test_top1_err"):
        tables.build(PUBLISHED, runs["search"], runs["train"], runs["select"])


def test_stand_in_runs_are_labelled_in_every_title(tmp_path):
    root = tmp_path / "results"
    search = [_search(root, "synthetic-cifar10", "gumbel_transition", s, 0.0, True) for s in (0, 1)]
    train = [_train(root, f"synthetic-{b}", "itnas", s, 50.0, True)
             for b in ("cifar10", "cifar100", "cinic10", "svhn", "imagenet") for s in (0, 1)]
    built = tables.build(PUBLISHED, search, train, [])
    assert [t.name for t in built] == ["table1", "table2", "table3", "table4"]
    for table in built:
        assert inputs.STANDIN_NOTE in table.title, table.name
    assert "CIFAR-10 → synthetic-cifar10" in built[0].title
    row = _by_name(built[0])["ITNAS (our search)"]
    assert row[2] == "50.00 ± 0.00"


def test_variants_not_run_say_so_in_the_ablation(runs):
    train = [p for p in runs["train"] if "/gumbel/" not in p]
    search = [p for p in runs["search"] if "/gumbel/" not in p]
    t2 = tables.build(PUBLISHED, search, train, [], tables=["table2"])[0]
    assert {row[0]: row for row in t2.rows}["Gumbel only (gumbel)"][6] == "not run"


def test_variants_that_search_alike_show_one_shared_search_counted_once(runs):
    t1, t2 = tables.build(PUBLISHED, runs["search"], runs["train"], runs["select"], tables=["table1", "table2"])
    abl = {row[0]: row for row in t2.rows}
    col = t2.headers.index("Search")
    assert abl["Gumbel + Transition + TIEP (ITNAS) (itnas)"][col] == "gumbel_transition (shared with gumbel_transition)"
    assert abl["Gumbel + Transition (gumbel_transition)"][col] == "gumbel_transition (shared with itnas)"
    assert abl["Gumbel only (gumbel)"][col] == "gumbel"
    # Table 1's search cost stays per variant: both rows cost those same searches
    cost = t1.headers.index("Search cost (GPU-days)")
    assert _by_name(t1)["ITNAS (our search)"][cost] == _by_name(t1)["Gumbel + Transition (our search)"][cost]
    # every search counted once: 4 searches of 5 variants, each 7.2 + 8.2 GPU-hours over its seeds
    assert len(SEARCHES) == len(inputs.VARIANTS) - 1
    assert f"{4 * (7.2 + 8.2) / 24:.3f} GPU-days" in " ".join(t2.notes)


@pytest.mark.parametrize("by_method", [True, False])
def test_a_shared_search_s_stability_is_shown_per_derivation_rule(tmp_path, by_method):
    """itnas reads TIEP's stability from gumbel_transition's searches, never the top-2 rule's; a
    search that recorded only its own rule (before genotype_stability_by_method) gives it '—'."""
    root = tmp_path / "results"
    own = {"1": {"edges": 1, "ops": 2}}
    tiep = [{"1": {"edges": 3, "ops": 0}}, {"1": {"edges": 4, "ops": 1}}]
    search = [_write(root / "search" / "cifar10" / "gumbel_transition" / f"seed{s}" / "metrics.json",
                     {"variant": "gumbel_transition", "seed": s, "method": "darts", "gpu_hours": 1.0,
                      "genotype_stability": own,
                      **({"genotype_stability_by_method": {"darts": own, "tiep": tiep[s]}} if by_method else {})})
              for s in (0, 1)]
    train = [_train(root, "cifar10", v, s, 2.5, standin=False) for v in ("gumbel_transition", "itnas") for s in (0, 1)]
    t2 = tables.build(PUBLISHED, search, train, [], tables=["table2"])[0]
    abl = {row[0]: row for row in t2.rows}
    col = t2.headers.index("Cell changes with τ (edges/ops)")
    assert abl["Gumbel + Transition (gumbel_transition)"][col] == "1: 1/2"
    assert abl["Gumbel + Transition + TIEP (ITNAS) (itnas)"][col] == ("1: 3.5/0.5" if by_method else "—")


def test_table2_shows_the_search_seed_the_selection_recorded_and_nothing_else(runs):
    abl = tables.build(PUBLISHED, runs["search"], runs["train"], runs["select"], tables=["table2"])[0]
    col = abl.headers.index("Selected seed")
    assert {row[0]: row[col] for row in abl.rows}["Gumbel only (gumbel)"] == "1"
    path = Path(next(p for p in runs["select"] if "/gumbel/" in p))
    data = json.loads(path.read_text())
    del data["winner_search_seed"]  # the winner's name still says seed1, but it is not the record
    path.write_text(json.dumps(data))
    abl = tables.build(PUBLISHED, runs["search"], runs["train"], runs["select"], tables=["table2"])[0]
    assert {row[0]: row[col] for row in abl.rows}["Gumbel only (gumbel)"] == "—"


def test_a_selection_filed_under_another_label_is_refused(runs):
    path = Path(next(p for p in runs["select"] if "/gumbel/" in p))
    path.write_text(json.dumps({**json.loads(path.read_text()), "label": "darts"}))
    with pytest.raises(UserError, match="records label 'darts' but sits in the folder of selection cifar10/gumbel"):
        tables.build(PUBLISHED, runs["search"], runs["train"], runs["select"])


def test_the_command_writes_markdown_csv_latex_and_html(runs, tmp_path):
    out = tmp_path / "tables"
    rc = main(["tables", "--published", str(PUBLISHED), "--out-dir", str(out),
               "--search", *runs["search"], "--select", *runs["select"], "--train", *runs["train"]])
    assert rc == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"table{i}.{ext}" for i in range(1, 5) for ext in ("md", "csv", "tex", "html"))
    md = (out / "table1.md").read_text()
    assert md.startswith("# Table 1") and "| ITNAS (our search) | reproduced |" in md
    tex = (out / "table3.tex").read_text()
    assert "\\begin{tabular}" in tex and "$\\pm$" not in tex.split("ITNAS (our search)")[0].split("\\midrule")[0]
    assert "24.04" in tex and "\\bottomrule" in tex
    assert "<table>" in (out / "table4.html").read_text()
    for n in range(1, 5):  # plain ASCII: pdflatex takes it without inputenc tricks
        assert (out / f"table{n}.tex").read_text().isascii(), n


def _written(runs, tmp_path, standin: bool = False) -> tuple[Path, list[render.Table]]:
    if standin:
        root = tmp_path / "standin"
        search = [_search(root, "synthetic-cifar10", v, s, 0.05, True) for v in SEARCHES for s in (0, 1)]
        train = [_train(root, f"synthetic-{b}", "itnas", s, 50.0, True, macs=183_000)
                 for b in ("cifar10", "cifar100", "cinic10", "svhn", "imagenet") for s in (0, 1)]
        built = tables.build(PUBLISHED, search, train, [])
    else:
        built = tables.build(PUBLISHED, runs["search"], runs["train"], runs["select"])
    out = tmp_path / ("standin-tables" if standin else "tables")
    tables.write(built, out)
    return out, built


@pytest.mark.parametrize("standin", [False, True])
def test_the_csv_is_plain_csv_that_pandas_reads_without_options(runs, tmp_path, standin):
    out, built = _written(runs, tmp_path, standin)
    for table in built:
        frame = pd.read_csv(out / f"{table.name}.csv")
        assert list(frame.columns) == table.csv_fields, table.name
        assert len(frame) == len(table.csv_rows)
    if not standin:
        t2 = pd.read_csv(out / "table2.csv").set_index("variant")
        assert t2.loc["itnas", "error_mean"] == pytest.approx(2.45) and t2.loc["itnas", "n_seeds"] == 2
        assert t2.loc["itnas", "diff"] == pytest.approx(0.0, abs=1e-9)


class _Cells(HTMLParser):
    """The text of every table cell (per row) and the <code> spans of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.code: list[str] = []
        self._open: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self._open.add(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")
        elif tag == "code":
            self.code.append("")

    def handle_endtag(self, tag):
        self._open.discard(tag)

    def handle_data(self, data):
        if self._open & {"td", "th"}:
            self.rows[-1][-1] += data
        if "code" in self._open:
            self.code[-1] += data


@pytest.mark.parametrize("standin", [False, True])
def test_the_html_parses_has_no_markdown_and_every_numeric_column_has_one_format(runs, tmp_path, standin):
    out, built = _written(runs, tmp_path, standin)
    for table in built:
        page = _Cells()
        page.feed((out / f"{table.name}.html").read_text())
        header, *rows = page.rows
        assert header == table.headers and len(rows) == len(table.rows), table.name
        assert all(len(row) == len(header) for row in rows)
        assert "`" not in (out / f"{table.name}.html").read_text(), table.name
        for k, name in enumerate(header):
            numbers = [row[k] for row in rows if re.fullmatch(r"[+-]?\d+(\.\d+)?( ± \d+(\.\d+)?)?", row[k])]
            decimals = {len(n.split(" ")[0].partition(".")[2]) for n in numbers}
            assert len(decimals) <= 1, f"{table.name} column {name!r}: {sorted(set(numbers))[:6]}"


def test_a_tiny_stand_in_network_shows_its_macs_and_search_cost_not_zero(runs, tmp_path):
    _, built = _written(runs, tmp_path, standin=True)
    t1, _, t3, _ = built
    flops = {row[0]: row for row in t3.text_rows()}["ITNAS (our search)"][6]
    assert flops == "0.18", flops  # 183,000 MACs in millions, two significant digits
    cost = {row[0]: row for row in t1.text_rows()}["ITNAS (our search)"][6]
    assert float(cost) > 0, cost


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="no TeX engine (pdflatex) on this machine: the .tex files are not compiled "
                           "(.ci/run installs none)")
@pytest.mark.parametrize("standin", [False, True])
def test_the_latex_compiles_with_the_packages_its_header_names(runs, tmp_path, standin):
    out, built = _written(runs, tmp_path, standin)
    header = (out / "table1.tex").read_text().splitlines()[0]
    packages = re.findall(r"\\usepackage\{[^}]+\}", header)
    assert packages, header
    body = "\n".join(f"\\input{{{t.name}.tex}}\\clearpage" for t in built)
    (out / "all.tex").write_text("\\documentclass{article}\n" + "\n".join(packages)
                                 + f"\n\\begin{{document}}\n{body}\n\\end{{document}}\n")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "all.tex"], cwd=out,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:]
    for table in built:
        assert "`" not in (out / f"{table.name}.tex").read_text(), table.name


def test_a_missing_file_is_a_one_line_error_from_the_command(runs, tmp_path, capsys):
    Path(runs["search"][0]).unlink()
    rc = main(["tables", "--published", str(PUBLISHED), "--out-dir", str(tmp_path / "t"),
               "--search", *runs["search"], "--train", *runs["train"]])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "missing seed 0 of search cifar10/darts" in err


def test_paths_outside_the_workflow_layout_are_refused(tmp_path):
    bad = _write(tmp_path / "metrics.json", {"test_top1_err": 1})
    with pytest.raises(UserError, match="not a run file of the workflow layout"):
        tables.build(PUBLISHED, [], [bad], [])


RANDOM = {"random0": [3.5, 3.7], "random1": [3.3, 3.1]}


@pytest.fixture
def with_random(runs):
    """Two random cells trained on CIFAR-10 with the same two seeds."""
    for label, values in RANDOM.items():
        for s, e in enumerate(values):
            runs["train"].append(_train(runs["root"], "cifar10", label, s, e, standin=False))
    return runs


def test_random_cells_are_one_row_and_every_row_gets_its_difference_to_them(with_random, tmp_path):
    from itnas.report.stats import difference_to_random

    t1, t2 = tables.build(PUBLISHED, with_random["search"], with_random["train"], with_random["select"],
                          tables=["table1", "table2"])
    rows = _by_name(t1)
    assert not any(name.startswith("random") for name in rows)
    everything = [e for values in RANDOM.values() for e in values]
    random_row = rows[inputs.RANDOM_NAME]
    assert random_row[2] == f"{statistics.fmean(everything):.2f} ± {statistics.stdev(everything):.2f}"
    assert random_row[3] == "2 × 2"  # cells x seeds
    diff, low, high = difference_to_random([2.4, 2.5], list(RANDOM.values()))
    assert diff == pytest.approx(statistics.fmean([2.4, 2.5]) - statistics.fmean(everything))
    assert low <= diff <= high < 0
    assert rows["ITNAS (our search)"][-1] == f"{diff:+.2f} [{low:+.2f}, {high:+.2f}]"
    abl = {row[0]: row for row in t2.rows}
    assert abl["Gumbel + Transition + TIEP (ITNAS) (itnas)"][9] == rows["ITNAS (our search)"][-1]
    assert inputs.RANDOM_NAME in abl
    # the searched cells' spread from the selection's candidates (9 and 10 % held-out error)
    assert abl["Gumbel only (gumbel)"][10] == f"9.50 ± {statistics.stdev([9, 10]):.2f} (9.00–10.00, 2)"
    out = tmp_path / "t"
    tables.write([t1, t2], out)
    frame = pd.read_csv(out / "table1.csv")
    itnas = frame[frame["label"] == "itnas"].iloc[0]
    assert itnas["diff_random"] == pytest.approx(diff) and itnas["diff_random_low"] == pytest.approx(low)


def test_the_random_search_row_trains_the_winner_of_its_selection(with_random, tmp_path):
    """Random search under the same selection: the selection over random0/random1 picks random1,
    and the row's numbers are random1's trainings (3.3, 3.1), not random0's nor all cells'."""
    path = _write(with_random["root"] / "select" / "cifar10" / "random_search" / "selection.json",
                  {"label": "random_search", "winner": {"genotype": "random1", "valid_top1_err": 15.0},
                   "candidates": [{"genotype": "random0", "valid_top1_err": 20.0},
                                  {"genotype": "random1", "valid_top1_err": 15.0}]})
    t1, t2 = tables.build(PUBLISHED, with_random["search"], with_random["train"], with_random["select"] + [path],
                          tables=["table1", "table2"])
    name = "Random search (best of 2, same selection)"
    row = _by_name(t1)[name]
    assert row[2] == f"{statistics.fmean([3.3, 3.1]):.2f} ± {statistics.stdev([3.3, 3.1]):.2f}" and row[3] == "2"
    assert _by_name(t1)[inputs.RANDOM_NAME][3] == "2 × 2"  # the random cells' row is unchanged
    abl = _by_name(t2)[name]
    assert abl[t2.headers.index("Our error (%)")] == row[2]
    assert abl[t2.headers.index("Selected seed")] == "random1" and abl[t2.headers.index("Searches")] == "2"
    assert abl[t2.headers.index("Searched cells, held-out error (%)")].startswith("17.50 ± ")
    inp_group = tables.Inputs(tables.load_published(PUBLISHED), {}, tables.load_runs(with_random["train"], "train"),
                              tables.load_selections([path]), {"cifar10": "cifar10"}).random_search("cifar10")
    assert inp_group.label == "random1" and inp_group.values("test_top1_err") == [3.3, 3.1]
    # without the selection, no row: the random cells alone are not a random search
    t1 = tables.build(PUBLISHED, with_random["search"], with_random["train"], with_random["select"], tables=["table1"])[0]
    assert name not in _by_name(t1)


def test_the_bootstrap_interval_is_exact_without_spread_and_covers_zero_between_equals():
    from itnas.report.stats import difference_to_random

    assert difference_to_random([2.0, 2.0], [[3.0, 3.0], [3.0, 3.0]]) == (-1.0, -1.0, -1.0)
    same = difference_to_random([1.0, 2.0, 3.0, 2.0], [[2.0, 1.0], [3.0, 2.0]])
    assert same[0] == pytest.approx(0.0) and same[1] < 0 < same[2]
    assert difference_to_random([1.0, 2.0], [[3.0, 5.0]]) == difference_to_random([1.0, 2.0], [[3.0, 5.0]])
    # the random cells' spread between cells widens the interval (cells are resampled first)
    narrow = difference_to_random([2.0, 2.1], [[3.0, 3.1], [3.0, 3.1]])
    wide = difference_to_random([2.0, 2.1], [[2.0, 2.1], [4.0, 4.1]])
    assert wide[2] - wide[1] > 5 * (narrow[2] - narrow[1])


def test_every_difference_column_says_which_sign_is_better(runs):
    for table in tables.build(PUBLISHED, runs["search"], runs["train"], runs["select"]):
        deltas = [h for h in table.headers if "Δ" in h]
        assert deltas, table.name
        for header in deltas:
            assert "(− = " in header or "; − = " in header, (table.name, header)
