"""`itnas search`: run or resume one architecture search (SPEC section 6)."""

from __future__ import annotations

import argparse
import json

from itnas.cli import HelpFormatter, add_config_args

VARIANTS = ("darts", "gumbel", "gumbel_transition", "itnas")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search", formatter_class=HelpFormatter,
        help="search a cell with ITNAS or one of its ablations",
        description="Search a DARTS-space cell on the weight/architecture halves of a training set.\n\n"
                    "The output folder gets arch_state.json (itnas-arch-state/1), genotype.json\n"
                    "(derived with the variant's method: TIEP for itnas, the DARTS rule otherwise),\n"
                    "metrics.json, history.json (one record per epoch) and checkpoint.pt.\n"
                    "Run the same command again after an interruption and it resumes.\n\n"
                    "Variants (Table 2 of the paper):\n"
                    "  darts              softmax on every edge, DARTS top-2 derivation\n"
                    "  gumbel             annealed Gumbel-softmax on every edge, DARTS top-2\n"
                    "  gumbel_transition  Gumbel outer edges, transition inner edges, DARTS top-2\n"
                    "  itnas              Gumbel outer edges, transition inner edges, TIEP")
    add_config_args(p)
    p.add_argument("--variant", choices=VARIANTS,
                   help="sets the config flags arch.gumbel/transition/tiep; default: the config's flags")
    p.add_argument("--seed", type=int, required=True, help="seeds the split, the weights and the noise")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder (created; resumed if it holds this run)")
    p.add_argument("--dataset", help="dataset to search on (overrides the config's `dataset`)")
    p.add_argument("--data-root", metavar="DIR", help="dataset folder (overrides `data_root`)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides `runtime.device`)")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON on stdout")
    p.set_defaults(func=run)


def load_search_config(args: argparse.Namespace) -> dict:
    from itnas.config import load_config
    from itnas.policies import VARIANT_FLAGS
    from itnas.search import check_search_config

    overrides = list(args.overrides)
    if args.variant:
        overrides += [f"arch.{k}={str(v).lower()}" for k, v in VARIANT_FLAGS[args.variant].items()]
    if args.dataset:
        overrides.append(f"dataset={args.dataset}")
    if args.data_root:
        overrides.append(f"data_root={json.dumps(args.data_root)}")
    if args.device:
        overrides.append(f"runtime.device={args.device}")
    return load_config(args.config, "search", overrides, check=check_search_config)


def run(args: argparse.Namespace) -> int:
    cfg = load_search_config(args)  # every config error surfaces here, before torch loads
    from itnas.gpu_lease import lease_for
    from itnas.search import run_search

    with lease_for(cfg["runtime"]["device"], 1):
        result = run_search(cfg, args.seed, args.out)
    if args.json:
        print(json.dumps(result.metrics))
    return 0

