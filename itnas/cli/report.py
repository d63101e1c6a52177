"""`itnas tables` (the paper's Tables 1-4 from run folders) and `itnas plot` (cell drawings and
search curves): the commands that report, torch-free."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from itnas.cli.common import HelpFormatter
from itnas.data.registry import get_spec
from itnas.errors import UserError
from itnas.files import output_path, read_json
from itnas.genotypes import resolve_genotype
from itnas.layout import parse_seed_folder
from itnas.report import inputs, plots, tables

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    _register_tables(sub)
    _register_plot(sub)


def _register_tables(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tables", formatter_class=HelpFormatter,
        help="write Tables 1-4 and the verdicts (md, csv, tex, html)",
        description="Tabulate the reproduction beside the paper's numbers.\n\n"
                    "Run files follow the workflow layout:\n"
                    "  .../search/DATASET/SEARCH/seedS/metrics.json\n"
                    "  .../select/DATASET/VARIANT/selection.json\n"
                    "  .../train/DATASET/LABEL/seedS/metrics.json\n"
                    "(itnas/layout.py; SEARCH: the variant, or the one whose search it shares)\n"
                    "Reproduced rows are mean +- std over seeds; a missing seed is an error,\n"
                    "never a mean over fewer. Tables from stand-in data say so in their titles.\n\n"
                    "Each table is written four times: tableN.md (Markdown), tableN.csv (plain CSV:\n"
                    "one header line, no title), tableN.tex (a LaTeX table; needs booktabs and\n"
                    "amssymb) and tableN.html (a page for the Snakemake report).\n\n"
                    "With --claims FILE (config/paper/claims.yaml) a claims table comes first: each of the\n"
                    "paper's claims with its value, ours with a 95 % interval and a verdict\n"
                    "(reproduced / not reproduced / holds / reversed / undecided; docs/method.md),\n"
                    "written as claims.{md,csv,tex,html} and printed at the end.\n\n"
                    "The workflow (rule tables) names every configured run's file; for the smoke\n"
                    "configuration, in short:\n"
                    "  itnas tables --published config/paper/published.yaml --out-dir results/smoke/tables \\\n"
                    "    --benchmark cifar10=synthetic-cifar10 ... --benchmark imagenet=synthetic-imagenet \\\n"
                    "    --search results/smoke/search/*/*/seed*/metrics.json \\\n"
                    "    --select results/smoke/select/*/*/selection.json \\\n"
                    "    --train results/smoke/train/*/*/seed*/metrics.json")
    p.add_argument("--published", required=True, metavar="FILE",
                   help="the paper's numbers (config/paper/published.yaml)")
    p.add_argument("--out-dir", required=True, metavar="DIR", help="where tableN.{md,csv,tex,html} go")
    p.add_argument("--search", nargs="*", default=[], metavar="FILE", help="search metrics.json files")
    p.add_argument("--select", nargs="*", default=[], metavar="FILE",
                   help="selection.json files (Table 2's selected seed)")
    p.add_argument("--train", nargs="*", default=[], metavar="FILE", help="training metrics.json files")
    p.add_argument("--benchmark", action="append", default=[], metavar="BENCH=DATASET",
                   help="which dataset plays a paper benchmark, e.g. cifar10=synthetic-cifar10 "
                        "(repeatable; default: synthetic-X plays X, X plays itself)")
    p.add_argument("--tables", nargs="*", default=["table1", "table2", "table3", "table4"],
                   metavar="NAME", help="which tables to write (default: all four)")
    p.add_argument("--claims", metavar="FILE",
                   help="the paper's claims to give verdicts (config/paper/claims.yaml); the claims table is "
                        "written as claims.* and printed to the log")
    p.add_argument("--print", dest="show", action="store_true", help="also print the Markdown")
    p.set_defaults(func=run_tables)


def _register_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", formatter_class=HelpFormatter, help="draw cells and search curves",
                       description="Figures with matplotlib only (no graphviz).")
    psub = p.add_subparsers(dest="plot_command", metavar="FIGURE", required=True)
    cell = psub.add_parser("cell", formatter_class=HelpFormatter,
                           help="draw a genotype's normal and reduction cells",
                           description="Draw the normal and reduction cells of a genotype "
                                       "(a genotype.json or a registered name such as DARTS_V2).")
    cell.add_argument("--genotype", required=True, metavar="NAME_OR_FILE",
                      help="a published genotype (DARTS_V2, ...) or a genotype JSON file")
    cell.add_argument("--out", required=True, metavar="FILE", help="the figure: .png, .pdf or .svg")
    cell.add_argument("--title", help="figure title")
    cell.set_defaults(func=run_plot_cell)
    curves = psub.add_parser("curves", formatter_class=HelpFormatter,
                             help="temperature, edge-weight entropy and accuracy per search epoch",
                             description="Plot the per-epoch history.json of one or more searches "
                                         "(one colour per file, labelled by its seedN folder): the "
                                         "Gumbel temperature (when the searches have one), the "
                                         "edge-weight entropy of the normal and reduction cells, and "
                                         "the accuracy on the weight and architecture halves.")
    curves.add_argument("--history", nargs="+", required=True, metavar="FILE",
                        help="history.json files of one variant's searches")
    curves.add_argument("--out", required=True, metavar="FILE", help="the figure: .png, .pdf or .svg")
    curves.add_argument("--title", help="figure title")
    curves.set_defaults(func=run_plot_curves)


def check_figure_out(out: str) -> None:
    output_path(out, "--out", folder=False)
    plots.figure_format(out)


def run_plot_cell(args: argparse.Namespace) -> int:
    check_figure_out(args.out)
    genotype, label = resolve_genotype(args.genotype)  # without torch: the workflow's plots stay light
    label = f"{label} (hash {genotype.hash()})"
    plots.draw_genotype(genotype, args.out, args.title or label)
    log.info("drew %s -> %s", label, args.out)
    return 0


def _history_label(path: Path) -> str:
    """A search's curve is labelled by its seed (its folder seedS), else by its folder's name."""
    seed = parse_seed_folder(path.parent.name)
    return f"seed {seed}" if seed is not None else path.parent.name or path.stem


def run_plot_curves(args: argparse.Namespace) -> int:
    check_figure_out(args.out)
    histories = {}
    for raw in args.history:
        path = Path(raw)
        records = read_json(path, "search history")
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise UserError(f"{path}: expected a list of per-epoch records")
        histories[_history_label(path)] = records
    plots.plot_search_curves(histories, args.out, args.title)
    log.info("plotted %d histories -> %s", len(histories), args.out)
    return 0


def parse_roles(items: list[str]) -> dict[str, str]:
    roles = {}
    for item in items:
        bench, sep, dataset = (part.strip() for part in item.partition("="))
        if not sep or not bench or not dataset:
            raise UserError(f"--benchmark '{item}': expected BENCH=DATASET, e.g. cifar10=synthetic-cifar10")
        if bench not in inputs.BENCHMARK_NAMES:
            raise UserError(f"--benchmark '{item}': unknown benchmark '{bench}' "
                            f"(expected one of: {', '.join(inputs.BENCHMARK_NAMES)})")
        try:
            get_spec(dataset)
        except UserError as exc:
            raise UserError(f"--benchmark '{item}': {exc}") from None
        if bench in roles:
            raise UserError(f"--benchmark '{item}': {bench} is already played by {roles[bench]}")
        roles[bench] = dataset
    return roles


def run_tables(args: argparse.Namespace) -> int:
    output_path(args.out_dir, "--out-dir", folder=True)
    built = tables.build(args.published, args.search, args.train, args.select,
                         parse_roles(args.benchmark), args.tables, args.claims)
    written = tables.write(built, args.out_dir)
    for table in built:
        log.info("%s: %s", table.name, table.title)
        if args.show:
            print(table.markdown())
    log.info("wrote %d files to %s", len(written), args.out_dir)
    if args.claims:  # the verdicts, where a user looks after a run: the terminal and the job's log
        log.info("the claims' verdicts (%s):\n%s", Path(args.out_dir) / "claims.md", built[0].markdown())
    return 0
