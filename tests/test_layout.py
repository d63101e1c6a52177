"""The run layout (itnas/layout.py): every path and cell name it formats parses back to what made
it, paths and names outside the layout are refused, and it is the only module that knows them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from itnas import layout
from itnas.errors import UserError
from tests.conftest import REPO


@pytest.mark.parametrize("results", ["results", "results/smoke", "/abs/runs"])
@pytest.mark.parametrize("stage,label", [("search", "gumbel_transition"), ("train", "itnas"),
                                         ("train", "DARTS_V2"), ("train", "random3")])
def test_a_run_file_parses_back_to_what_formatted_it(results, stage, label):
    folder = layout.search_dir if stage == "search" else layout.train_dir
    path = f"{folder(results, 'synthetic-cifar10', label, 7)}/{layout.METRICS}"
    run = layout.parse_run_file(path)
    assert (run.stage, run.dataset, run.label, run.seed) == (stage, "synthetic-cifar10", label, 7)
    assert run.results == results
    assert run.with_seed(7) == Path(path)
    assert run.with_seed(2) == Path(f"{folder(results, 'synthetic-cifar10', label, 2)}/{layout.METRICS}")


def test_a_run_file_without_a_results_folder_parses_too():
    run = layout.parse_run_file("train/cifar10/itnas/seed1/metrics.json")
    assert (run.results, run.stage, run.label, run.seed) == ("", "train", "itnas", 1)
    assert run.with_seed(0) == Path("train/cifar10/itnas/seed0/metrics.json")


@pytest.mark.parametrize("name", ["itnas", layout.RANDOM_SEARCH])
def test_a_selection_file_parses_back(name):
    path = f"{layout.select_dir('results', 'cifar10', name)}/{layout.SELECTION}"
    assert layout.parse_selection_file(path) == ("cifar10", name)


@pytest.mark.parametrize("path", [
    "metrics.json",                                             # no layout at all
    "results/select/cifar10/itnas/metrics.json",                # a stage without seeds
    "results/train/cifar10/itnas/metrics.json",                 # no seed folder
    "results/train/cifar10/itnas/seed-1/metrics.json",          # a seed the commands refuse
    "results/train/cifar10/itnas/seed0/history.json",           # not the metrics file
    "results/train/cifar10/itnas/seed0/metrics.json/x",         # below it
    "results/derive/cifar10/itnas/seed0/metrics.json",          # a stage without metrics
])
def test_paths_outside_the_layout_are_refused_with_one_line(path):
    with pytest.raises(UserError, match="not a run file of the workflow layout") as err:
        layout.parse_run_file(path)
    assert "\n" not in str(err.value) and path in str(err.value)


@pytest.mark.parametrize("path", ["results/select/cifar10/selection.json", "select/a/b/c/selection.json",
                                  "results/select/cifar10/itnas/genotype.json"])
def test_selection_paths_outside_the_layout_are_refused(path):
    with pytest.raises(UserError, match="not a selection file of the workflow layout"):
        layout.parse_selection_file(path)


def test_the_cell_names_read_back_to_what_made_them():
    assert layout.parse_searched_name(layout.searched_name("gumbel_transition", 3)) == ("gumbel_transition", 3)
    assert layout.parse_searched_name(layout.searched_name("darts_2nd", 12)) == ("darts_2nd", 12)
    assert layout.parse_searched_name(layout.selected_name("itnas")) is None  # not a search's cell
    assert layout.parse_searched_name("DARTS_V2") is None and layout.parse_searched_name("itnas-seed") is None
    assert layout.random_cell(layout.random_name(12)) == 12
    assert layout.random_cell(layout.searched_name("itnas", 0)) is None and layout.random_cell("random") is None
    assert layout.random_cell("random1x") is None and not layout.is_random(layout.RANDOM_SEARCH)
    assert layout.parse_seed_folder(layout.seed_folder(5)) == 5 and layout.parse_seed_folder("seeds") is None


def test_paths_take_snakemake_wildcards_as_they_are():
    assert layout.search_dir("r") == "r/search/{dataset}/{search}/seed{seed}"
    assert layout.train_dir("r") == "r/train/{dataset}/{label}/seed{seed}"
    assert layout.derived_genotype("r") == "r/derive/{dataset}/{variant}/seed{seed}/genotype.json"
    assert layout.random_genotype("r") == "r/random/cell{cell}/genotype.json"


def test_the_layout_is_torch_free():
    code = "import sys, itnas.layout; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_no_other_module_parses_the_layout_or_carries_a_label_in_the_environment():
    """One home: no regex over seed folders or cell names outside itnas/layout.py, and no
    ITNAS_LABEL anywhere the workflow or the package reads."""
    sources = [p for p in (REPO / "itnas").rglob("*.py") if p.name != "layout.py"]
    sources += list((REPO / "workflow").rglob("*.smk")) + [REPO / "Snakefile"]
    for path in sources:
        text = path.read_text(encoding="utf-8")
        assert "ITNAS_LABEL" not in text, path
        assert not re.search(r"re\.\w+\(r?[\"'][^\"']*(seed|random)\(", text), path
