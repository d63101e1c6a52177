"""Table 1: CIFAR-10 error, params and search cost of the reproduced cells beside the paper's
rows, with each row's difference to the paper and to random cells."""

from __future__ import annotations

import statistics

from itnas.report.inputs import (
    DIFF_PAPER,
    DIFF_RANDOM,
    RANDOM_NAME,
    RANDOM_NOTE,
    RANDOM_SEARCH_NOTE,
    Inputs,
    display_name,
    paper_ref,
    published_row,
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
    mean_std,
    millions,
)
from itnas.report.render import Table


def table1(inp: Inputs) -> Table:
    spec = inp.published["table1"]
    bench = spec.get("benchmark", "cifar10")
    headers = ["Architecture", "Source", "Error (%)", "Seeds", "Params (M)", "MACs (M)",
               "Search cost (GPU-days)", "Paper error (%)", DIFF_PAPER, DIFF_RANDOM]
    fields = ["architecture", "source", "label", "dataset", "error_mean", "error_std", "n_seeds",
              "seeds", "params_m", "macs_m", "search_gpu_days", "paper_row", "paper_error", "diff",
              "diff_random", "diff_random_low", "diff_random_high"]
    rows, csv_rows = [], []
    for row in spec["rows"]:
        rows.append([row["name"], paper_ref(row), fmt_num(row["error"]), "", fmt_num(row.get("params_m"), 1),
                     "—", fmt_num(row.get("cost_gpu_days")), "", "", ""])
        csv_rows.append({"architecture": row["name"], "source": "paper", "error_mean": row["error"],
                         "params_m": row.get("params_m"), "search_gpu_days": row.get("cost_gpu_days")})
    groups = []
    for label in inp.labels_on(bench):
        g = inp.train_group(bench, label)
        groups.append(g)
        err = g.values("test_top1_err")
        paper = published_row(spec, spec.get("compare", {}).get(label))
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
                         "diff": mean - paper["error"] if paper else None, **random_fields(vs_random)})
    best = inp.random_search(bench)
    if best is not None:
        groups.append(best)
        err, params, macs = best.values("test_top1_err"), best.optional("params"), best.optional("macs")
        mean, std = mean_std(err)
        vs_random = inp.vs_random(bench, err)
        name = random_search_name(len(inp.random_search_candidates()))
        rows.append([name, "reproduced", fmt_pm(err), str(len(err)), fmt_num(millions(params)),
                     fmt_num(millions(macs), 0), "0", "—", "—", fmt_interval(vs_random)])
        csv_rows.append({"architecture": name, "source": "reproduced", "label": "random_search",
                         "dataset": best.dataset, "error_mean": mean, "error_std": std, "n_seeds": len(err),
                         "seeds": " ".join(map(str, best.seeds)), "params_m": millions(params),
                         "macs_m": millions(macs), "search_gpu_days": 0, **random_fields(vs_random)})
    random_cells = random_row(inp, bench)
    if random_cells is not None:
        cells, err, params, macs = random_cells
        groups.extend(cells)
        mean, std = mean_std(err)
        rows.append([RANDOM_NAME, "reproduced", fmt_pm(err), f"{len(cells)} × {len(cells[0].seeds)}",
                     fmt_num(millions(params)), fmt_num(millions(macs), 1), "—", "—", "—", "—"])
        csv_rows.append({"architecture": RANDOM_NAME, "source": "reproduced", "label": "random",
                         "dataset": cells[0].dataset, "error_mean": mean, "error_std": std, "n_seeds": len(err),
                         "seeds": " ".join(map(str, cells[0].seeds)), "params_m": millions(params), "macs_m": millions(macs)})
    standin = inp.standin(groups)
    notes = ["Reproduced rows: mean ± sample std of the test error over training seeds; search cost is "
             "the mean GPU-days of one search of that variant (selection and evaluation excluded); "
             "variants that search alike share their searches (itnas derives its cells from "
             "gumbel_transition's), so both rows show the cost of those same searches, run once.",
             "Our darts variant searches first order by default, so it is compared with DARTS (1st); "
             "darts_2nd, DARTS in its own setting, with DARTS (2nd).",
             RANDOM_NOTE] + ([RANDOM_SEARCH_NOTE] if best is not None else [])
    return Table("table1", titled(spec["title"], standin, inp.roles, [bench]), headers, rows, fields,
                 csv_rows, notes)
