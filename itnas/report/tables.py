"""The paper's Tables 1-4 regenerated from run folders, beside the published numbers.

The pieces, one file each, so that adding a table or a column touches one file:
report/runs.py reads the run files, report/inputs.py groups what the builders share,
report/table1.py .. table4.py build one table each, report/numbers.py formats numbers and
report/render.py writes a table as Markdown, CSV, LaTeX and HTML. This module ties them
together: `build` reads the runs and builds the tables, `write` writes them.

Each reproduced row is the mean +- sample std over seeds, with the number of seeds, params and
MACs from the runs, the search cost in GPU-days (mean per search) and the difference to the
paper's number for the row it reproduces (`compare` in config/paper/published.yaml). Tables built
from stand-in data say so in their titles. Given a claims file, `build` puts the claims table
(report/claims.py: a verdict per claim of the paper) first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from itnas.errors import UserError
from itnas.files import read_yaml, write_text
from itnas.report.claims import claims_table, load_claims
from itnas.report.inputs import Inputs
from itnas.report.render import Table
from itnas.report.runs import check_complete, load_runs, load_selections
from itnas.report.table1 import table1
from itnas.report.table2 import table2
from itnas.report.table3 import table3
from itnas.report.table4 import table4

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
          roles: dict[str, str] | None = None, tables: Sequence[str] = tuple(BUILDERS),
          claims: str | Path | None = None) -> list[Table]:
    pub = load_published(published) if not isinstance(published, dict) else published
    claim_list = load_claims(claims, pub) if claims is not None else None  # a bad file fails first
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
    built = [BUILDERS[name](inp) for name in tables]
    return ([claims_table(inp, claim_list)] if claim_list is not None else []) + built


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
