"""The claims table: each of the paper's claims (config/paper/claims.yaml) with the paper's value, ours
with a 95 % interval, and a verdict (the rule: docs/method.md, "Claims and verdicts").

- level: *reproduced* when our interval lies within paper +- margin, *not reproduced* when it
  lies wholly outside, *undecided* otherwise (`bound: upper`: within means at most paper + margin);
- ordering and contrast (lower error is better; a contrast is sum of weight x error):
  *holds* when the interval of the difference lies below zero, *reversed* above, *undecided*
  when it holds zero.

Intervals come from the units a run has: a cell's training seeds (a t interval of the mean;
Welch's for a difference or contrast of cells), the hierarchical bootstrap of report/stats.py
against the random cells, and, for a method, its searches (the search cost per search, and the
held-out error of every searched cell from the selection: one sample of the method per search,
shown as a second row of the comparisons of searched variants). One seed gives no interval:
undecided, "needs >= 2 seeds". An undecided verdict says how many runs would decide it
(itnas/power.py, the planner's formulas, with the spread this run measured).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from itnas.errors import UserError
from itnas.files import read_yaml
from itnas.genotypes import published_names
from itnas.layout import RANDOM_SEARCH
from itnas.power import level_runs_needed, runs_needed
from itnas.report.inputs import BENCHMARK_NAMES, Inputs, published_row, titled
from itnas.report.numbers import Num
from itnas.report.render import Table
from itnas.report.runs import Group
from itnas.report.stats import contrast_interval
from itnas.variants import NAMES as VARIANTS

RANDOM = "random"  # the random cells (one row of Tables 1-2)
KINDS = ("level", "ordering", "contrast")
METRICS = ("error", "params", "search_cost")
TITLE = "Claims: the paper's claims, each with a verdict"


@dataclass
class Claim:
    id: str
    text: str
    kind: str
    benchmark: str
    weights: dict[str, float]  # level: {row: 1}; ordering: {better: 1, than: -1}
    paper_table: str | None
    margin: float
    metric: str = "error"
    bound: str = "both"
    paper_value: float | None = None
    paper_rows: list[str] = field(default_factory=list)

    @property
    def rows(self) -> list[str]:
        return list(self.weights)


def load_claims(path: str | Path, published: dict[str, Any]) -> list[Claim]:
    """config/paper/claims.yaml, checked: every problem is one line naming the file and the key."""
    data = read_yaml(path, "claims file")
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list) or not data["claims"]:
        raise UserError(f"{path}: expected a mapping with a non-empty list 'claims'")
    margins = data.get("margins", {})
    if not isinstance(margins, dict):
        raise UserError(f"{path}: 'margins' must map a benchmark to a number")
    for bench, m in margins.items():
        if bench not in BENCHMARK_NAMES:
            raise UserError(f"{path}: margins.{bench}: unknown benchmark (expected one of: {', '.join(BENCHMARK_NAMES)})")
        if not _number(m) or m <= 0:
            raise UserError(f"{path}: margins.{bench}: expected a positive number, got {m!r}")
    out, seen = [], set()
    for k, raw in enumerate(data["claims"]):
        where = f"{path}: claims[{k}]"
        if not isinstance(raw, dict):
            raise UserError(f"{where}: expected a mapping")
        claim = _claim(raw, where, margins, published)
        if claim.id in seen:
            raise UserError(f"{where}.id: '{claim.id}' is used twice")
        seen.add(claim.id)
        out.append(claim)
    return out


_KEYS = {"id", "text", "kind", "benchmark", "paper", "margin", "metric", "bound", "row", "better", "than", "weights"}


def _claim(raw: dict[str, Any], where: str, margins: dict[str, float], published: dict[str, Any]) -> Claim:
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise UserError(f"{where}.{unknown[0]}: unknown key (expected some of: {', '.join(sorted(_KEYS))})")
    for key in ("id", "text", "kind", "benchmark"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise UserError(f"{where}.{key}: required, a non-empty string")
    where = f"{where} ({raw['id']})"
    kind, bench = raw["kind"], raw["benchmark"]
    if kind not in KINDS:
        raise UserError(f"{where}.kind: '{kind}' (expected one of: {', '.join(KINDS)})")
    if bench not in BENCHMARK_NAMES:
        raise UserError(f"{where}.benchmark: '{bench}' (expected one of: {', '.join(BENCHMARK_NAMES)})")
    metric = raw.get("metric", "error")
    if metric not in METRICS or (kind != "level" and metric != "error"):
        allowed = METRICS if kind == "level" else ("error",)
        raise UserError(f"{where}.metric: '{metric}' (expected one of: {', '.join(allowed)})")
    bound = raw.get("bound", "both")
    if bound not in ("both", "upper") or (bound == "upper" and kind != "level"):
        raise UserError(f"{where}.bound: '{bound}' (expected both or upper, and upper only for a level)")
    needs = {"level": ("row",), "ordering": ("better", "than"), "contrast": ("weights",)}[kind]
    for key in needs:
        if key not in raw:
            raise UserError(f"{where}.{key}: required for a {kind}")
    if kind == "level":
        weights = {raw["row"]: 1.0}
    elif kind == "ordering":
        if raw["better"] == raw["than"]:
            raise UserError(f"{where}.than: compares '{raw['better']}' with itself")
        weights = {raw["better"]: 1.0, raw["than"]: -1.0}
    else:
        weights = raw["weights"]
        if not isinstance(weights, dict) or len(weights) < 2 or not all(_number(w) for w in weights.values()):
            raise UserError(f"{where}.weights: expected a mapping of at least two rows to numbers")
        if abs(sum(weights.values())) > 1e-9:
            raise UserError(f"{where}.weights: must sum to 0 (a contrast), they sum to {sum(weights.values()):g}")
        weights = {str(r): float(w) for r, w in weights.items()}
    known = set(VARIANTS) | set(published_names()) | {RANDOM, RANDOM_SEARCH}
    for row in weights:
        if row not in known:
            raise UserError(f"{where}: row '{row}' is not one we train (expected a variant, a published "
                            f"genotype, {RANDOM} or {RANDOM_SEARCH})")
    if (RANDOM in weights or RANDOM_SEARCH in weights) and kind != "ordering":
        raise UserError(f"{where}: {RANDOM} and {RANDOM_SEARCH} can only be the `than` of an ordering")
    if RANDOM in weights and weights[RANDOM] > 0:
        raise UserError(f"{where}.better: {RANDOM} is the baseline; put it in `than`")
    margin = raw.get("margin", margins.get(bench))
    if not _number(margin) or margin <= 0:
        raise UserError(f"{where}.margin: expected a positive number (or margins.{bench} at the top), got {margin!r}")
    claim = Claim(raw["id"], raw["text"], kind, bench, weights, raw.get("paper"), float(margin), metric, bound)
    if claim.paper_table is not None:
        _paper(claim, where, published)
    return claim


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


_PAPER_KEYS = {"table1": {"error": "error", "params": "params_m", "search_cost": "cost_gpu_days"},
               "table2": {"error": "error"}, "table3": {"error": "top1"}}


def _paper(claim: Claim, where: str, published: dict[str, Any]) -> None:
    """The paper's value of the claim from config/paper/published.yaml (its rows, one home)."""
    table = claim.paper_table
    spec = published.get(table) if isinstance(table, str) else None
    if not isinstance(spec, dict):
        raise UserError(f"{where}.paper: '{table}' is not a table of the published numbers "
                        "(expected table1..table4, or null for a claim the paper does not make)")
    value, names = 0.0, []
    for label, weight in claim.weights.items():
        if table == "table2":
            row = next((r for r in spec["rows"] if r.get("variant") == label), None)
        else:
            name = spec.get("compare", {}).get(label)
            row = published_row(spec, name) if name else None
        key = claim.benchmark if table == "table4" else _PAPER_KEYS[table].get(claim.metric)
        if row is None or key is None or not _number(row.get(key)):
            raise UserError(f"{where}.paper: {table} of the published numbers has no {claim.metric} "
                            f"for '{label}'{' on ' + claim.benchmark if table == 'table4' else ''} "
                            f"(its `compare` maps our rows to the paper's)")
        value += weight * row[key]
        names.append(row["name"])
    claim.paper_value, claim.paper_rows = round(value, 6), names


# ---- verdicts --------------------------------------------------------------------------------

HOLDS, REVERSED, REPRODUCED, NOT_REPRODUCED = "holds", "reversed", "reproduced", "not reproduced"
UNDECIDED, NOT_RUN = "undecided", "not run"


def level_verdict(low: float, high: float, paper: float, margin: float, bound: str = "both") -> str:
    if bound == "upper":
        return REPRODUCED if high <= paper + margin else NOT_REPRODUCED if low > paper + margin else UNDECIDED
    if paper - margin <= low and high <= paper + margin:
        return REPRODUCED
    if high < paper - margin or low > paper + margin:
        return NOT_REPRODUCED
    return UNDECIDED


def ordering_verdict(low: float, high: float) -> str:
    """The interval of (better - than), or of a contrast: below zero the claim holds."""
    return HOLDS if high < 0 else REVERSED if low > 0 else UNDECIDED


@dataclass
class Answer:
    scope: str
    verdict: str
    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    n: str = ""
    to_decide: str = "—"
    paper: float | None = None


def answer(claim: Claim, inp: Inputs) -> list[Answer]:
    """The claim's answers: one about the cells trained, and for comparisons of searched
    variants a second one about the methods (their searches)."""
    if claim.metric == "params":
        return [_params(claim, inp)]
    if claim.metric == "search_cost":
        return [_search_cost(claim, inp)]
    if RANDOM in claim.weights:
        return [_vs_random(claim, inp)]
    out = [_cells(claim, inp)]
    if all(r in VARIANTS for r in claim.rows) and claim.kind != "level":
        out.append(_methods(claim, inp))
    return out


def groups_of(claim: Claim, inp: Inputs) -> dict[str, Group | None]:
    out = {}
    for row in claim.rows:
        if row == RANDOM_SEARCH:
            out[row] = inp.random_search(claim.benchmark)
        elif row != RANDOM:
            out[row] = inp.train_group(claim.benchmark, row)
    return out


def _scope_of_cells(claim: Claim) -> str:
    searched = [r for r in claim.rows if r in VARIANTS]
    if not searched:
        return "published cells (seeds)"
    return "selected cell only (seeds)" if claim.kind == "level" else "selected cells (seeds)"


def _cells(claim: Claim, inp: Inputs) -> Answer:
    scope = _scope_of_cells(claim)
    groups = groups_of(claim, inp)
    missing = [r for r, g in groups.items() if g is None]
    if missing:
        return Answer(scope, NOT_RUN, n="0", paper=claim.paper_value,
                      to_decide=f"train {', '.join(missing)} on {BENCHMARK_NAMES[claim.benchmark]}")
    samples = {r: g.values("test_top1_err") for r, g in groups.items()}
    return _decide(claim, scope, samples, "seeds", "per cell" if claim.kind != "level" else "")


def _methods(claim: Claim, inp: Inputs) -> Answer:
    scope = "methods (searches: held-out error after the selection's short training)"
    samples = {r: inp.searched_cells(r) for r in claim.rows}
    if any(not s for s in samples.values()):
        return Answer(scope, NOT_RUN, n="0", to_decide="run the selection of every variant")
    return _decide(claim, scope, samples, "searches", "per variant")


def _decide(claim: Claim, scope: str, samples: dict[str, list[float]], unit: str, per: str) -> Answer:
    terms = [(claim.weights[r], samples[r]) for r in claim.rows]
    counts = "/".join(str(len(s)) for s in samples.values())
    estimate = sum(w * statistics.fmean(x) for w, x in terms)
    paper = claim.paper_value
    interval = contrast_interval(terms)
    if interval is None:
        return Answer(scope, UNDECIDED, estimate, n=counts, paper=paper, to_decide=f"needs ≥ 2 {unit}")
    _, low, high = interval
    sigma = statistics.fmean(statistics.variance(x) for _, x in terms) ** 0.5
    if claim.kind == "level":
        verdict = level_verdict(low, high, paper, claim.margin, claim.bound)
        distance = abs(abs(estimate - paper) - claim.margin)  # to the nearest edge of the band
        needed = level_runs_needed(sigma, distance) if distance > 0 else None
    else:
        verdict = ordering_verdict(low, high)
        if verdict == UNDECIDED and -claim.margin <= low and high <= claim.margin:
            verdict = f"{UNDECIDED} (equal within ±{claim.margin:g})"
        # The effect to detect: the paper's, else the smallest that matters (the margin).
        delta = abs(paper) if paper else max(abs(estimate), claim.margin)
        needed = runs_needed(sigma, delta, [w for w, _ in terms])
    to_decide = "—"
    if verdict.startswith(UNDECIDED):
        to_decide = f"≥ {needed} {unit} {per}".strip() if needed else f"more {unit}"
    return Answer(scope, verdict, estimate, low, high, counts, to_decide, paper)


def _params(claim: Claim, inp: Inputs) -> Answer:
    (row,) = claim.rows
    g = inp.train_group(claim.benchmark, row)
    params = g.optional("params") if g else None
    scope = "selected cell only (a count: no spread)"
    if not params:
        return Answer(scope, NOT_RUN, n="0", paper=claim.paper_value)
    value = statistics.fmean(params) / 1e6
    verdict = level_verdict(value, value, claim.paper_value, claim.margin, claim.bound)
    return Answer(scope, verdict, value, value, value, str(len(params)), paper=claim.paper_value)


def _search_cost(claim: Claim, inp: Inputs) -> Answer:
    (row,) = claim.rows
    cost = inp.search_cost_days(row)
    scope = "method (searches)"
    if not cost:
        return Answer(scope, NOT_RUN, n="0", paper=claim.paper_value)
    if not any(cost):  # searches on the CPU record no GPU time: nothing to compare with GPU-days
        return Answer(scope, NOT_RUN, n=str(len(cost)), paper=claim.paper_value,
                      to_decide="search on a GPU (these searches recorded no GPU time)")
    return _decide(claim, scope, {row: cost}, "searches", "")


def _vs_random(claim: Claim, inp: Inputs) -> Answer:
    better = next(r for r in claim.rows if r != RANDOM)
    g = inp.train_group(claim.benchmark, better)
    scope = "selected cell vs random cells (bootstrap: seeds; cells, then seeds)"
    if g is None or not inp.random_cells(claim.benchmark):
        return Answer(scope, NOT_RUN, n="0", to_decide="train the cell and random cells (evaluate.*.random)")
    err = g.values("test_top1_err")
    cells = inp.random_cells(claim.benchmark)
    counts = f"{len(err)}/{len(cells)}×{len(cells[0].seeds)}"
    estimate, low, high = inp.vs_random(claim.benchmark, err)
    if len(err) < 2:
        return Answer(scope, UNDECIDED, estimate, n=counts, to_decide="needs ≥ 2 seeds")
    verdict = ordering_verdict(low, high)
    to_decide = "—"
    if verdict == UNDECIDED:
        sigma = statistics.stdev(err)
        needed = max(2, runs_needed(sigma, max(abs(estimate), claim.margin)) or 2)
        to_decide = f"≥ {needed} seeds, and more random cells"
    return Answer(scope, verdict, estimate, low, high, counts, to_decide)


# ---- the table -------------------------------------------------------------------------------

HEADERS = ["Claim", "Paper (table: rows)", "Scope", "Paper value", "Margin",
           "Ours, 95 % CI (orderings: first − second; − = first better)", "n", "Verdict", "To decide"]
FIELDS = ["id", "claim", "kind", "benchmark", "metric", "scope", "paper_source", "paper_value", "margin",
          "ours", "low", "high", "n", "verdict", "to_decide"]


def _ours(a: Answer, kind: str) -> str:
    if a.estimate is None:
        return "—"
    sign = kind != "level"
    if a.low is None:
        return f"{Num(a.estimate, 2, sign=sign)} (no interval)"
    if a.low == a.high:
        return str(Num(a.estimate, 2, sign=sign))
    fmt = "+.2f" if sign else ".2f"
    return f"{a.estimate:{fmt}} [{a.low:{fmt}}, {a.high:{fmt}}]"


def _printed(value: float) -> str:
    """A published value as the paper prints it, at least one decimal: 2.45, 4.0, 0.3."""
    text = f"{value:g}"
    return text if "." in text else f"{text}.0"


def _terms(claim: Claim) -> str:
    """The paper's rows of a claim as the comparison they make: "A − B", "A + B − 2 C"."""
    out = ""
    for name, w in zip(claim.paper_rows, claim.weights.values()):
        coef = "" if abs(w) == 1 else f"{abs(w):g} "
        out += (f"{'− ' if w < 0 else ''}" if not out else f" {'−' if w < 0 else '+'} ") + coef + name
    return out


def claims_table(inp: Inputs, claims: Sequence[Claim]) -> Table:
    rows, csv_rows, groups = [], [], []
    for claim in claims:
        groups.extend(g for g in groups_of(claim, inp).values() if g is not None)
        if RANDOM in claim.weights:
            groups.extend(inp.random_cells(claim.benchmark))
        source = (f"{claim.paper_table}: {_terms(claim)}" if claim.paper_table
                  else "not claimed (the field's baseline)")
        units = {"params": " M", "search_cost": " GPU-days"}.get(claim.metric, "")
        for k, a in enumerate(answer(claim, inp)):
            paper = "—" if a.paper is None else f"{a.paper:+.2f}" if claim.kind != "level" else f"{_printed(a.paper)}{units}"
            margin = f"{'≤ +' if claim.bound == 'upper' else '±'}{claim.margin:g}"
            rows.append([claim.text if k == 0 else "  ↳ across searches", source if k == 0 else "", a.scope,
                         paper, margin, _ours(a, claim.kind), a.n, a.verdict, a.to_decide])
            csv_rows.append({"id": claim.id if k == 0 else f"{claim.id}/searches", "claim": claim.text,
                             "kind": claim.kind, "benchmark": claim.benchmark, "metric": claim.metric,
                             "scope": a.scope, "paper_source": source, "paper_value": a.paper,
                             "margin": claim.margin, "ours": a.estimate, "low": a.low, "high": a.high,
                             "n": a.n, "verdict": a.verdict, "to_decide": None if a.to_decide == "—" else a.to_decide})
    notes = [
        "Verdicts (docs/method.md): a level is reproduced when our 95 % interval lies within the paper's "
        "value ± the margin, not reproduced when it lies wholly outside, undecided otherwise; an ordering "
        "or contrast holds when the interval of (first − second), or of the weighted sum of errors, lies "
        "below zero, is reversed above zero, and is undecided when it holds zero.",
        "Margins (config/paper/claims.yaml): twice one cell's seed-to-seed spread on that dataset, so smaller "
        "differences could be one unlucky seed. 'Equal within ±m': undecided, and the interval lies inside "
        "the margin, so no difference that matters is left to find.",
        "Scope: 'selected cell(s)' answers only about the cell each variant's selection chose, over its "
        "training seeds (t interval; Welch for differences); 'across searches' answers about the method, "
        "one sample per search (the held-out errors of every searched cell after the selection's short "
        "training, so its values are not test errors and only the sign is compared with the paper). "
        "n: runs per row compared (seeds, searches, or cells × seeds).",
        "To decide: runs per row for 80 % power at α = 0.05 (normal approximation, itnas/power.py) with "
        "the spread this run measured and the paper's effect (else the margin); `itnas plan` plans a "
        "whole run.",
    ]
    benches = sorted({c.benchmark for c in claims}, key=list(BENCHMARK_NAMES).index)
    title = titled(TITLE, inp.standin(groups), inp.roles, benches)
    return Table("claims", title, HEADERS, rows, FIELDS, csv_rows, notes)
