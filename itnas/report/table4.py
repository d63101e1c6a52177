"""Table 4: transfer to CINIC-10, CIFAR-100 and SVHN beside the paper's rows."""

from __future__ import annotations

from typing import Any

from itnas.report.inputs import (
    BENCHMARK_NAMES,
    Inputs,
    display_name,
    label_order,
    paper_ref,
    published_row,
    titled,
)
from itnas.report.numbers import (
    fmt_diff,
    fmt_num,
    fmt_pm,
    mean_std,
)
from itnas.report.render import Table


def table4(inp: Inputs) -> Table:
    spec = inp.published["table4"]
    benches = list(spec.get("benchmarks", ["cinic10", "cifar100", "svhn"]))
    names = [BENCHMARK_NAMES.get(b, b) for b in benches]
    headers = ["Architecture", "Source"] + names + ["Seeds"] + [f"Δ {n} vs paper (− = lower error)" for n in names]
    fields = ["architecture", "source", "label"]
    for b in benches:
        fields += [f"{b}_mean", f"{b}_std", f"{b}_n", f"{b}_paper", f"{b}_diff"]
    rows, csv_rows, groups = [], [], []
    for row in spec["rows"]:
        rows.append([row["name"], paper_ref(row)] + [fmt_num(row.get(b)) for b in benches] + [""]
                    + ["" for _ in benches])
        csv_rows.append({"architecture": row["name"], "source": "paper",
                         **{f"{b}_mean": row.get(b) for b in benches}})
    labels = sorted({label for b in benches for label in inp.labels_on(b)}, key=label_order)
    for label in labels:
        paper = published_row(spec, spec.get("compare", {}).get(label))
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
    return Table("table4", titled(spec["title"], inp.standin(groups), inp.roles, benches), headers, rows,
                 fields, csv_rows, notes)
