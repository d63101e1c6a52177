"""Reading the workflow's run files for the tables: each search's and training's metrics.json,
grouped by (dataset, label) over seeds, and each selection's selection.json.

Inputs are the files the workflow writes, where itnas/layout.py puts them (the layout is the
contract, and that module parses the paths back):

    .../search/{dataset}/{search}/seed{S}/metrics.json      one architecture search
    .../select/{dataset}/{variant}/selection.json           the cell chosen among the seeds
    .../train/{dataset}/{label}/seed{S}/metrics.json        one evaluation training

Every seed must be there: a missing file is a one-line error naming it, never a mean over
fewer seeds. Metrics that cannot be right (a misplaced file, an error outside 0-100 %) are
refused with the file's name.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from itnas.errors import UserError
from itnas.files import read_json
from itnas.layout import parse_run_file, parse_selection_file, seed_folder


@dataclass
class RunRecord:
    stage: str  # search | train
    dataset: str
    label: str  # variant or genotype label
    seed: int
    path: Path
    metrics: dict[str, Any]


@dataclass
class Group:
    """All seeds of one (stage, dataset, label)."""

    stage: str
    dataset: str
    label: str
    runs: dict[int, RunRecord] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.runs)

    def values(self, key: str) -> list[float]:
        out = []
        for seed in self.seeds:
            run = self.runs[seed]
            value = run.metrics.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise UserError(f"{run.path}: '{key}' missing or not a finite number "
                                f"(got {value!r}); cannot tabulate this run")
            out.append(float(value))
        return out

    def optional(self, key: str) -> list[float] | None:
        try:
            return self.values(key)
        except UserError:
            return None

    @property
    def standin(self) -> bool:
        return any(is_standin(r.dataset, r.metrics) for r in self.runs.values())


def is_standin(dataset: str, metrics: dict[str, Any]) -> bool:
    return bool(metrics.get("standin")) or dataset.startswith("synthetic-")


def load_runs(paths: Iterable[str | Path], stage: str) -> dict[tuple[str, str], Group]:
    """Group metrics files by (dataset, label); every file must exist and parse."""
    groups: dict[tuple[str, str], Group] = {}
    for raw in paths:
        path = Path(raw)
        where = parse_run_file(path)
        kind, dataset, label, seed = where.stage, where.dataset, where.label, where.seed
        if kind != stage:
            raise UserError(f"{path}: a {kind} run given where {stage} runs were expected")
        if not path.is_file():
            raise UserError(f"missing seed {seed} of {stage} {dataset}/{label}: {path} does not exist "
                            "(rerun the workflow; tables never average fewer seeds)")
        metrics = read_json(path, f"{stage} metrics file")
        if not isinstance(metrics, dict):
            raise UserError(f"{path}: expected a JSON object of metrics")
        record = RunRecord(stage, dataset, label, seed, path, metrics)
        check_run(record)
        group = groups.setdefault((dataset, label), Group(stage, dataset, label))
        group.runs[seed] = record
    return groups


_COUNTS = ("params", "params_with_aux", "macs", "weights", "arch_params", "gpu_hours", "device_hours",
           "wall_clock_s")


def check_run(run: RunRecord) -> None:
    """Refuse, naming the file, metrics that cannot be right: a dataset, seed or label of its own
    that disagrees with the folder it sits in (a copied or misplaced file), an error rate or an
    accuracy outside 0-100 %, a negative count or cost. Keys a file does not have pass. The label
    has one form: a search records its `variant` (the search's name), a training its `label`
    (`itnas train --label`, the folder's)."""
    m = run.metrics
    label_key = "variant" if run.stage == "search" else "label"
    recorded = m.get(label_key, run.label)
    mismatch = (f"dataset {m['dataset']!r}" if m.get("dataset", run.dataset) != run.dataset
                else f"seed {m['seed']!r}" if m.get("seed", run.seed) != run.seed
                else f"{label_key} {recorded!r}" if recorded != run.label else None)
    if mismatch:
        raise UserError(f"{run.path}: records {mismatch} but sits in the folder of {run.stage} "
                        f"{run.dataset}/{run.label}/{seed_folder(run.seed)} (a misplaced or copied file?)")
    for key, value in m.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if key.endswith(("_err", "_acc")) and not 0 <= value <= 100:
            raise UserError(f"{run.path}: '{key}' is {value}, not a percentage (0 to 100)")
        if key in _COUNTS and value < 0:
            raise UserError(f"{run.path}: '{key}' is {value}; it cannot be negative")


def check_complete(groups: dict[tuple[str, str], Group]) -> None:
    """Within a dataset, every label must have the same seeds: a gap is a missing file."""
    by_dataset: dict[str, list[Group]] = defaultdict(list)
    for group in groups.values():
        by_dataset[group.dataset].append(group)
    for dataset, members in by_dataset.items():
        expected = sorted(set().union(*(g.runs for g in members)))
        for group in sorted(members, key=lambda g: g.label):
            for seed in expected:
                if seed not in group.runs:
                    example = next(iter(group.runs.values())).path
                    missing = parse_run_file(example).with_seed(seed)
                    raise UserError(f"missing seed {seed} of {group.stage} {dataset}/{group.label}: "
                                    f"{missing} does not exist (other rows have seeds "
                                    f"{', '.join(map(str, expected))}; tables never average fewer seeds)")


def load_selections(paths: Iterable[str | Path]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for raw in paths:
        path = Path(raw)
        dataset, name = parse_selection_file(path)
        if not path.is_file():
            raise UserError(f"missing selection {path}")
        data = read_json(path, "selection file")
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a JSON object (itnas select's selection.json)")
        if data.get("label") not in (None, name):
            raise UserError(f"{path}: records label {data['label']!r} but sits in the folder of selection "
                            f"{dataset}/{name} (a misplaced or copied file?)")
        out[(dataset, name)] = data
    return out


def selected_seed(selection: dict[str, Any] | None) -> str:
    """The search seed of the cell `itnas select` kept (its `winner_search_seed`), as text; '' when
    the selection records none (a winner that came from no search, or no selection)."""
    seed = (selection or {}).get("winner_search_seed")
    return "" if seed is None else str(seed)
