"""Table 3: ImageNet top-1 / top-5 of the transferred cells beside the paper's rows."""

from __future__ import annotations

import statistics

from itnas.report.inputs import (
    Inputs,
    display_name,
    paper_ref,
    published_row,
    titled,
)
from itnas.report.numbers import (
    fmt_diff,
    fmt_num,
    fmt_pm,
    mean_std,
    millions,
)
from itnas.report.render import Table


def table3(inp: Inputs) -> Table:
    spec = inp.published["table3"]
    bench = spec.get("benchmark", "imagenet")
    headers = ["Architecture", "Source", "Top-1 (%)", "Top-5 (%)", "Seeds", "Params (M)", "FLOPs (M)",
               "Search cost (GPU-days)", "Method", "Paper top-1 (%)",
               "Δ top-1 vs paper (− = lower error than paper)"]
    fields = ["architecture", "source", "label", "dataset", "top1_mean", "top1_std", "top5_mean",
              "top5_std", "n_seeds", "seeds", "params_m", "flops_m", "search_gpu_days", "method",
              "paper_row", "paper_top1", "diff_top1"]
    rows, csv_rows, groups = [], [], []
    for row in spec["rows"]:
        rows.append([row["name"], paper_ref(row), fmt_num(row["top1"]), fmt_num(row.get("top5")), "",
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
        paper = published_row(spec, spec.get("compare", {}).get(label))
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
    return Table("table3", titled(spec["title"], inp.standin(groups), inp.roles, [bench]), headers, rows,
                 fields, csv_rows, notes)
