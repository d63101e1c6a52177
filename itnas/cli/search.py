"""`itnas search` (run or resume one architecture search) and `itnas derive` (a genotype from an
arch-state file): the commands of the search stage (docs/method.md)."""

from __future__ import annotations

import argparse
import json

from itnas import variants
from itnas.cli.common import HelpFormatter, add_config_args
from itnas.gpu_lease import lease_for


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search", formatter_class=HelpFormatter,
        help="search a cell with ITNAS or one of its ablations",
        description="Search a DARTS-space cell on the weight/architecture halves of a training set.\n\n"
                    "The output folder gets arch_state.json (itnas-arch-state/1), genotype.json\n"
                    "(derived with the variant's method: TIEP for itnas, the DARTS rule otherwise),\n"
                    "metrics.json, history.json (one record per epoch) and checkpoint.pt.\n"
                    "Run the same command again after an interruption and it resumes.\n\n"
                    "Variants (Table 2 of the paper):\n" + variants.help_text())
    add_config_args(p)
    p.add_argument("--variant", choices=variants.NAMES,
                   help="sets the config flags arch.gumbel/transition/tiep; default: the config's flags")
    p.add_argument("--seed", type=int, required=True, help="seeds the split, the weights and the noise")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder (created; resumed if it holds this run)")
    p.add_argument("--dataset", help="dataset to search on (overrides the config's `dataset`)")
    p.add_argument("--data-root", metavar="DIR", help="dataset folder (overrides `data_root`)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides `runtime.device`)")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON on stdout")
    p.set_defaults(func=run_search)

    d = sub.add_parser(
        "derive", formatter_class=HelpFormatter,
        help="derive a genotype from an arch-state file",
        description="Read an itnas-arch-state/1 file (from a search, or written by hand) and derive\n"
                    "the cell with TIEP (Algorithm 1 with Eq. 15; needs transition matrices) or the\n"
                    "DARTS top-2 rule (for transition states, after the topology initialisation).")
    d.add_argument("--arch-state", required=True, metavar="FILE", help="itnas-arch-state/1 JSON file")
    d.add_argument("--method", required=True, choices=variants.DERIVE_METHODS,
                   help="tiep (itnas) or darts (the other variants)")
    d.add_argument("--out", required=True, metavar="FILE", help="genotype JSON to write (atomically)")
    d.add_argument("--name", help="the genotype's name, written into the file: the runs that train "
                                  "it show it, e.g. `itnas select`'s candidates (the workflow passes "
                                  "VARIANT-seedS)")
    d.set_defaults(func=run_derive)


def load_search_config(args: argparse.Namespace) -> dict:
    from itnas.config import load_config
    from itnas.search.loop import check_search_config

    overrides = list(args.overrides)
    if args.variant:
        overrides += variants.get(args.variant).overrides()
    if args.dataset:
        overrides.append(f"dataset={args.dataset}")
    if args.data_root:
        overrides.append(f"data_root={json.dumps(args.data_root)}")
    if args.device:
        overrides.append(f"runtime.device={args.device}")
    return load_config(args.config, "search", overrides, check=check_search_config)


def run_search(args: argparse.Namespace) -> int:
    cfg = load_search_config(args)  # every config error surfaces here, before any work
    from itnas.search.loop import run_search as search

    with lease_for(cfg["runtime"]["device"], 1):
        metrics = search(cfg, args.seed, args.out)
    if args.json:
        print(json.dumps(metrics))
    return 0


def run_derive(args: argparse.Namespace) -> int:
    from itnas.formats import load_arch_state
    from itnas.search.derive import derive
    from itnas.space import save_genotype

    genotype = derive(load_arch_state(args.arch_state), args.method)
    save_genotype(args.out, genotype, **({"name": args.name} if args.name else {}))
    print(json.dumps(genotype.to_json()))
    return 0
