"""`itnas select`: pick the best of several genotypes by short training on held-out training data."""

from __future__ import annotations

import argparse
import json

from itnas.cli import HelpFormatter, add_config_args
from itnas.train_cli import add_run_args, forwarded_argv, gpu_lease, launch_torchrun, prepare

DESCRIPTION = """\
Short-training selection, the DARTS protocol the family follows: train each candidate genotype
from scratch for selection.epochs epochs (config entry; DARTS: 100) on selection.train_portion of
the TRAINING set, score it on the held-out rest of the training set (never the test set), and
keep the most accurate (ties go to the candidate listed first).

The output folder gets selection.json (every candidate with its held-out accuracy, the winner, the
epochs), genotype.json (a copy of the winner) and candidates/<genotype hash>/ (one resumable run
folder per candidate: run the same command again after an interruption and finished candidates
are not retrained). The training recipe is the one of `itnas train` (same config file)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("select", formatter_class=HelpFormatter, description=DESCRIPTION,
                       help="choose among genotypes by short training (resumable)")
    add_config_args(p)
    p.add_argument("--genotypes", nargs="+", required=True, metavar="NAME_OR_FILE",
                   help="candidate genotypes: published names or genotype JSON files")
    add_run_args(p)
    p.add_argument("--out", required=True, metavar="DIR", help="selection folder (created; resumed)")
    p.add_argument("--json", action="store_true", help="print selection.json on stdout at the end")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg, spec = prepare(args, "select")
    from itnas.formats import resolve_genotype

    candidates = [resolve_genotype(g) for g in args.genotypes]
    with gpu_lease(args, cfg["device"]):
        rc = launch_torchrun(args, forwarded_argv(args, "select", ["--genotypes", *args.genotypes, "--out", args.out]
                                                  + (["--json"] if args.json else [])))
        if rc is not None:
            return rc
        from itnas import distributed
        from itnas.select import holdout_data, select

        ctx, device = distributed.init_from_env(cfg["device"])
        try:
            data = holdout_data(spec.name, cfg, cfg["data_root"], args.seed, device)
            result = select(cfg, candidates, data, args.out, args.seed, ctx, device)
        finally:
            distributed.shutdown()
    if args.json and ctx.is_main:
        print(json.dumps(result))
    return 0
