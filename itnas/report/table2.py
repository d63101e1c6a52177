"""Table 2: the ablation over Gumbel / Transition / TIEP, one row per variant, with how much a
variant's searches agree and how stable its cell is in the derivation temperature."""

from __future__ import annotations

import statistics

from itnas.report.inputs import (
    DIFF_PAPER,
    DIFF_RANDOM,
    RANDOM_NAME,
    RANDOM_NOTE,
    RANDOM_SEARCH_NOTE,
    Inputs,
    random_fields,
    random_row,
    random_search_name,
    titled,
)
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
from itnas.report.runs import selected_seed
from itnas.variants import NAMES as VARIANTS


def table2(inp: Inputs) -> Table:
    spec = inp.published["table2"]
    bench = spec.get("benchmark", "cifar10")
    yes = {True: "✓", False: "✗"}
    headers = ["Variant", "Gumbel", "Transition", "TIEP", "Setting", "Paper error (%)", "Our error (%)",
               "Seeds", DIFF_PAPER, DIFF_RANDOM, "Searched cells, held-out error (%)",
               "Cell changes with τ (edges/ops)", "Params (M)", "Search cost (GPU-days)", "Searches",
               "Search", "Selected seed"]
    fields = ["variant", "gumbel", "transition", "tiep", "setting", "paper_error", "error_mean", "error_std",
              "n_seeds", "diff", "diff_random", "diff_random_low", "diff_random_high", "searched_mean",
              "searched_std", "searched_min", "searched_max", "n_searched", "tau_changes", "params_m",
              "search_gpu_days", "n_searches", "search", "shares_search_with", "selected_seed"]
    rows, csv_rows, groups = [], [], []
    total = inp.total_search_days()
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
        shared = inp.sharing(variant)
        search = (f"{sg.label}" + (f" (shared with {', '.join(shared)})" if shared else "")) if sg else "—"
        rows.append([f"{row['name']} ({variant})", yes[row["gumbel"]], yes[row["transition"]],
                     yes[row["tiep"]], setting, fmt_num(row["error"]),
                     fmt_pm(err) if err else "not run", str(len(err)) if err else "0",
                     fmt_diff(err, row["error"]), fmt_interval(vs_random), fmt_spread(searched), stability,
                     fmt_num(millions(params)), fmt_num(statistics.fmean(cost), 3) if cost else "—",
                     str(len(sg.runs)) if sg else "0", search, sel or "—"])
        spread = mean_std(searched) if searched else (None, None)
        csv_rows.append({"variant": variant, "gumbel": row["gumbel"], "transition": row["transition"],
                         "tiep": row["tiep"], "setting": setting, "paper_error": row["error"],
                         "error_mean": mean, "error_std": std, "n_seeds": len(err) if err else 0,
                         "diff": mean - row["error"] if err else None, **random_fields(vs_random),
                         "searched_mean": spread[0], "searched_std": spread[1],
                         "searched_min": min(searched) if searched else None,
                         "searched_max": max(searched) if searched else None, "n_searched": len(searched),
                         "tau_changes": None if stability == "—" else stability, "params_m": millions(params),
                         "search_gpu_days": statistics.fmean(cost) if cost else None,
                         "n_searches": len(sg.runs) if sg else 0, "search": sg.label if sg else None,
                         "shares_search_with": " ".join(shared) or None, "selected_seed": sel or None})
    best = inp.random_search(bench)
    if best is not None:
        groups.append(best)
        err, params = best.values("test_top1_err"), best.optional("params")
        mean, std = mean_std(err)
        vs_random = inp.vs_random(bench, err)
        candidates = inp.random_search_candidates()
        searched = [float(c["valid_top1_err"]) for c in candidates if isinstance(c.get("valid_top1_err"), (int, float))]
        spread = mean_std(searched) if searched else (None, None)
        rows.append([random_search_name(len(candidates)), "—", "—", "—", "sampled, then selected", "—",
                     fmt_pm(err), str(len(err)), "—", fmt_interval(vs_random), fmt_spread(searched), "—",
                     fmt_num(millions(params)), "0", str(len(candidates)), "—", best.label])
        csv_rows.append({"variant": "random_search", "setting": "sampled, then selected", "error_mean": mean,
                         "error_std": std, "n_seeds": len(err), **random_fields(vs_random),
                         "searched_mean": spread[0], "searched_std": spread[1],
                         "searched_min": min(searched) if searched else None,
                         "searched_max": max(searched) if searched else None, "n_searched": len(searched),
                         "params_m": millions(params), "search_gpu_days": 0, "n_searches": len(candidates),
                         "selected_seed": best.label})
    random_cells = random_row(inp, bench)
    if random_cells is not None:
        cells, err, params, _ = random_cells
        groups.extend(cells)
        mean, std = mean_std(err)
        rows.append([RANDOM_NAME, "—", "—", "—", "sampled (itnas sample)", "—", fmt_pm(err),
                     f"{len(cells)} × {len(cells[0].seeds)}", "—", "—", "—", "—", fmt_num(millions(params)),
                     "0", "0", "—", "—"])
        csv_rows.append({"variant": "random", "setting": "sampled", "error_mean": mean, "error_std": std,
                         "n_seeds": len(err), "params_m": millions(params), "search_gpu_days": 0, "n_searches": 0})
    notes = ["The DARTS rows' paper number (2.76 %) is given in the text of section 4.1.2 and is DARTS in "
             "its own setting (second order, 8 ops with none): our darts variant is the ablation's base "
             "(first order, 7 ops, as the other variants); darts_2nd, when searched, is DARTS's own setting.",
             "Each variant: the best of its searches (by itnas select) retrained over the seeds shown. "
             "Searched cells: held-out error of every searched cell after the selection's short training, "
             "mean ± std (min–max, count). Cell changes with τ: mean over searches of the kept edges / ops "
             "that change when the cell is derived at each temperature instead of its own.",
             "Search: the searches a variant's cells come from. Variants that differ only in how a cell is "
             "derived (gumbel_transition with the DARTS rule, itnas with TIEP) share one search per seed and "
             "each derives its own cell from it, so the TIEP step compares derivations of the same searches; "
             "a shared search's cost is counted once" + (f" (all searches of this run: {total:.3f} GPU-days)."
                                                          if total is not None else ".")
             + " Cell changes with τ: a search records it for each derivation rule, and each row shows its "
             "own rule's ('—' where the searches recorded only their own rule, before 2026-12-07).",
             RANDOM_NOTE] + ([RANDOM_SEARCH_NOTE] if best is not None else [])
    standin = inp.standin(groups + [inp.search_group(v) for v in VARIANTS])
    return Table("table2", titled(spec["title"], standin, inp.roles, [bench]), headers, rows, fields,
                 csv_rows, notes)
