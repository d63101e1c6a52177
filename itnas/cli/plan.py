"""`itnas plan`: what a workflow config's budget can decide, per claim of the paper, before it
runs (itnas/plan.py); torch-free."""

from __future__ import annotations

import argparse
import json

from itnas.cli.common import HelpFormatter


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan", formatter_class=HelpFormatter,
        help="what a config's budget can decide, claim by claim, before it runs",
        description="Plan a run before spending it. For each claim of the claims file: the power the\n"
                    "config's seeds and searches give (two-sided test at 5 %%, normal approximation),\n"
                    "the seeds (and searches) needed for 80 %% power, and the GPU-hours of the planned\n"
                    "run and of a run that decides each claim.\n\n"
                    "The config is config/config.yaml with each --configfile merged over it in order,\n"
                    "as Snakemake does (mappings merged, lists replaced). Spreads come from the\n"
                    "noise model (the literature, each value cited), job costs from the costs file\n"
                    "(README.md's measured figures); --from-run uses the spreads and `gpu_hours` a\n"
                    "finished run measured instead. Example:\n"
                    "  itnas plan --configfile config/config.yaml\n"
                    "  itnas plan --configfile config/decide.yaml\n"
                    "  itnas plan --configfile config/smoke.yaml --from-run results/smoke")
    p.add_argument("--configfile", action="append", default=[], metavar="FILE",
                   help="a workflow config or overlay (repeatable, applied in order over config/config.yaml)")
    p.add_argument("--from-run", metavar="RESULTS_DIR",
                   help="a finished run's results folder: use the spreads and job costs it measured")
    p.add_argument("--claims", default="config/paper/claims.yaml", metavar="FILE", help="the paper's claims")
    p.add_argument("--published", default="config/paper/published.yaml", metavar="FILE",
                   help="the paper's numbers (the claims' values)")
    p.add_argument("--noise", default="config/plan/noise.yaml", metavar="FILE",
                   help="the noise model: seed, search and random-cell spreads, each cited")
    p.add_argument("--costs", default="config/plan/costs.yaml", metavar="FILE", help="GPU-hours per job")
    p.add_argument("--json", action="store_true", help="print JSON instead of the Markdown table")
    p.set_defaults(func=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    from itnas.plan import plan

    report = plan(args.configfile, args.claims, args.published, args.noise, args.costs, args.from_run)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.markdown(), end="" if not args.json else "\n")
    return 0
