"""`itnas stats`: parameters and MACs of an evaluation network, or the size of a search supernet."""

from __future__ import annotations

import argparse
import json

from itnas import variants
from itnas.cli.common import HelpFormatter
from itnas.config import check_value
from itnas.errors import UserError
from itnas.genotypes import resolve_genotype

DESCRIPTION = """\
Model statistics (docs/training.md, "itnas stats").

  itnas stats --genotype NAME_OR_FILE --dataset NAME [--layers L] [--init-channels C] [--json]
      {"params", "params_with_aux", "macs"} of the evaluation network: params without the
      auxiliary head (as DARTS counts them), params with it, and the multiply-accumulates of one
      forward pass of one image at the dataset's evaluation resolution (32 px for CIFAR-like
      datasets, 224 px for ImageNet). MACs come from torch's FlopCounterMode (flops / 2) and, as
      the DARTS family counts them, cover convolutions and the classifier only: pooling,
      BatchNorm, ReLU and additions are not counted. Defaults: 20 cells / C=36 for CIFAR-like
      datasets, 14 cells / C=48 for ImageNet.

  itnas stats --supernet --variant V --dataset NAME [--layers L] [--init-channels C] [--json]
      {"weights", "arch_params"} of the search supernet of variant V."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", formatter_class=HelpFormatter, description=DESCRIPTION,
                       help="parameters and MACs of a network")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--genotype", metavar="NAME_OR_FILE",
                      help="a published genotype (DARTS_V1, DARTS_V2, ...) or a genotype JSON file")
    what.add_argument("--supernet", action="store_true", help="count the search supernet instead")
    p.add_argument("--variant", choices=variants.NAMES, help="search variant (with --supernet)")
    p.add_argument("--dataset", required=True, metavar="NAME",
                   help="decides the protocol, the number of classes and the resolution")
    p.add_argument("--layers", type=int, metavar="L", help="cells (default: the protocol's)")
    p.add_argument("--init-channels", type=int, metavar="C",
                   help="initial channels C (default: the protocol's)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a sentence")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    kind = "search" if args.supernet else "train"  # the flags take what the config keys take
    for flag, value, key in (("--layers", args.layers, "model.layers"),
                             ("--init-channels", args.init_channels, "model.init_channels")):
        if value is not None:
            check_value(kind, key, value, flag)
    if args.supernet:
        if not args.variant:
            raise UserError(f"--supernet needs --variant ({', '.join(variants.NAMES)})")
        from itnas.train.stats import supernet_stats

        result = supernet_stats(variants.get(args.variant), args.dataset, args.layers, args.init_channels)
        text = f"{args.variant} supernet on {args.dataset}: {result['weights']:,} weights, " \
               f"{result['arch_params']:,} architecture parameters"
    else:
        if args.variant:
            raise UserError("--variant goes with --supernet; an evaluation network has none")
        from itnas.train.stats import dataset_stats

        genotype, label = resolve_genotype(args.genotype)
        result = dataset_stats(genotype, args.dataset, args.layers, args.init_channels)
        text = (f"{label} on {args.dataset}: {result['params']:,} params "
                f"({result['params'] / 1e6:.2f}M; {result['params_with_aux']:,} with the auxiliary "
                f"head), {result['macs'] / 1e6:.1f}M MACs")
    print(json.dumps(result) if args.json else text)
    return 0
