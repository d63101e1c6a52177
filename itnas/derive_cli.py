"""`itnas derive`: turn an arch-state file into a genotype with TIEP or the DARTS rule."""

from __future__ import annotations

import argparse
import json

from itnas.cli import HelpFormatter


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "derive", formatter_class=HelpFormatter,
        help="derive a genotype from an arch-state file",
        description="Read an itnas-arch-state/1 file (from a search, or written by hand) and derive\n"
                    "the cell with TIEP (Algorithm 1 with Eq. 15; needs transition matrices) or the\n"
                    "DARTS top-2 rule (for transition states, after the topology initialisation).")
    p.add_argument("--arch-state", required=True, metavar="FILE", help="itnas-arch-state/1 JSON file")
    p.add_argument("--method", required=True, choices=("tiep", "darts"))
    p.add_argument("--out", required=True, metavar="FILE", help="genotype JSON to write (atomically)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from itnas.derive import derive
    from itnas.formats import load_arch_state, save_genotype

    genotype = derive(load_arch_state(args.arch_state), args.method)
    save_genotype(args.out, genotype)
    print(json.dumps(genotype.to_json()))
    return 0
