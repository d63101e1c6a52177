"""What a budget can decide, before spending it: for each claim of config/paper/claims.yaml, the power
the planned seeds and searches give, the runs needed for 80 % power, and the GPU-hours of the
planned run and of a run that decides each claim (`itnas plan`, docs/workflow.md).

Inputs: the workflow config (config/config.yaml with overlays merged over it as Snakemake does:
mappings merged key by key, lists and scalars replaced), a noise model (config/plan/noise.yaml: seed,
search and random-cell spreads from the literature, or, with a finished run, the spreads measured
in it) and per-job costs (config/plan/costs.yaml, the README's measured figures, or the run's own
`gpu_hours`). The formulas (normal approximation, two-sided alpha 0.05, power 0.8) are in
itnas/power.py, which the claims table uses too. Torch-free.
"""

from __future__ import annotations

import copy
import math
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

from itnas.config import check_workflow_config
from itnas.errors import UserError
from itnas.files import read_json, read_yaml
from itnas.layout import RANDOM_SEARCH, is_random, parse_selection_file
from itnas.power import Z_ALPHA, level_power, level_runs_needed, power, runs_needed
from itnas.report.claims import RANDOM, Claim, load_claims
from itnas.report.inputs import BENCHMARK_NAMES
from itnas.report.runs import load_runs
from itnas.report.tables import load_published
from itnas.variants import NAMES as VARIANTS
from itnas.variants import search_of

BASE_CONFIG = Path("config/config.yaml")  # the Snakefile's `configfile:`
SCHEMA = Path("workflow/schemas/config.schema.yaml")
MAX_RUNS = 10_000  # beyond this a claim is "not decidable" at any sane budget


# ---- the workflow config -------------------------------------------------------------------

def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Snakemake's rule for --configfile overlays: mappings merged recursively, everything else
    (lists included) replaced."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_workflow_config(files: list[str | Path]) -> tuple[dict[str, Any], list[str]]:
    """The merged config and the files it came from (config/config.yaml first, as the Snakefile
    loads it before any --configfile)."""
    paths = [Path(f) for f in files]
    if BASE_CONFIG.is_file() and (not paths or paths[0].resolve() != BASE_CONFIG.resolve()):
        paths.insert(0, BASE_CONFIG)
    if not paths:
        raise UserError(f"--configfile: no config given and no {BASE_CONFIG} here (run from the repository root)")
    merged: dict[str, Any] = {}
    for path in paths:
        raw = read_yaml(path, "workflow config file")
        if raw is not None and not isinstance(raw, dict):
            raise UserError(f"{path}: expected a mapping of keys at the top level")
        merged = merge(merged, raw or {})
    if SCHEMA.is_file():
        check_workflow_config(merged, [(str(p), p) for p in paths], SCHEMA)
    return merged, [str(p) for p in paths]


@dataclass
class Budget:
    """What a config runs: searched variants and their searches, and per benchmark the rows
    trained, random cells and seeds; `epochs` scale a job's cost against its reference."""

    variants: list[str]
    searches: int
    search_epochs: int | None
    select_epochs: int | None
    trained: dict[str, set[str]]  # benchmark -> labels
    random: dict[str, int]
    seeds: dict[str, int]
    train_epochs: dict[str, int | None]
    random_search: set[str] = field(default_factory=set)  # benchmarks with random search (a selection)


_EPOCHS = re.compile(r"^epochs=(\d+)$")
_SELECT_EPOCHS = re.compile(r"^selection\.epochs=(\d+)$")


def _last(pattern: re.Pattern, *lists: list[str]) -> int | None:
    found = None
    for items in lists:
        for item in items or []:
            m = pattern.match(str(item).strip())
            if m:
                found = int(m.group(1))
    return found


def budget_of(cfg: dict[str, Any]) -> Budget:
    search = cfg.get("search", {})
    train = cfg.get("train", {})
    cifar_set = train.get("cifar", {}).get("set", [])
    trained, random, seeds, epochs, random_search = {}, {}, {}, {}, set()
    for bench, target in cfg.get("evaluate", {}).items():
        trained[bench] = set(target.get("cells", [])) | set(target.get("baselines", []))
        random[bench] = int(target.get("random", 0))
        if target.get("random_search"):  # its candidates are random cells 0..N-1, all trained
            random[bench] = max(random[bench], len(search.get("seeds", [])))
            random_search.add(bench)
        seeds[bench] = len(target.get("seeds", []))
        recipe = train.get("imagenet" if bench == "imagenet" else "cifar", {}).get("set", [])
        epochs[bench] = _last(_EPOCHS, recipe, target.get("set", []))
    return Budget(list(search.get("variants", [])), len(search.get("seeds", [])),
                  _last(_EPOCHS, search.get("set", [])),
                  _last(_SELECT_EPOCHS, cifar_set, cfg.get("select", {}).get("set", [])),
                  trained, random, seeds, epochs, random_search)


# ---- noise and costs -----------------------------------------------------------------------

@dataclass
class Noise:
    seed_sd: dict[str, float]
    search_sd: dict[str, float]
    random_cell_sd: dict[str, float]
    source: str
    notes: list[str] = field(default_factory=list)

    def get(self, kind: str, bench: str) -> float | None:
        table = {"seed": self.seed_sd, "search": self.search_sd, "random": self.random_cell_sd}[kind]
        return table.get(bench)


def load_noise(path: str | Path) -> Noise:
    data = read_yaml(path, "noise model")
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping with seed_sd, search_sd, random_cell_sd")
    out: dict[str, dict[str, float]] = {}
    for key in ("seed_sd", "search_sd", "random_cell_sd"):
        section = data.get(key)
        if not isinstance(section, dict):
            raise UserError(f"{path}: '{key}' missing or not a mapping of benchmark to {{value, source}}")
        out[key] = {}
        for bench, entry in section.items():
            if bench not in BENCHMARK_NAMES:
                raise UserError(f"{path}: {key}.{bench}: unknown benchmark")
            value = entry.get("value") if isinstance(entry, dict) else None
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise UserError(f"{path}: {key}.{bench}.value: expected a number >= 0")
            if not isinstance(entry.get("source"), str) or not entry["source"]:
                raise UserError(f"{path}: {key}.{bench}.source: every value cites where it comes from")
            out[key][bench] = float(value)
    return Noise(out["seed_sd"], out["search_sd"], out["random_cell_sd"], f"{path} (the literature)")


@dataclass
class Costs:
    search: float
    search_epochs: int
    select: float  # per candidate
    select_epochs: int
    train: dict[str, float]
    train_epochs: dict[str, int]
    source: str
    unit: str = "GPU-hours"

    def train_job(self, bench: str, epochs: int | None) -> float:
        base = self.train.get(bench, self.train.get("cifar10", 0.0))
        ref = self.train_epochs.get(bench)
        return base * (epochs / ref) if epochs and ref else base

    def search_job(self, epochs: int | None) -> float:
        return self.search * (epochs / self.search_epochs if epochs and self.search_epochs else 1)

    def select_job(self, epochs: int | None) -> float:
        return self.select * (epochs / self.select_epochs if epochs and self.select_epochs else 1)


def load_costs(path: str | Path) -> Costs:
    data = read_yaml(path, "job costs")

    def entry(obj: Any, where: str) -> tuple[float, int]:
        if not isinstance(obj, dict) or not isinstance(obj.get("gpu_hours"), (int, float)) \
                or not isinstance(obj.get("epochs"), int):
            raise UserError(f"{path}: {where}: expected {{gpu_hours: number, epochs: integer, source: text}}")
        return float(obj["gpu_hours"]), obj["epochs"]

    if not isinstance(data, dict) or not isinstance(data.get("train"), dict):
        raise UserError(f"{path}: expected a mapping with search, select and train")
    search, search_epochs = entry(data.get("search"), "search")
    select, select_epochs = entry(data.get("select"), "select")
    train, train_epochs = {}, {}
    for bench, obj in data["train"].items():
        train[bench], train_epochs[bench] = entry(obj, f"train.{bench}")
    return Costs(search, search_epochs, select, select_epochs, train, train_epochs, f"{path} (README.md's figures)")


def measured(results: str | Path, cfg: dict[str, Any], noise: Noise, costs: Costs) -> tuple[Noise, Costs]:
    """The spreads and job costs a finished run measured, over the defaults where it has them."""
    root = Path(results)
    if not root.is_dir():
        raise UserError(f"--from-run {results}: no such folder (a workflow run's results folder)")
    roles = {ds: bench for bench, ds in cfg.get("datasets", {}).items()}
    search = load_runs(sorted(root.glob("search/*/*/seed*/metrics.json")), "search")
    train = load_runs(sorted(root.glob("train/*/*/seed*/metrics.json")), "train")
    if not search and not train:
        raise UserError(f"--from-run {results}: no search/ or train/ metrics.json files under it")
    seed_var: dict[str, list[tuple[float, int]]] = defaultdict(list)
    random_means: dict[str, list[float]] = defaultdict(list)
    train_hours: dict[str, list[float]] = defaultdict(list)
    for (ds, label), g in train.items():
        bench = roles.get(ds, ds.removeprefix("synthetic-"))
        err = g.values("test_top1_err")
        if len(err) >= 2:
            seed_var[bench].append((statistics.variance(err), len(err) - 1))
        if is_random(label):
            random_means[bench].append(statistics.fmean(err))
        train_hours[bench] += [_hours(r.metrics) for r in g.runs.values()]
    search_var: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for path in sorted(root.glob("select/*/*/selection.json")):
        if parse_selection_file(path)[1] == RANDOM_SEARCH:
            continue  # random cells' spread, not one between searches
        data = read_json(path, "selection file")
        errs = [c.get("valid_top1_err") for c in (data.get("candidates", []) if isinstance(data, dict) else [])]
        errs = [float(e) for e in errs if isinstance(e, (int, float))]
        bench = roles.get(path.parent.parent.name, path.parent.parent.name.removeprefix("synthetic-"))
        if len(errs) >= 2:
            search_var[bench].append((statistics.variance(errs), len(errs) - 1))
    out = Noise(dict(noise.seed_sd), dict(noise.search_sd), dict(noise.random_cell_sd), f"measured in {results}")
    for bench, parts in seed_var.items():
        out.seed_sd[bench] = _pooled(parts)
    for bench, parts in search_var.items():
        out.search_sd[bench] = _pooled(parts)
    for bench, means in random_means.items():
        if len(means) >= 2:
            out.random_cell_sd[bench] = statistics.stdev(means)
    kept = sorted(set(noise.seed_sd) - set(seed_var))
    if kept:
        out.notes.append(f"no two-seed cell measured on {', '.join(kept)}: the literature's seed spread is kept")
    new = copy.deepcopy(costs)
    new.source = f"measured in {results}"
    hours = [_hours(r.metrics) for g in search.values() for r in g.runs.values()]
    if hours:
        new.search, new.search_epochs = statistics.fmean(hours), 0
    cand = [_hours(read_json(p, "candidate metrics")) for p in root.glob("select/*/*/candidates/*/metrics.json")]
    if cand:
        new.select, new.select_epochs = statistics.fmean(cand), 0
    for bench, values in train_hours.items():
        new.train[bench], new.train_epochs[bench] = statistics.fmean(values), 0
    unmeasured = sorted(set(costs.train) - set(train_hours))
    if unmeasured:
        out.notes.append(f"no training measured on {', '.join(unmeasured)}: their job costs come from {costs.source}, "
                         "in GPU-hours at the paper's scale")
    if not any(r.metrics.get("gpu_hours") for g in [*search.values(), *train.values()] for r in g.runs.values()):
        new.unit = "device-hours (CPU: the run recorded no GPU time)"
    return out, new


def _hours(metrics: Any) -> float:
    """A job's GPU-hours, else its wall-clock hours (a CPU run records gpu_hours 0)."""
    if not isinstance(metrics, dict):
        return 0.0
    gpu = metrics.get("gpu_hours")
    if isinstance(gpu, (int, float)) and gpu > 0:
        return float(gpu)
    wall = metrics.get("wall_clock_s")
    return float(wall) / 3600 if isinstance(wall, (int, float)) else 0.0


def _pooled(parts: list[tuple[float, int]]) -> float:
    dof = sum(d for _, d in parts)
    return math.sqrt(sum(v * d for v, d in parts) / dof)


# ---- per claim -----------------------------------------------------------------------------

@dataclass
class Line:
    id: str
    text: str
    unit: str  # seeds | searches | seeds x random cells | —
    effect: float | None
    sigma: float | None
    planned: int
    power: float | None
    needed: int | None
    needed_text: str
    decide_hours: float | None
    note: str = ""
    cells: int | None = None  # random cells, for a claim against them


def plan_claim(claim: Claim, b: Budget, noise: Noise, costs: Costs) -> list[Line]:
    bench = claim.benchmark
    trained = b.trained.get(bench, set())
    n = b.seeds.get(bench, 0)
    job = costs.train_job(bench, b.train_epochs.get(bench))
    searched = [r for r in claim.rows if r in VARIANTS]
    # Variants that search alike share their searches (variants.search_of); each selects its own.
    search_hours = b.searches * (len({search_of(r) for r in searched}) * costs.search_job(b.search_epochs)
                                 + len(searched) * costs.select_job(b.select_epochs))
    sigma = noise.get("seed", bench)
    effect = abs(claim.paper_value) if claim.paper_value else claim.margin
    line = Line(claim.id, claim.text, "seeds", effect, sigma, 0, None, None, "—", None)
    if claim.metric == "params":
        planned = n if claim.rows[0] in trained else 0
        return [Line(claim.id, claim.text, "seeds", None, 0.0, planned, 1.0 if planned else 0.0, 1, "1 seed",
                     job + search_hours, "a count: one training decides it")]
    if claim.metric == "search_cost":
        planned = b.searches if claim.rows[0] in b.variants else 0
        return [Line(claim.id, claim.text, "searches", None, None, planned, 1.0 if planned >= 2 else 0.0, 2,
                     "2 searches", 2 * costs.search_job(b.search_epochs),
                     "a search's cost varies little: two searches give its interval")]
    if sigma is None:
        line.note = f"no seed spread for {bench} in the noise model"
        return [line]
    if claim.kind == "level":
        line.effect = claim.margin
        line.planned = n if claim.rows[0] in trained else 0
        line.power = level_power(sigma, claim.margin, line.planned) if line.planned >= 2 else 0.0
        line.needed = max(2, level_runs_needed(sigma, claim.margin))
        line.needed_text = f"{line.needed} seeds"
        line.decide_hours = line.needed * job + search_hours
        return [line]
    if RANDOM in claim.rows:
        return [_plan_vs_random(claim, b, noise, costs, line, job, search_hours)]
    weights = list(claim.weights.values())
    rows_trained = [r in trained or (r == RANDOM_SEARCH and searched and searched[0] in trained) for r in claim.rows]
    line.planned = n if all(rows_trained) else 0
    if RANDOM_SEARCH in claim.rows:
        line.note = "random search (issue 22 point 4): assumed trained with the cells' seeds"
        search_hours += b.searches * costs.select_job(b.select_epochs)  # its N random candidates' selection
    line.power = power(sigma, effect, line.planned, weights) if line.planned >= 2 else 0.0
    line.needed = max(2, runs_needed(sigma, effect, weights) or 2)
    line.needed_text = f"{line.needed} seeds per cell"
    line.decide_hours = line.needed * job * len(claim.rows) + search_hours
    out = [line]
    if searched and len(searched) == len(claim.rows):  # the methods, across searches
        s = noise.get("search", bench)
        if s is not None:
            needed = max(2, runs_needed(s, effect, weights) or 2)
            m = Line(f"{claim.id}/searches", "  ↳ across searches", "searches", effect, s, b.searches,
                     power(s, effect, b.searches, weights) if b.searches >= 2 else 0.0, needed,
                     f"{needed} searches per variant",
                     needed * (len({search_of(r) for r in searched}) * costs.search_job(b.search_epochs)
                               + len(searched) * costs.select_job(b.select_epochs)))
            out.append(m)
    return out


def _plan_vs_random(claim: Claim, b: Budget, noise: Noise, costs: Costs, line: Line, job: float,
                    search_hours: float) -> Line:
    bench = claim.benchmark
    sigma, cells_sd = noise.get("seed", bench), noise.get("random", bench)
    line.unit = "seeds × random cells"
    line.effect = claim.margin  # the paper claims no size: the smallest difference that matters
    if cells_sd is None:
        line.note = f"no random-cell spread for {bench} in the noise model"
        return line

    def pw(n: int, k: int) -> float:
        if n < 2 or k < 1:
            return 0.0
        var = sigma ** 2 / n + cells_sd ** 2 / k + sigma ** 2 / (k * n)  # the cell's mean - random cells' mean
        return NormalDist().cdf(line.effect / math.sqrt(var) - Z_ALPHA) if var > 0 else 1.0

    k_planned, n = b.random.get(bench, 0), b.seeds.get(bench, 0)
    better = next(r for r in claim.rows if r != RANDOM)
    line.planned = n if better in b.trained.get(bench, set()) and k_planned else 0
    line.power = pw(line.planned, k_planned)
    best = None  # the fewest trainings (the cell's seeds + k cells x seeds) with 80 % power
    for seeds in range(2, 101):
        for k in range(1, 201):
            if pw(seeds, k) >= 0.8:
                cost = seeds * (1 + k)
                if best is None or cost < best[0]:
                    best = (cost, seeds, k)
                break
    if best is None:
        line.needed_text = "not decidable within 100 seeds × 200 cells"
        return line
    _, seeds, k = best
    line.needed, line.cells = seeds, k
    line.needed_text = f"{seeds} seeds × {k} random cells"
    line.decide_hours = best[0] * job + search_hours
    line.note = "planned as one test with the random cells' spread between cells"
    return line


# ---- the whole plan ------------------------------------------------------------------------

@dataclass
class PlanReport:
    configs: list[str]
    noise: Noise
    costs: Costs
    planned_hours: dict[str, float]
    lines: list[Line]
    decide_all_hours: float

    def as_dict(self) -> dict[str, Any]:
        return {"configs": self.configs, "noise_source": self.noise.source, "cost_source": self.costs.source,
                "unit": self.costs.unit, "noise": {"seed_sd": self.noise.seed_sd, "search_sd": self.noise.search_sd,
                                                   "random_cell_sd": self.noise.random_cell_sd},
                "planned_hours": self.planned_hours, "decide_all_hours": self.decide_all_hours,
                "claims": [vars(x) for x in self.lines], "notes": self.noise.notes}

    def markdown(self) -> str:
        out = [f"Config: {' + '.join(self.configs)}", f"Noise model: {self.noise.source}",
               f"Job costs: {self.costs.source} ({self.costs.unit})", ""]
        out += ["| claim | runs counted in | effect | sd | planned | power | for 80 % power | "
                f"{self.costs.unit.split(' ')[0]} to decide | note |", "|---|---|---|---|---|---|---|---|---|"]
        for x in self.lines:
            out.append(f"| {x.text} | {x.unit} | {_f(x.effect)} | {_f(x.sigma, 3)} | {x.planned} | "
                       f"{'—' if x.power is None else f'{x.power:.0%}'} | {x.needed_text} | "
                       f"{'—' if x.decide_hours is None else f'{x.decide_hours:,.0f}'} | {x.note} |")
        total = sum(self.planned_hours.values())
        parts = ", ".join(f"{k} {v:,.1f}" for k, v in self.planned_hours.items() if v)
        decided = sum(1 for x in self.lines if x.power is not None and x.power >= 0.8)
        out += ["", f"Planned run: {total:,.1f} {self.costs.unit} ({parts}).",
                f"Claims the planned run decides with >= 80 % power: {decided} of {len(self.lines)} rows.",
                f"A run that decides every decidable claim (each row's largest need): "
                f"{self.decide_all_hours:,.0f} {self.costs.unit}."]
        out += [f"Note: {n}" for n in self.noise.notes]
        return "\n".join(out) + "\n"


def _f(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def planned_hours(b: Budget, costs: Costs) -> dict[str, float]:
    searches = len({search_of(v) for v in b.variants}) * b.searches  # shared searches run once
    candidates = (len(b.variants) + len(b.random_search)) * b.searches  # random search selects too
    out = {"search": searches * costs.search_job(b.search_epochs),
           "select": candidates * costs.select_job(b.select_epochs)}
    for bench, labels in b.trained.items():
        jobs = (len(labels) + b.random.get(bench, 0)) * b.seeds.get(bench, 0)
        out[f"train {bench}"] = jobs * costs.train_job(bench, b.train_epochs.get(bench))
    return out


def decide_all(lines: list[Line], claims: list[Claim], b: Budget, costs: Costs) -> float:
    """The GPU-hours of one run that trains each row as many seeds as its most demanding claim
    needs (and as many searches), counting every training and search once."""
    seeds: dict[tuple[str, str], int] = {}
    cells: dict[str, int] = {}
    searches = b.searches
    for claim in claims:
        for x in lines:
            if x.id == f"{claim.id}/searches" and x.needed:
                searches = max(searches, x.needed)
            if x.id != claim.id or not x.needed or x.unit == "searches":
                continue
            for row in claim.rows:
                key = (claim.benchmark, row)
                seeds[key] = max(seeds.get(key, 0), x.needed)
            if x.cells:
                cells[claim.benchmark] = max(cells.get(claim.benchmark, 0), x.cells)
    total = 0.0
    for (bench, row), n in seeds.items():
        job = costs.train_job(bench, b.train_epochs.get(bench))
        total += n * job * (cells.get(bench, b.random.get(bench, 0)) if row == RANDOM else 1)
    total += len(b.variants) * searches * (costs.search_job(b.search_epochs) + costs.select_job(b.select_epochs))
    return total


def plan(configs: list[str | Path], claims_file: str | Path, published: str | Path, noise_file: str | Path,
         costs_file: str | Path, from_run: str | Path | None = None) -> PlanReport:
    cfg, sources = load_workflow_config(list(configs))
    budget = budget_of(cfg)
    claims = load_claims(claims_file, load_published(published))
    noise, costs = load_noise(noise_file), load_costs(costs_file)
    if from_run is not None:
        noise, costs = measured(from_run, cfg, noise, costs)
    lines = [x for c in claims for x in plan_claim(c, budget, noise, costs)]
    return PlanReport(sources, noise, costs, planned_hours(budget, costs), lines,
                      decide_all(lines, claims, budget, costs))
