"""What docs/validation.md reports beside the tables, from a finished validation run.

    python benchmarks/validation_summary.py results/validate [--log validate.log]

Prints Markdown: per search, the final edge-weight entropies (ln 7 = 1.946 is uniform), the
held-out accuracy of the supernet and how the derived cell changes with the derivation
temperature; per variant, how far apart the cells of its searches are and which one the
selection kept; per trained cell, the test error of each seed; and, with --log (Snakemake's
output of the run), the wall time per rule.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from itnas.files import read_json
from itnas.search.derive import differences
from itnas.space import load_genotype

RULES = {"darts": "top-2", "tiep": "TIEP"}  # the derivation rules, as the tables name them


def search_rows(results: Path) -> list[str]:
    rows = ["| variant | seed | entropy normal | entropy reduce | supernet val acc (%) | derive tau "
            "| edges / ops changed at tau 0.5, 1, 2, per rule | genotype |", "|---|---|---|---|---|---|---|---|"]
    for metrics_path in sorted(results.glob("search/*/*/seed*/metrics.json")):
        m = read_json(metrics_path, "metrics")
        last = read_json(metrics_path.parent / "history.json", "history")[-1]
        by_method = m.get("genotype_stability_by_method") or {m.get("method", "darts"): m["genotype_stability"]}
        changes = "; ".join(f"{RULES.get(method, method)}: " + ", ".join(f"{v['edges']}/{v['ops']}" for v in report.values())
                            for method, report in by_method.items())
        rows.append(f"| {m['variant']} | {m['seed']} | {last['entropy_normal']:.3f} | "
                    f"{last['entropy_reduce']:.3f} | {m['val_acc']:.1f} | {m['derive_tau']:g} | "
                    f"{changes} | {m['genotype_hash']} |")
    return rows


def seed_distance_rows(results: Path) -> list[str]:
    """Per variant, its cells as the workflow derived them (derive/, by the variant's own rule: a
    search shared by two variants holds only its own variant's genotype.json)."""
    rows = ["| variant | edges / ops that differ between its searches' cells | selected (selection) |",
            "|---|---|---|"]
    for variant_dir in sorted(results.glob("derive/*/*")):
        cells = {p.parent.name: load_genotype(p) for p in sorted(variant_dir.glob("seed*/genotype.json"))}
        pairs = [f"{a} vs {b}: {d['edges']}/{d['ops']}"
                 for (a, ga), (b, gb) in itertools.combinations(cells.items(), 2)
                 for d in [differences(ga, gb)]]
        selection = results / "select" / variant_dir.parent.name / variant_dir.name / "selection.json"
        winner = read_json(selection, "selection").get("winner", {}) if selection.exists() else {}
        rows.append(f"| {variant_dir.name} | {'; '.join(pairs)} | {winner.get('genotype', '?')} "
                    f"({winner.get('valid_top1_err', math.nan):.2f} % held-out error) |")
    return rows


def train_rows(results: Path) -> list[str]:
    errors: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for path in sorted(results.glob("train/*/*/seed*/metrics.json")):
        m = read_json(path, "metrics")
        errors[path.parent.parent.name, path.parent.parent.parent.name][m["seed"]] = m["test_top1_err"]
    seeds = sorted({s for e in errors.values() for s in e})
    rows = ["| cell | dataset | " + " | ".join(f"seed {s} test error (%)" for s in seeds) + " |",
            "|---|---|" + "---|" * len(seeds)]
    for (label, dataset), by_seed in sorted(errors.items()):
        rows.append(f"| {label} | {dataset} | "
                    + " | ".join(f"{by_seed.get(s, math.nan):.2f}" for s in seeds) + " |")
    return rows


def noise_rows(results: Path) -> list[str]:
    """How much of a test error's spread the test set itself adds: each trained cell's binomial
    standard error sqrt(p (1 - p) / n) at its mean error p over its n test images, beside the
    spread between its training seeds (sample std), and both pooled over the cells."""
    runs: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for path in sorted(results.glob("train/*/*/seed*/metrics.json")):
        runs[path.parent.parent.name, path.parent.parent.parent.name].append(read_json(path, "metrics"))
    rows = ["| cell | test images | mean error (%) | binomial s.e. (points) | seed std (points) |",
            "|---|---|---|---|---|"]
    binomial, seed_var = [], []
    for (label, _), ms in sorted(runs.items()):
        errs = [m["test_top1_err"] for m in ms]
        n = ms[0].get("test_size")
        p = sum(errs) / len(errs) / 100
        se = 100 * math.sqrt(p * (1 - p) / n) if n else math.nan
        sd = statistics.stdev(errs) if len(errs) >= 2 else math.nan
        binomial.append(se)
        if len(errs) >= 2:
            seed_var.append(sd ** 2)
        rows.append(f"| {label} | {n} | {100 * p:.2f} | {se:.2f} | {sd:.2f} |")
    if not binomial:
        return rows
    pooled = math.sqrt(sum(seed_var) / len(seed_var)) if seed_var else math.nan
    rows.append(f"| all cells (rms) | | | {math.sqrt(sum(b * b for b in binomial) / len(binomial)):.2f} "
                f"| {pooled:.2f} |")
    return rows


def rule_times(log: Path) -> list[str]:
    """Wall seconds per rule, from the timestamps Snakemake prints around each job."""
    from rehearsal_summary import parse_log  # beside this script

    jobs, _ = parse_log(log.read_text(encoding="utf-8", errors="replace"))
    per_rule: dict[str, list[float]] = defaultdict(list)
    for job in jobs:
        if job["start"] and job["end"]:
            per_rule[job["rule"]].append((job["end"] - job["start"]).total_seconds())
    rows = ["| rule | jobs | seconds per job (mean) | job-seconds |", "|---|---|---|---|"]
    for rule, secs in sorted(per_rule.items(), key=lambda kv: -sum(kv[1])):
        rows.append(f"| {rule} | {len(secs)} | {sum(secs) / len(secs):.0f} | {sum(secs):.0f} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, help="the run's results folder, e.g. results/validate")
    ap.add_argument("--log", type=Path, help="Snakemake's output of the run, for the time per rule")
    args = ap.parse_args(argv)
    if not (args.results / "search").is_dir():
        ap.error(f"{args.results}: no search/ folder; is it a finished run's results folder?")
    sections = [("Searches", search_rows(args.results)),
                ("Cells across search seeds", seed_distance_rows(args.results)),
                ("Trainings", train_rows(args.results)),
                ("Test-set noise against seed spread", noise_rows(args.results))]
    if args.log:
        sections.append(("Time per rule", rule_times(args.log)))
    for title, rows in sections:
        print(f"### {title}\n\n" + "\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
