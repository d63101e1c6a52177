"""`itnas tables`: regenerate the paper's Tables 1-4 (Markdown, CSV, LaTeX) from run folders."""

from __future__ import annotations

import argparse
import logging

from itnas.cli import HelpFormatter
from itnas.errors import UserError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tables", formatter_class=HelpFormatter,
        help="write Tables 1-4 (md, csv, tex) from search and training metrics",
        description="Tabulate the reproduction beside the paper's numbers.\n\n"
                    "Run files follow the workflow layout:\n"
                    "  .../search/DATASET/VARIANT/seedS/metrics.json\n"
                    "  .../select/DATASET/VARIANT/selection.json\n"
                    "  .../train/DATASET/GENOTYPE/seedS/metrics.json\n"
                    "Reproduced rows are mean +- std over seeds; a missing seed is an error,\n"
                    "never a mean over fewer. Tables from stand-in data say so in their titles.\n\n"
                    "Example:\n"
                    "  itnas tables --published config/published.yaml --out-dir results/tables \\\n"
                    "    --search results/search/*/*/seed*/metrics.json \\\n"
                    "    --train results/train/*/*/seed*/metrics.json")
    p.add_argument("--published", required=True, metavar="FILE",
                   help="the paper's numbers (config/published.yaml)")
    p.add_argument("--out-dir", required=True, metavar="DIR", help="where tableN.{md,csv,tex} go")
    p.add_argument("--search", nargs="*", default=[], metavar="FILE", help="search metrics.json files")
    p.add_argument("--select", nargs="*", default=[], metavar="FILE", help="selection.json files")
    p.add_argument("--train", nargs="*", default=[], metavar="FILE", help="training metrics.json files")
    p.add_argument("--benchmark", action="append", default=[], metavar="BENCH=DATASET",
                   help="which dataset plays a paper benchmark, e.g. cifar10=synthetic-cifar10 "
                        "(repeatable; default: synthetic-X plays X, X plays itself)")
    p.add_argument("--tables", nargs="*", default=["table1", "table2", "table3", "table4"],
                   metavar="NAME", help="which tables to write")
    p.add_argument("--print", dest="show", action="store_true", help="also print the Markdown")
    p.set_defaults(func=run)


def parse_roles(items: list[str]) -> dict[str, str]:
    roles = {}
    for item in items:
        bench, sep, dataset = item.partition("=")
        if not sep or not bench.strip() or not dataset.strip():
            raise UserError(f"--benchmark '{item}': expected BENCH=DATASET, e.g. cifar10=synthetic-cifar10")
        roles[bench.strip()] = dataset.strip()
    return roles


def run(args: argparse.Namespace) -> int:
    from itnas import tables

    built = tables.build(args.published, args.search, args.train, args.select,
                         parse_roles(args.benchmark), args.tables)
    written = tables.write(built, args.out_dir)
    for table in built:
        log.info("%s: %s", table.name, table.title)
        if args.show:
            print(table.markdown())
    log.info("wrote %d files to %s", len(written), args.out_dir)
    return 0
