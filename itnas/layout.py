"""The workflow's run layout, both ways: where each stage's files live and how the workflow's cells
are named, formatted and parsed back here only (torch-free). The rule files (their path
functions), the tables, the report command and `itnas select` all use it.

    RESULTS/search/DATASET/SEARCH/seedS/          one search; SEARCH = variants.search_of(VARIANT)
    RESULTS/derive/DATASET/VARIANT/seedS/genotype.json     a variant's cell read from that search
    RESULTS/select/DATASET/NAME/{selection,genotype}.json  NAME: a variant, or random_search
    RESULTS/random/cellK/genotype.json            random cell K (`itnas sample --seed K`)
    RESULTS/train/DATASET/LABEL/seedS/            one training; LABEL: a variant (its selected
                                                  cell), a published name (DARTS_V2) or randomK
    RESULTS/tables/NAME.EXT, RESULTS/figures/DATASET/KIND_NAME.png

The cells' names (a genotype file's `name`): VARIANT-seedS (what a search of VARIANT with seed S
derived), VARIANT-selected (what `itnas select` kept for VARIANT), randomK, and the published
names of itnas/genotypes.py. Called with wildcards ("{dataset}") the functions give Snakemake's
patterns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from itnas.errors import UserError

STAGES = ("search", "train")  # the stages whose run folders hold a metrics.json per seed
METRICS = "metrics.json"
SELECTION = "selection.json"
GENOTYPE = "genotype.json"
# What random search under the same selection is filed and shown under (select/DATASET/random_search/).
RANDOM_SEARCH = "random_search"

_PART = r"[^/]+"
_SEED = r"seed(?P<seed>\d+)"
_SEARCHED = re.compile(rf"(?P<variant>.+)-{_SEED}")
_RANDOM = re.compile(r"random(\d+)")
_SEED_FOLDER = re.compile(_SEED)
_RUN_FILE = re.compile(rf"(?:(?P<results>.*)/)?(?P<stage>{'|'.join(STAGES)})/(?P<dataset>{_PART})/"
                       rf"(?P<label>{_PART})/{_SEED}/{re.escape(METRICS)}")
_SELECTION_FILE = re.compile(rf"(?:(?P<results>.*)/)?select/(?P<dataset>{_PART})/(?P<name>{_PART})/"
                             rf"{re.escape(SELECTION)}")


# ----------------------------------------------------------------------------- cell names


def searched_name(variant: str, seed: int | str) -> str:
    """The cell a search of `variant` with `seed` derived (`itnas search`, `itnas derive --name`)."""
    return f"{variant}-{seed_folder(seed)}"


def parse_searched_name(name: str) -> tuple[str, int] | None:
    """(variant, search seed) of a name made by `searched_name`; None for any other name."""
    m = _SEARCHED.fullmatch(name)
    return (m.group("variant"), int(m.group("seed"))) if m else None


def selected_name(name: str) -> str:
    """The cell `itnas select` kept for `name` (a variant, or random_search): what its trainings train."""
    return f"{name}-selected"


def random_name(cell: int | str) -> str:
    """Random cell number `cell` of the search space (`itnas sample --seed CELL`)."""
    return f"random{cell}"


def random_cell(label: str) -> int | None:
    """K of a random cell's label randomK; None for any other label."""
    m = _RANDOM.fullmatch(label)
    return int(m.group(1)) if m else None


def is_random(label: str) -> bool:
    return random_cell(label) is not None


def seed_folder(seed: int | str) -> str:
    return f"seed{seed}"


def parse_seed_folder(name: str) -> int | None:
    """S of a run folder's name seedS; None for any other name."""
    m = _SEED_FOLDER.fullmatch(name)
    return int(m.group("seed")) if m else None


# ----------------------------------------------------------------------------- paths


def search_dir(results: str, dataset: str = "{dataset}", search: str = "{search}", seed="{seed}") -> str:
    """One search; variants that search alike share it (variants.search_of) and derive their cells from it."""
    return f"{results}/search/{dataset}/{search}/{seed_folder(seed)}"


def derived_genotype(results: str, dataset: str = "{dataset}", variant: str = "{variant}", seed="{seed}") -> str:
    return f"{results}/derive/{dataset}/{variant}/{seed_folder(seed)}/{GENOTYPE}"


def select_dir(results: str, dataset: str = "{dataset}", name: str = "{variant}") -> str:
    return f"{results}/select/{dataset}/{name}"


def random_genotype(results: str, cell="{cell}") -> str:
    return f"{results}/random/cell{cell}/{GENOTYPE}"


def train_dir(results: str, dataset: str = "{dataset}", label: str = "{label}", seed="{seed}") -> str:
    return f"{results}/train/{dataset}/{label}/{seed_folder(seed)}"


def table_file(results: str, name: str, ext: str) -> str:
    return f"{results}/tables/{name}.{ext}"


def figure(results: str, kind: str, dataset: str = "{dataset}", name: str = "{variant}") -> str:
    """A report figure: kind 'cell' (a variant's selected cell) or 'search' (a search's curves)."""
    return f"{results}/figures/{dataset}/{kind}_{name}.png"


@dataclass(frozen=True)
class RunFile:
    """A search's or training's metrics.json, by where it sits."""

    results: str  # the folder the layout starts in ('' when the path starts at the stage)
    stage: str  # search | train
    dataset: str
    label: str  # a search name, or what a training trains
    seed: int

    def with_seed(self, seed: int) -> Path:
        """The same group's file for another seed."""
        run = search_dir if self.stage == "search" else train_dir
        return Path(run(self.results or ".", self.dataset, self.label, seed)) / METRICS


def parse_run_file(path: str | Path) -> RunFile:
    """Where a metrics.json of the layout sits; a one-line error for any other path."""
    m = _RUN_FILE.fullmatch(Path(path).as_posix())
    if not m:
        raise UserError(f"{path}: not a run file of the workflow layout "
                        "(expected .../search|train/DATASET/LABEL/seedN/metrics.json)")
    return RunFile(m.group("results") or "", m.group("stage"), m.group("dataset"), m.group("label"),
                   int(m.group("seed")))


def parse_selection_file(path: str | Path) -> tuple[str, str]:
    """(dataset, name) of a selection.json of the layout; a one-line error for any other path."""
    m = _SELECTION_FILE.fullmatch(Path(path).as_posix())
    if not m:
        raise UserError(f"{path}: not a selection file of the workflow layout "
                        "(expected .../select/DATASET/NAME/selection.json)")
    return m.group("dataset"), m.group("name")
