"""What every table builder reads: the runs of one workflow run grouped by stage, dataset and
label (report/runs.py), the published numbers, and the rows shared by several tables (display
names, stand-in titles, the random cells' row and its Δ column)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from itnas.errors import UserError
from itnas.layout import RANDOM_SEARCH, is_random
from itnas.report.runs import Group
from itnas.report.stats import difference_to_random
from itnas.variants import NAMES as VARIANTS
from itnas.variants import VARIANTS as REGISTRY
from itnas.variants import describe_setting, search_of

# Trainings of random cells (`itnas sample`), labelled random0, random1, ... (layout.random_name):
# one table row.
RANDOM_NAME = "Random cells (same protocol)"

# The difference columns' headers say which sign is better (lower error is better everywhere).
DIFF_PAPER = "Δ vs paper (− = lower error than paper)"
DIFF_RANDOM = "Δ vs random (95% CI; − = better than random)"

STANDIN_NOTE = "STAND-IN DATA — not comparable to the paper"
BENCHMARK_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "cinic10": "CINIC-10",
                   "svhn": "SVHN", "imagenet": "ImageNet"}


def stability_for(metrics: dict, method: str | None) -> dict | None:
    """A search's genotype stability under derivation rule `method` (None: the search's own)."""
    by_method = metrics.get("genotype_stability_by_method")
    if method is not None and isinstance(by_method, dict) and method in by_method:
        return by_method[method]
    if method is None or metrics.get("method", method) == method:
        return metrics.get("genotype_stability")
    return None


@dataclass
class Inputs:
    published: dict[str, Any]
    search: dict[tuple[str, str], Group]
    train: dict[tuple[str, str], Group]
    selections: dict[tuple[str, str], dict[str, Any]]
    roles: dict[str, str]  # benchmark -> dataset name actually used

    def train_group(self, benchmark: str, label: str) -> Group | None:
        return self.train.get((self.roles.get(benchmark, benchmark), label))

    def labels_on(self, benchmark: str) -> list[str]:
        """The labels trained on `benchmark`, searched variants first; random cells are one row
        of their own (`random_cells`)."""
        dataset = self.roles.get(benchmark, benchmark)
        labels = [label for (ds, label) in self.train if ds == dataset and not is_random(label)]
        return sorted(labels, key=label_order)

    def random_cells(self, benchmark: str) -> list[Group]:
        dataset = self.roles.get(benchmark, benchmark)
        return [g for (ds, label), g in sorted(self.train.items()) if ds == dataset and is_random(label)]

    def random_search_selection(self) -> dict[str, Any] | None:
        """selection.json of random search under the same selection (`itnas select` over random
        cells random0..random{N-1}), or None when the run has none."""
        found = [sel for (_, label), sel in self.selections.items() if label == RANDOM_SEARCH]
        return found[0] if found else None

    def random_search_candidates(self) -> list[dict[str, Any]]:
        """Random search's candidates as its selection scored them: each one's `genotype` (its label,
        random0, ...) and `valid_top1_err` (held-out error after the short training)."""
        return list((self.random_search_selection() or {}).get("candidates", []))

    def random_search(self, benchmark: str) -> Group | None:
        """The trainings on `benchmark` of random search's winner: the random cell its selection
        chose, trained with the searched cells' recipe and seeds (the same runs as that random
        cell's). None without a random-search selection or without the winner's trainings."""
        selection = self.random_search_selection()
        winner = (selection or {}).get("winner")
        label = winner.get("genotype") if isinstance(winner, dict) else None
        if not isinstance(label, str) or not is_random(label):
            return None
        return self.train_group(benchmark, label)

    def vs_random(self, benchmark: str, errors: Sequence[float] | None) -> tuple[float, float, float] | None:
        """A row's test errors against the random cells': the difference of the means and its
        95 % bootstrap interval (report/stats.py), or None without random cells."""
        cells = self.random_cells(benchmark)
        if not errors or not cells:
            return None
        return difference_to_random(errors, [g.values("test_top1_err") for g in cells])

    def search_setting(self, variant: str) -> str:
        """The setting a variant's searches ran in (order, candidate ops), from their metrics."""
        group = self.search_group(variant)
        runs = list(group.runs.values()) if group else []
        settings = {describe_setting(r.metrics.get("arch_order") == "second", r.metrics.get("ops") == 8)
                    for r in runs if "arch_order" in r.metrics}
        if len(settings) == 1:
            return settings.pop()
        return "mixed" if settings else (REGISTRY[variant].setting if variant in REGISTRY else "—")

    def searched_cells(self, variant: str) -> list[float]:
        """Held-out error (%) of every cell the variant's searches found, from its selection
        (each candidate trained briefly): how much the searches of one variant agree."""
        group = self.search_group(variant)
        selection = self.selections.get((group.dataset, variant)) if group else None
        rows = (selection or {}).get("candidates", [])
        return [float(r["valid_top1_err"]) for r in rows if isinstance(r.get("valid_top1_err"), (int, float))]

    def tau_stability(self, variant: str) -> str:
        """Mean over the variant's searches of the kept edges / ops that change when the cell is
        derived at each stability temperature instead of its own (metrics.json). A search records
        it for every derivation rule its state supports (`genotype_stability_by_method`), so a
        variant that derives otherwise from a shared search (itnas, TIEP, from gumbel_transition's)
        reads its own rule's; a search that recorded only its own rule (`genotype_stability`, before
        2026-12-07) gives '—' to a variant of another rule, never the other rule's numbers."""
        group = self.search_group(variant)
        runs = list(group.runs.values()) if group else []
        method = REGISTRY[variant].derive_method if variant in REGISTRY else None
        reports = [stability_for(r.metrics, method) for r in runs]
        reports = [r for r in reports if isinstance(r, dict) and r]
        if not reports or len(reports) < len(runs):
            return "—"
        taus = sorted(reports[0], key=float)
        parts = []
        for tau in taus:
            edges = statistics.fmean(r[tau]["edges"] for r in reports if tau in r)
            ops = statistics.fmean(r[tau]["ops"] for r in reports if tau in r)
            parts.append(f"{tau}: {edges:g}/{ops:g}")
        return ", ".join(parts)

    def search_group(self, variant: str) -> Group | None:
        """The searches a variant's cells come from: its own, or the ones it shares with a variant
        that searches alike (variants.search_of: itnas reads its cells from gumbel_transition's)."""
        name = search_of(variant) if variant in REGISTRY else variant
        matches = [g for (ds, v), g in self.search.items() if v == name]
        return matches[0] if matches else None

    def sharing(self, variant: str) -> list[str]:
        """The other variants of this run's tables whose cells come from the same searches."""
        if variant not in REGISTRY:
            return []
        present = {label for _, label in self.train} | {label for _, label in self.selections}
        return [v for v in VARIANTS if v != variant and v in present and search_of(v) == search_of(variant)]

    def total_search_days(self) -> float | None:
        """GPU-days of every search of the run, each counted once however many variants share it."""
        hours = [h for g in self.search.values() for h in (g.optional("gpu_hours") or [])]
        return sum(hours) / 24.0 if hours else None

    def search_cost_days(self, label: str) -> list[float] | None:
        group = self.search_group(label)
        if group is None:
            return None
        hours = group.optional("gpu_hours")
        return [h / 24.0 for h in hours] if hours is not None else None

    def standin(self, groups: Iterable[Group | None]) -> bool:
        return any(g.standin for g in groups if g is not None)


def label_order(label: str) -> tuple[int, str]:
    return (VARIANTS.index(label), label) if label in VARIANTS else (len(VARIANTS), label)


def display_name(label: str) -> str:
    if label in REGISTRY:
        return REGISTRY[label].title
    return f"{label} (published cell, retrained)"


def titled(base: str, standin: bool, roles: dict[str, str], benchmarks: Sequence[str]) -> str:
    if not standin:
        return base
    used = ", ".join(f"{BENCHMARK_NAMES.get(b, b)} → {roles.get(b, b)}" for b in benchmarks)
    return f"{base} — {STANDIN_NOTE} ({used})"


def published_row(spec: dict[str, Any], name: str | None) -> dict[str, Any] | None:
    if name is None:
        return None
    for row in spec["rows"]:
        if row["name"] == name:
            return row
    raise UserError(f"published table '{spec.get('title')}': compare target '{name}' is not one of its rows")


def paper_ref(row: dict[str, Any]) -> str:
    return f"paper [{row['ref']}]" if row.get("ref") not in (None, "") else "paper"


RANDOM_SEARCH_NOTE = ("Random search (best of N, same selection): N random cells (N = the searches per variant) "
                      "go through the same selection as a variant's searched cells (itnas select: short training, "
                      "held-out error), and the winner is trained with the same recipe and seeds; its row is the "
                      "field's fair baseline for the searched rows, which are the best of N searches too.")


def random_search_name(n: int) -> str:
    return f"Random search (best of {n}, same selection)"


RANDOM_NOTE = ("Random cells (same protocol): cells drawn uniformly from the search space (itnas sample), "
               "trained with the searched cells' recipe and seeds; their row is mean ± std over cells × seeds. "
               "Δ vs random: a row's mean error minus the random cells', with a 95 % percentile bootstrap "
               "interval (10,000 resamples: the row's seeds; the random cells, then each one's seeds).")


def random_row(inp: Inputs, bench: str):
    """The random cells trained on `bench`: (groups, all errors, params per run, MACs per run)."""
    cells = inp.random_cells(bench)
    if not cells:
        return None
    err = [e for g in cells for e in g.values("test_top1_err")]
    params = [v for g in cells for v in (g.optional("params") or [])] or None
    macs = [v for g in cells for v in (g.optional("macs") or [])] or None
    return cells, err, params, macs


def random_fields(diff: tuple[float, float, float] | None) -> dict[str, float | None]:
    d, lo, hi = diff if diff is not None else (None, None, None)
    return {"diff_random": d, "diff_random_low": lo, "diff_random_high": hi}
