"""The paper's Tables 1-4 regenerated from run folders, beside the published numbers.

Inputs are the files the workflow writes (the layout is the contract):

    .../search/{dataset}/{variant}/seed{S}/metrics.json     one architecture search
    .../select/{dataset}/{variant}/selection.json           the cell chosen among the seeds
    .../train/{dataset}/{genotype}/seed{S}/metrics.json     one evaluation training

`{genotype}` is a variant name (the cell selected for it) or a published genotype (DARTS_V2).
Each reproduced row is the mean +- sample std over seeds, with the number of seeds, params and
MACs from the runs, the search cost in GPU-days (mean per search) and the difference to the
paper's number for the row it reproduces (`compare` in config/published.yaml). Every seed must
be there: a missing file is a one-line error naming it, never a mean over fewer seeds. Tables
built from stand-in data say so in their titles.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itnas.errors import UserError
from itnas.files import read_yaml, write_text
from itnas.genotypes import RANDOM_LABEL
from itnas.report.numbers import (
    fmt_diff,
    fmt_interval,
    fmt_num,
    fmt_pm,
    fmt_spread,
    mean_std,
    millions,
)
from itnas.report.render import Table
from itnas.report.runs import Group, check_complete, load_runs, load_selections, selected_seed
from itnas.report.stats import difference_to_random
from itnas.variants import NAMES as VARIANTS
from itnas.variants import VARIANTS as REGISTRY
from itnas.variants import describe_setting

# Trainings of random cells (`itnas sample`), labelled random0, random1, ... (genotypes.RANDOM_LABEL):
# one table row.
RANDOM_NAME = "Random cells (same protocol)"

STANDIN_NOTE = "STAND-IN DATA — not comparable to the paper"
BENCHMARK_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "cinic10": "CINIC-10",
                   "svhn": "SVHN", "imagenet": "ImageNet"}



# ----------------------------------------------------------------------------- inputs



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
        labels = [label for (ds, label) in self.train if ds == dataset and not RANDOM_LABEL.match(label)]
        return sorted(labels, key=_label_order)

    def random_cells(self, benchmark: str) -> list[Group]:
        dataset = self.roles.get(benchmark, benchmark)
        return [g for (ds, label), g in sorted(self.train.items()) if ds == dataset and RANDOM_LABEL.match(label)]

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
        derived at each stability temperature instead of its own (metrics.json)."""
        group = self.search_group(variant)
        reports = [r.metrics.get("genotype_stability") for r in group.runs.values()] if group else []
        reports = [r for r in reports if isinstance(r, dict) and r]
        if not reports:
            return "—"
        taus = sorted(reports[0], key=float)
        parts = []
        for tau in taus:
            edges = statistics.fmean(r[tau]["edges"] for r in reports if tau in r)
            ops = statistics.fmean(r[tau]["ops"] for r in reports if tau in r)
            parts.append(f"{tau}: {edges:g}/{ops:g}")
        return ", ".join(parts)

    def search_group(self, variant: str) -> Group | None:
        matches = [g for (ds, v), g in self.search.items() if v == variant]
        return matches[0] if matches else None

    def search_cost_days(self, label: str) -> list[float] | None:
        group = self.search_group(label)
        if group is None:
            return None
        hours = group.optional("gpu_hours")
        return [h / 24.0 for h in hours] if hours is not None else None

    def standin(self, groups: Iterable[Group | None]) -> bool:
        return any(g.standin for g in groups if g is not None)


def _label_order(label: str) -> tuple[int, str]:
    return (VARIANTS.index(label), label) if label in VARIANTS else (len(VARIANTS), label)


def display_name(label: str) -> str:
    if label in REGISTRY:
        return REGISTRY[label].title
    return f"{label} (published cell, retrained)"


def _title(base: str, standin: bool, roles: dict[str, str], benchmarks: Sequence[str]) -> str:
    if not standin:
        return base
    used = ", ".join(f"{BENCHMARK_NAMES.get(b, b)} → {roles.get(b, b)}" for b in benchmarks)
    return f"{base} — {STANDIN_NOTE} ({used})"


def _published_row(spec: dict[str, Any], name: str | None) -> dict[str, Any] | None:
    if name is None:
        return None
    for row in spec["rows"]:
        if row["name"] == name:
            return row
    raise UserError(f"published table '{spec.get('title')}': compare target '{name}' is not one of its rows")


def _ref(row: dict[str, Any]) -> str:
    return f"paper [{row['ref']}]" if row.get("ref") not in (None, "") else "paper"


def table1(inp: Inputs) -> Table:
    spec = inp.published["table1"]
    bench = spec.get("benchmark", "cifar10")
    headers = ["Architecture", "Source", "Error (%)", "Seeds", "Params (M)", "MACs (M)",
               "Search cost (GPU-days)", "Paper error (%)", "Δ vs paper", "Δ vs random (95% CI)"]
    fields = ["architecture", "source", "label", "dataset", "error_mean", "error_std", "n_seeds",
              "seeds", "params_m", "macs_m", "search_gpu_days", "paper_row", "paper_error", "diff",
              "diff_random", "diff_random_low", "diff_random_high"]
    rows, csv_rows = [], []
    for row in spec["rows"]:
        rows.append([row["name"], _ref(row), fmt_num(row["error"]), "", fmt_num(row.get("params_m"), 1),
                     "—", fmt_num(row.get("cost_gpu_days")), "", "", ""])
        csv_rows.append({"architecture": row["name"], "source": "paper", "error_mean": row["error"],
                         "params_m": row.get("params_m"), "search_gpu_days": row.get("cost_gpu_days")})
    groups = []
    for label in inp.labels_on(bench):
        g = inp.train_group(bench, label)
        groups.append(g)
        err = g.values("test_top1_err")
        paper = _published_row(spec, spec.get("compare", {}).get(label))
        cost = inp.search_cost_days(label)
        params, macs = g.optional("params"), g.optional("macs")
        mean, std = mean_std(err)
        vs_random = inp.vs_random(bench, err)
        rows.append([display_name(label), "reproduced", fmt_pm(err), str(len(err)),
                     fmt_num(millions(params)), fmt_num(millions(macs), 0),
                     fmt_num(statistics.fmean(cost), 3) if cost else "—",
                     f"{paper['error']:.2f} ({paper['name']})" if paper else "—",
                     fmt_diff(err, paper["error"] if paper else None), fmt_interval(vs_random)])
        csv_rows.append({"architecture": display_name(label), "source": "reproduced", "label": label,
                         "dataset": g.dataset, "error_mean": mean, "error_std": std, "n_seeds": len(err),
                         "seeds": " ".join(map(str, g.seeds)), "params_m": millions(params), "macs_m": millions(macs),
                         "search_gpu_days": statistics.fmean(cost) if cost else None,
                         "paper_row": paper["name"] if paper else None,
                         "paper_error": paper["error"] if paper else None,
                         "diff": mean - paper["error"] if paper else None, **_random_fields(vs_random)})
    random_row = _random_row(inp, bench)
    if random_row is not None:
        cells, err, params, macs = random_row
        groups.extend(cells)
        mean, std = mean_std(err)
        rows.append([RANDOM_NAME, "reproduced", fmt_pm(err), f"{len(cells)} × {len(cells[0].seeds)}",
                     fmt_num(millions(params)), fmt_num(millions(macs), 1), "—", "—", "—", "—"])
        csv_rows.append({"architecture": RANDOM_NAME, "source": "reproduced", "label": "random",
                         "dataset": cells[0].dataset, "error_mean": mean, "error_std": std, "n_seeds": len(err),
                         "seeds": " ".join(map(str, cells[0].seeds)), "params_m": millions(params), "macs_m": millions(macs)})
    standin = inp.standin(groups)
    notes = ["Reproduced rows: mean ± sample std of the test error over training seeds; search cost is "
             "the mean GPU-days of one search of that variant (selection and evaluation excluded).",
             "Our darts variant searches first order by default, so it is compared with DARTS (1st); "
             "darts_2nd, DARTS in its own setting, with DARTS (2nd).",
             RANDOM_NOTE]
    return Table("table1", _title(spec["title"], standin, inp.roles, [bench]), headers, rows, fields,
                 csv_rows, notes)


def table2(inp: Inputs) -> Table:
    spec = inp.published["table2"]
    bench = spec.get("benchmark", "cifar10")
    yes = {True: "✓", False: "✗"}
    headers = ["Variant", "Gumbel", "Transition", "TIEP", "Setting", "Paper error (%)", "Our error (%)",
               "Seeds", "Δ vs paper", "Δ vs random (95% CI)", "Searched cells, held-out error (%)",
               "Cell changes with τ (edges/ops)", "Params (M)", "Search cost (GPU-days)", "Searches",
               "Selected seed"]
    fields = ["variant", "gumbel", "transition", "tiep", "setting", "paper_error", "error_mean", "error_std",
              "n_seeds", "diff", "diff_random", "diff_random_low", "diff_random_high", "searched_mean",
              "searched_std", "searched_min", "searched_max", "n_searched", "tau_changes", "params_m",
              "search_gpu_days", "n_searches", "selected_seed"]
    rows, csv_rows, groups = [], [], []
    for row in spec["rows"]:
        variant = row["variant"]
        g = inp.train_group(bench, variant)
        sg = inp.search_group(variant)
        if row.get("optional") and g is None and sg is None:
            continue  # a setting this run did not search (darts_2nd)
        groups.append(g)
        err = g.values("test_top1_err") if g else None
        params = g.optional("params") if g else None
        cost = inp.search_cost_days(variant)
        sel = selected_seed(inp.selections.get((sg.dataset, variant))) if sg else ""
        mean, std = mean_std(err) if err else (None, None)
        vs_random = inp.vs_random(bench, err)
        searched = inp.searched_cells(variant)
        stability = inp.tau_stability(variant)
        setting = inp.search_setting(variant)
        rows.append([f"{row['name']} ({variant})", yes[row["gumbel"]], yes[row["transition"]],
                     yes[row["tiep"]], setting, fmt_num(row["error"]),
                     fmt_pm(err) if err else "not run", str(len(err)) if err else "0",
                     fmt_diff(err, row["error"]), fmt_interval(vs_random), fmt_spread(searched), stability,
                     fmt_num(millions(params)), fmt_num(statistics.fmean(cost), 3) if cost else "—",
                     str(len(sg.runs)) if sg else "0", sel or "—"])
        spread = mean_std(searched) if searched else (None, None)
        csv_rows.append({"variant": variant, "gumbel": row["gumbel"], "transition": row["transition"],
                         "tiep": row["tiep"], "setting": setting, "paper_error": row["error"],
                         "error_mean": mean, "error_std": std, "n_seeds": len(err) if err else 0,
                         "diff": mean - row["error"] if err else None, **_random_fields(vs_random),
                         "searched_mean": spread[0], "searched_std": spread[1],
                         "searched_min": min(searched) if searched else None,
                         "searched_max": max(searched) if searched else None, "n_searched": len(searched),
                         "tau_changes": None if stability == "—" else stability, "params_m": millions(params),
                         "search_gpu_days": statistics.fmean(cost) if cost else None,
                         "n_searches": len(sg.runs) if sg else 0, "selected_seed": sel or None})
    random_row = _random_row(inp, bench)
    if random_row is not None:
        cells, err, params, _ = random_row
        groups.extend(cells)
        mean, std = mean_std(err)
        rows.append([RANDOM_NAME, "—", "—", "—", "sampled (itnas sample)", "—", fmt_pm(err),
                     f"{len(cells)} × {len(cells[0].seeds)}", "—", "—", "—", "—", fmt_num(millions(params)),
                     "0", "0", "—"])
        csv_rows.append({"variant": "random", "setting": "sampled", "error_mean": mean, "error_std": std,
                         "n_seeds": len(err), "params_m": millions(params), "search_gpu_days": 0, "n_searches": 0})
    notes = ["The DARTS rows' paper number (2.76 %) is given in the text of section 4.1.2 and is DARTS in "
             "its own setting (second order, 8 ops with none): our darts variant is the ablation's base "
             "(first order, 7 ops, as the other variants); darts_2nd, when searched, is DARTS's own setting.",
             "Each variant: the best of its searches (by itnas select) retrained over the seeds shown. "
             "Searched cells: held-out error of every searched cell after the selection's short training, "
             "mean ± std (min–max, count). Cell changes with τ: mean over searches of the kept edges / ops "
             "that change when the cell is derived at each temperature instead of its own.",
             RANDOM_NOTE]
    standin = inp.standin(groups + [inp.search_group(v) for v in VARIANTS])
    return Table("table2", _title(spec["title"], standin, inp.roles, [bench]), headers, rows, fields,
                 csv_rows, notes)


RANDOM_NOTE = ("Random cells (same protocol): cells drawn uniformly from the search space (itnas sample), "
               "trained with the searched cells' recipe and seeds; their row is mean ± std over cells × seeds. "
               "Δ vs random: a row's mean error minus the random cells', with a 95 % percentile bootstrap "
               "interval (10,000 resamples: the row's seeds; the random cells, then each one's seeds).")


def _random_row(inp: Inputs, bench: str):
    """The random cells trained on `bench`: (groups, all errors, params per run, MACs per run)."""
    cells = inp.random_cells(bench)
    if not cells:
        return None
    err = [e for g in cells for e in g.values("test_top1_err")]
    params = [v for g in cells for v in (g.optional("params") or [])] or None
    macs = [v for g in cells for v in (g.optional("macs") or [])] or None
    return cells, err, params, macs


def _random_fields(diff: tuple[float, float, float] | None) -> dict[str, float | None]:
    d, lo, hi = diff if diff is not None else (None, None, None)
    return {"diff_random": d, "diff_random_low": lo, "diff_random_high": hi}


def table3(inp: Inputs) -> Table:
    spec = inp.published["table3"]
    bench = spec.get("benchmark", "imagenet")
    headers = ["Architecture", "Source", "Top-1 (%)", "Top-5 (%)", "Seeds", "Params (M)", "FLOPs (M)",
               "Search cost (GPU-days)", "Method", "Paper top-1 (%)", "Δ top-1"]
    fields = ["architecture", "source", "label", "dataset", "top1_mean", "top1_std", "top5_mean",
              "top5_std", "n_seeds", "seeds", "params_m", "flops_m", "search_gpu_days", "method",
              "paper_row", "paper_top1", "diff_top1"]
    rows, csv_rows, groups = [], [], []
    for row in spec["rows"]:
        rows.append([row["name"], _ref(row), fmt_num(row["top1"]), fmt_num(row.get("top5")), "",
                     fmt_num(row.get("params_m"), 1), fmt_num(row.get("flops_m"), 0),
                     fmt_num(row.get("cost_gpu_days")), row.get("method", ""), "", ""])
        csv_rows.append({"architecture": row["name"], "source": "paper", "top1_mean": row["top1"],
                         "top5_mean": row.get("top5"), "params_m": row.get("params_m"),
                         "flops_m": row.get("flops_m"), "search_gpu_days": row.get("cost_gpu_days"),
                         "method": row.get("method")})
    for label in inp.labels_on(bench):
        g = inp.train_group(bench, label)
        groups.append(g)
        top1 = g.values("test_top1_err")
        top5 = g.optional("test_top5_err")
        paper = _published_row(spec, spec.get("compare", {}).get(label))
        cost = inp.search_cost_days(label)
        params, macs = g.optional("params"), g.optional("macs")
        m1, s1 = mean_std(top1)
        m5, s5 = mean_std(top5) if top5 else (None, None)
        rows.append([display_name(label), "reproduced", fmt_pm(top1), fmt_pm(top5), str(len(top1)),
                     fmt_num(millions(params)), fmt_num(millions(macs), 0),
                     fmt_num(statistics.fmean(cost), 3) if cost else "—", "gradient",
                     f"{paper['top1']:.2f} ({paper['name']})" if paper else "—",
                     fmt_diff(top1, paper["top1"] if paper else None)])
        csv_rows.append({"architecture": display_name(label), "source": "reproduced", "label": label,
                         "dataset": g.dataset, "top1_mean": m1, "top1_std": s1, "top5_mean": m5,
                         "top5_std": s5, "n_seeds": len(top1), "seeds": " ".join(map(str, g.seeds)),
                         "params_m": millions(params), "flops_m": millions(macs),
                         "search_gpu_days": statistics.fmean(cost) if cost else None,
                         "method": "gradient", "paper_row": paper["name"] if paper else None,
                         "paper_top1": paper["top1"] if paper else None,
                         "diff_top1": m1 - paper["top1"] if paper else None})
    notes = ["FLOPs are multiply-accumulates of one 224 × 224 forward pass (the DARTS family's convention).",
             "Cells searched on CIFAR-10 and transferred; search cost is that of one CIFAR-10 search."]
    return Table("table3", _title(spec["title"], inp.standin(groups), inp.roles, [bench]), headers, rows,
                 fields, csv_rows, notes)


def table4(inp: Inputs) -> Table:
    spec = inp.published["table4"]
    benches = list(spec.get("benchmarks", ["cinic10", "cifar100", "svhn"]))
    names = [BENCHMARK_NAMES.get(b, b) for b in benches]
    headers = ["Architecture", "Source"] + names + ["Seeds"] + [f"Δ {n}" for n in names]
    fields = ["architecture", "source", "label"]
    for b in benches:
        fields += [f"{b}_mean", f"{b}_std", f"{b}_n", f"{b}_paper", f"{b}_diff"]
    rows, csv_rows, groups = [], [], []
    for row in spec["rows"]:
        rows.append([row["name"], _ref(row)] + [fmt_num(row.get(b)) for b in benches] + [""]
                    + ["" for _ in benches])
        csv_rows.append({"architecture": row["name"], "source": "paper",
                         **{f"{b}_mean": row.get(b) for b in benches}})
    labels = sorted({label for b in benches for label in inp.labels_on(b)}, key=_label_order)
    for label in labels:
        paper = _published_row(spec, spec.get("compare", {}).get(label))
        cells, diffs, seeds = [], [], []
        rec: dict[str, Any] = {"architecture": display_name(label), "source": "reproduced", "label": label}
        for b in benches:
            g = inp.train_group(b, label)
            groups.append(g)
            if g is None:
                cells.append("not run")
                diffs.append("—")
                continue
            err = g.values("test_top1_err")
            mean, std = mean_std(err)
            ref = paper.get(b) if paper else None
            cells.append(fmt_pm(err))
            diffs.append(fmt_diff(err, ref))
            seeds.append(str(len(err)))
            rec.update({f"{b}_mean": mean, f"{b}_std": std, f"{b}_n": len(err), f"{b}_paper": ref,
                        f"{b}_diff": mean - ref if ref is not None else None})
        rows.append([display_name(label), "reproduced"] + cells + ["/".join(seeds) or "0"] + diffs)
        csv_rows.append(rec)
    notes = ["Test error (%); reproduced cells are mean ± sample std over seeds; Δ compares with "
             "the paper's row for the same cell (ITNAS, DARTS(1st) or DARTS(2nd))."]
    return Table("table4", _title(spec["title"], inp.standin(groups), inp.roles, benches), headers, rows,
                 fields, csv_rows, notes)


BUILDERS = {"table1": table1, "table2": table2, "table3": table3, "table4": table4}


def load_published(path: str | Path) -> dict[str, Any]:
    data = read_yaml(path, "published numbers")
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping with table1..table4")
    for name in BUILDERS:
        spec = data.get(name)
        if not isinstance(spec, dict) or not isinstance(spec.get("rows"), list) or not spec["rows"]:
            raise UserError(f"{path}: '{name}' missing or without rows")
        for k, row in enumerate(spec["rows"]):
            if not isinstance(row, dict) or "name" not in row:
                raise UserError(f"{path}: '{name}.rows[{k}]' needs a name")
    return data


def default_roles(datasets: Iterable[str]) -> dict[str, str]:
    """Benchmark -> dataset when not given: a stand-in `synthetic-X` plays benchmark X."""
    roles = {}
    for ds in datasets:
        roles.setdefault(ds.removeprefix("synthetic-"), ds)
    return roles


def build(published: str | Path | dict[str, Any], search: Sequence[str | Path],
          train: Sequence[str | Path], selections: Sequence[str | Path] = (),
          roles: dict[str, str] | None = None, tables: Sequence[str] = tuple(BUILDERS)) -> list[Table]:
    pub = load_published(published) if not isinstance(published, dict) else published
    search_groups = load_runs(search, "search")
    train_groups = load_runs(train, "train")
    check_complete(search_groups)
    check_complete(train_groups)
    all_datasets = {ds for ds, _ in train_groups} | {ds for ds, _ in search_groups}
    role_map = {**default_roles(all_datasets), **(roles or {})}
    inp = Inputs(pub, search_groups, train_groups, load_selections(selections), role_map)
    unknown = [t for t in tables if t not in BUILDERS]
    if unknown:
        raise UserError(f"unknown table '{unknown[0]}' (expected one of: {', '.join(BUILDERS)})")
    return [BUILDERS[name](inp) for name in tables]


def write(tables: Sequence[Table], out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    written = []
    for table in tables:
        for suffix, text in (("md", table.markdown()), ("csv", table.csv()), ("tex", table.latex()),
                             ("html", table.html())):
            path = out_dir / f"{table.name}.{suffix}"
            write_text(path, text)
            written.append(path)
    return written
