"""The smoke DAG end to end (one shared run, see conftest.smoke_run): tables with the expected
rows, figures, the report, one MLflow run per job, and toggles that add paths and rerun nothing
else."""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.workflow.conftest import BIN, REPO, SMOKE, planned_jobs, snakemake

pytestmark = pytest.mark.slow

VARIANTS = ["darts", "gumbel", "gumbel_transition", "itnas"]
SEARCHES = ["darts", "gumbel", "gumbel_transition"]  # itnas derives its cells from gumbel_transition's searches
STANDIN = "STAND-IN DATA — not comparable to the paper"


def _csv(path):
    """The header fields and rows of a table's CSV."""
    with open(path, encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


def test_every_table_is_written_in_every_format_and_says_stand_in(smoke_run):
    tables = smoke_run.results / "tables"
    for n in range(1, 5):
        for ext in ("md", "csv", "tex", "html"):
            assert (tables / f"table{n}.{ext}").stat().st_size > 0
        md = (tables / f"table{n}.md").read_text()
        assert md.startswith(f"# Table {n}") and STANDIN in md.splitlines()[0]
        assert STANDIN in (tables / f"table{n}.html").read_text()
        assert pd.read_csv(tables / f"table{n}.csv").columns[0] in ("architecture", "variant")


def test_the_claims_table_is_written_titled_stand_in_with_a_verdict_per_claim(smoke_run):
    tables = smoke_run.results / "tables"
    for ext in ("md", "csv", "tex", "html"):
        assert (tables / f"claims.{ext}").stat().st_size > 0
    md = (tables / "claims.md").read_text()
    assert md.startswith("# Claims") and STANDIN in md.splitlines()[0]
    _, rows = _csv(tables / "claims.csv")
    verdicts = {r["id"]: r["verdict"] for r in rows}
    assert verdicts["itnas-top1-imagenet"] != "not run" and verdicts["itnas-beats-darts2-cifar10"] != "not run"
    known = ("reproduced", "not reproduced", "holds", "reversed", "undecided", "not run")
    assert all(v.split(" (")[0] in known for v in verdicts.values()), verdicts
    assert "the claims' verdicts" in (smoke_run.results / "logs" / "tables.log").read_text()  # LOGS/tables.log


def test_table1_holds_every_cifar10_genotype_over_two_seeds(smoke_run):
    _, rows = _csv(smoke_run.results / "tables" / "table1.csv")
    ours = {r["label"]: r for r in rows if r["source"] == "reproduced"}
    assert set(ours) == set(VARIANTS) | {"DARTS_V1", "DARTS_V2", "random", "random_search"}  # 2 random cells: one row
    for label, row in ours.items():
        assert row["n_seeds"] == ("4" if label == "random" else "2") and row["seeds"] == "0 1", label
        assert row["dataset"] == "synthetic-cifar10"
        assert 0 <= float(row["error_mean"]) <= 100 and float(row["params_m"]) > 0
        assert float(row["macs_m"]) > 0
    assert ours["itnas"]["paper_error"] == "2.45" and ours["DARTS_V2"]["paper_row"] == "DARTS (2nd)"
    assert ours["itnas"]["search_gpu_days"] != ""
    assert ours["random"]["n_seeds"] == "4" and ours["random"]["diff_random"] == ""  # 2 cells x 2 seeds
    assert all(ours[v]["diff_random"] != "" for v in VARIANTS)
    assert len([r for r in rows if r["source"] == "paper"]) == 18


def test_table2_is_the_ablation_over_the_four_variants(smoke_run):
    _, rows = _csv(smoke_run.results / "tables" / "table2.csv")
    assert [r["variant"] for r in rows] == [*VARIANTS, "random_search", "random"]  # darts_2nd not searched: no row
    best = rows[-2]  # random search: the best of 2 random cells (2 search seeds) by the same selection
    assert best["n_searches"] == "2" and best["n_searched"] == "2" and best["selected_seed"] in ("random0", "random1")
    winner = json.loads((smoke_run.results / "select" / "synthetic-cifar10" / "random_search" / "selection.json").read_text())
    assert winner["winner"]["genotype"] == best["selected_seed"]
    _, t1 = _csv(smoke_run.results / "tables" / "table1.csv")
    trained = [json.loads((smoke_run.results / "train" / "synthetic-cifar10" / best["selected_seed"] / f"seed{s}" /
                           "metrics.json").read_text())["test_top1_err"] for s in (0, 1)]
    assert float(best["error_mean"]) == pytest.approx(sum(trained) / 2)
    assert [float(r["error_mean"]) for r in t1 if r["label"] == "random_search"] == [pytest.approx(sum(trained) / 2)]
    rows = rows[:-2]
    assert [r["paper_error"] for r in rows] == ["2.76", "2.72", "2.53", "2.45"]
    for row in rows:
        assert row["n_seeds"] == "2" and row["n_searches"] == "2" and row["n_searched"] == "2"
        assert row["selected_seed"] in ("0", "1") and row["setting"] == "1st order, 7 ops"
        assert row["diff_random"] != ""
        # a search records its stability for every rule: itnas's TIEP figures come from the shared search
        assert row["tau_changes"].startswith("0.5: ")
    search = {r["variant"]: (r["search"], r["shares_search_with"]) for r in rows}
    assert search["itnas"] == ("gumbel_transition", "gumbel_transition")
    assert search["gumbel_transition"] == ("gumbel_transition", "itnas") and search["darts"] == ("darts", "")


def test_tables_3_and_4_hold_the_transferred_cells(smoke_run):
    _, t3 = _csv(smoke_run.results / "tables" / "table3.csv")
    ours3 = {r["label"]: r for r in t3 if r["source"] == "reproduced"}
    assert set(ours3) == {"itnas"}
    assert ours3["itnas"]["n_seeds"] == "2" and ours3["itnas"]["paper_top1"] == "24.04"
    _, t4 = _csv(smoke_run.results / "tables" / "table4.csv")
    ours4 = {r["label"]: r for r in t4 if r["source"] == "reproduced"}
    assert set(ours4) == {"itnas"}
    for bench in ("cinic10", "cifar100", "svhn"):
        assert ours4["itnas"][f"{bench}_n"] == "2" and ours4["itnas"][f"{bench}_mean"] != ""


def test_figures_and_the_report_are_made(smoke_run):
    figures = smoke_run.results / "figures" / "synthetic-cifar10"
    for kind, names in (("cell", VARIANTS), ("search", SEARCHES)):
        for name in names:
            assert (figures / f"{kind}_{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (figures / "search_itnas.png").exists()
    report = smoke_run.results / "report.html"
    assert report.stat().st_size > 10_000


def _report_variable(html: str, name: str):
    """A JSON value the Snakemake report embeds as `var NAME = {...}`."""
    for m in re.finditer(rf"var {name} =\s*", html):
        if html[m.end()] == "{":
            return json.JSONDecoder().raw_decode(html, m.end())[0]
    raise AssertionError(f"the report embeds no {name}")


def test_the_report_holds_the_tables_first_then_cells_and_curves_each_with_its_caption(smoke_run):
    html = (smoke_run.results / "report.html").read_text()
    categories, results = _report_variable(html, "categories"), _report_variable(html, "results")
    assert sorted(categories) == ["1. Claims: verdicts", "2. Tables 1-4", "3. Searched cells",
                                  "4. Search curves"]  # the menu's order: the verdicts first
    files = {name: sorted(path for paths in sub.values() for path in paths) for name, sub in categories.items()}
    assert [Path(p).name for p in files["1. Claims: verdicts"]] == ["claims.html"]
    claims = results[files["1. Claims: verdicts"][0]]
    assert "results/smoke/tables/claims.md" in claims["caption"]
    page = base64.b64decode(claims["data_uri"].split(",", 1)[1]).decode()
    assert STANDIN in page and "undecided" in page
    assert [Path(p).name for p in files["2. Tables 1-4"]] == [f"table{n}.html" for n in range(1, 5)]
    assert [Path(p).name for p in files["3. Searched cells"]] == sorted(f"cell_{v}.png" for v in VARIANTS)
    assert [Path(p).name for p in files["4. Search curves"]] == sorted(f"search_{s}.png" for s in SEARCHES)
    for n, path in enumerate(files["2. Tables 1-4"], 1):
        entry = results[path]
        assert f"results/smoke/tables/table{n}.md" in entry["caption"], entry["caption"]  # its own folder
        page = base64.b64decode(entry["data_uri"].split(",", 1)[1]).decode()
        assert page.count("<tr") >= 5 and STANDIN in page and "`" not in page
    for path in files["3. Searched cells"] + files["4. Search curves"]:
        assert base64.b64decode(results[path]["data_uri"].split(",", 1)[1])[:4] == b"\x89PNG"


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="no headless browser (chromium) on this machine; .ci/run installs none")
def test_a_browser_renders_the_report_menu_with_the_tables_first(smoke_run, tmp_path):
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--virtual-time-budget=5000", "--dump-dom",
                          (smoke_run.results / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    shown = [dom.find(name) for name in ("1. Claims: verdicts", "2. Tables 1-4", "3. Searched cells",
                                         "4. Search curves")]
    assert -1 not in shown and shown == sorted(shown), shown


def test_every_search_and_training_job_is_an_mlflow_run(smoke_run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{smoke_run.results / 'mlflow.db'}")
    exp = client.get_experiment_by_name("itnas-smoke")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    by_rule: dict[str, list] = {}
    for r in runs:
        by_rule.setdefault(r.data.tags.get("rule"), []).append(r)
    assert len(by_rule.get("search", [])) == 6  # 3 search settings x 2 seeds
    assert len(by_rule.get("train", [])) == 22  # 18 and 2 random cells x 2 seeds
    assert len(by_rule.get("train_imagenet", [])) == 2
    labels = sorted(r.data.tags.get("variant", r.data.tags.get("label")) for r in by_rule["train"])
    assert labels.count("itnas") == 8 and labels.count("DARTS_V2") == 2 and labels.count("darts") == 2
    search = by_rule["search"][0]
    assert {"stage", "dataset", "benchmark", "variant", "seed", "git_commit", "genotype_hash"} <= set(search.data.tags)
    assert search.data.params.get("epochs") == "2"
    assert len(client.get_metric_history(search.info.run_id, "val_acc")) == 2
    assert all(r.info.status == "FINISHED" for r in runs)


def test_mlflow_runs_are_named_for_people_and_selections_nest_their_candidates(smoke_run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{smoke_run.results / 'mlflow.db'}")
    exp = client.get_experiment_by_name("itnas-smoke")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    names = [r.info.run_name for r in runs]
    assert not [n for n in names if "/" in n or ".json" in n], "a run named by a file path"
    assert len(set(names)) == len(names), "two runs share a name"
    assert "search gumbel_transition seed0 synthetic-cifar10" in names
    assert "train itnas-selected synthetic-cifar100 seed1" in names
    assert "train DARTS_V2 synthetic-cifar10 seed0" in names
    parents = {r.info.run_id: r for r in runs if r.info.run_name.startswith("select ") and
               "mlflow.parentRunId" not in r.data.tags}
    assert sorted(r.info.run_name for r in parents.values()) == sorted(
        f"select {v} synthetic-cifar10" for v in VARIANTS + ["random_search"])
    for parent in (p for p in parents.values() if "random_search" not in p.info.run_name):
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert children and {r.data.tags["search_seed"] for r in children} <= {"0", "1", "0,1"}
        assert [r.data.tags["winner"] for r in children].count("true") == 1
        assert parent.data.tags["winner"] in {r.data.tags["candidate"] for r in children}
    for variant in VARIANTS:  # genotype files and metrics carry the label, not a path
        selected = json.loads((smoke_run.results / "select" / "synthetic-cifar10" / variant / "genotype.json").read_text())
        assert selected["name"] == f"{variant}-selected"
        trained = json.loads((smoke_run.results / "train" / "synthetic-cifar10" / variant / "seed0" / "metrics.json").read_text())
        assert trained["genotype"] == f"{variant}-selected"
    # The comparison README.md shows: one row per trained cell and benchmark.
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{smoke_run.results / 'mlflow.db'}")
    trainings = mlflow.search_runs(experiment_names=["itnas-smoke"], filter_string="tags.stage = 'train'")
    table = trainings.groupby(["tags.benchmark", "tags.label"])["metrics.test_top1_err"].agg(["mean", "count"])
    assert table.loc[("cifar10", "itnas"), "count"] == 2 and table.loc[("imagenet", "itnas"), "count"] == 2


def test_a_second_run_has_nothing_to_do(smoke_run):
    assert planned_jobs(smoke_run.workdir, "--configfile", SMOKE) == {}


def test_tracking_settings_never_rerun_a_job(smoke_run):
    def no_tracking(cfg):
        cfg["tracking"]["enabled"] = False

    overlay = _overlay(smoke_run, "untracked.yaml", no_tracking)
    assert planned_jobs(smoke_run.workdir, "--configfile", overlay) == {}
    server = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    assert planned_jobs(smoke_run.workdir, "--configfile", SMOKE, extra_env=server) == {}


def _overlay(smoke_run, name: str, edit) -> str:
    cfg = yaml.safe_load((smoke_run.workdir / SMOKE).read_text())
    edit(cfg)
    (smoke_run.workdir / "config" / name).write_text(yaml.safe_dump(cfg))
    return f"config/{name}"


def test_adding_a_training_seed_adds_only_its_trainings_and_the_tables(smoke_run):
    def add_seed(cfg):
        cfg["evaluate"]["cifar10"]["seeds"] = [0, 1, 2]

    overlay = _overlay(smoke_run, "more-seeds.yaml", add_seed)
    # a third seed for the 6 cells and the 2 random cells on CIFAR-10
    assert planned_jobs(smoke_run.workdir, "--configfile", overlay) == {"train": 8, "tables": 1, "all": 1}
    printed = snakemake(smoke_run.workdir, "-n", "-p", "--configfile", overlay).stdout
    assert "results/smoke/train/synthetic-cifar10/itnas/seed2/metrics.json" in printed


def test_dropping_a_variant_reruns_only_the_tables_and_overwrites_nothing(smoke_run):
    def drop(cfg):
        cfg["search"]["variants"] = ["darts", "gumbel_transition", "itnas"]
        cfg["evaluate"]["cifar10"]["cells"] = ["darts", "gumbel_transition", "itnas"]

    overlay = _overlay(smoke_run, "no-gumbel.yaml", drop)
    assert planned_jobs(smoke_run.workdir, "--configfile", overlay) == {"tables": 1, "all": 1}
    # Its results stay where they were: switching back needs no job but the tables.
    assert (smoke_run.results / "search" / "synthetic-cifar10" / "gumbel" / "seed1" / "metrics.json").exists()
    assert planned_jobs(smoke_run.workdir, "--configfile", SMOKE) == {}


def test_the_validation_summary_reads_a_finished_run(smoke_run, tmp_path):
    """benchmarks/validation_summary.py (docs/validation.md's extra tables) on the smoke run:
    a row per search, per variant and per trained cell, and the time per rule from the log."""
    log = tmp_path / "snakemake.log"
    log.write_text(smoke_run.stdout + smoke_run.stderr)
    proc = subprocess.run([str(BIN / "python"), str(REPO / "benchmarks" / "validation_summary.py"),
                           str(smoke_run.results), "--log", str(log)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    sections = dict(part.split("\n", 1) for part in proc.stdout.split("### ")[1:])
    assert set(sections) == {"Searches", "Cells across search seeds", "Trainings",
                             "Test-set noise against seed spread", "Time per rule"}
    noise = [r.split(" | ") for r in sections["Test-set noise against seed spread"].splitlines()[2:]
             if r.startswith("| ")]
    # The smoke trainings test on 16 images: a binomial s.e. of sqrt(p (1 - p) / 16), and a last
    # row pooling all cells.
    for row in noise[:-1]:
        p = float(row[2]) / 100
        assert row[1] == "16" and float(row[3]) == pytest.approx(100 * (p * (1 - p) / 16) ** 0.5, abs=0.01), row
    assert noise[-1][0] == "| all cells (rms)"
    searches = [r for r in sections["Searches"].splitlines() if r.startswith("| ") and "entropy" not in r]
    assert sorted(r.split(" | ")[0][2:] for r in searches) == sorted(SEARCHES * 2)
    for row in sections["Cells across search seeds"].splitlines()[2:]:
        if row.startswith("| "):
            assert "seed0 vs seed1" in row and "-seed" in row and "held-out error" in row, row
    trained = {r.split(" | ")[0][2:] for r in sections["Trainings"].splitlines()[2:] if r.startswith("| ")}
    assert {"random0", "random1", "DARTS_V1", "DARTS_V2"} | set(VARIANTS) <= trained
    assert re.search(r"^\| search \| 6 \|", sections["Time per rule"], re.M)
    cells = [r.split(" | ")[0][2:] for r in sections["Cells across search seeds"].splitlines()[2:] if r.startswith("| ")]
    assert sorted(cells) == sorted(VARIANTS)  # each variant's derived cells, itnas's from the shared searches
