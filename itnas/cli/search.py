"""`itnas search` (run or resume one architecture search), `itnas derive` (a genotype from an
arch-state file) and `itnas sample` (a random cell of the search space, the baseline every
searched cell is compared with): the commands that make genotypes (SPEC section 6)."""

from __future__ import annotations

import argparse
import json
import logging

from itnas import variants
from itnas.cli.common import HelpFormatter, add_config_args, check_seed
from itnas.files import output_path
from itnas.gpu_lease import lease_for
from itnas.layout import random_name
from itnas.space import sample_genotype, save_genotype

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search", formatter_class=HelpFormatter,
        help="search a cell with ITNAS or one of its ablations",
        description="Search a DARTS-space cell on the weight/architecture halves of a training set.\n\n"
                    "The output folder gets arch_state.json (itnas-arch-state/1), genotype.json\n"
                    "(derived with the variant's method: TIEP for itnas, the DARTS rule otherwise),\n"
                    "metrics.json, history.json (one record per epoch) and checkpoint.pt.\n"
                    "Run the same command again after an interruption and it resumes.\n\n"
                    "Variants (the paper's Table 2, and DARTS in its own setting):\n" + variants.help_text())
    add_config_args(p)
    p.add_argument("--variant", choices=variants.NAMES,
                   help="sets the config flags arch.gumbel/transition/tiep (and, for darts_2nd, arch.none_op "
                        "and arch_optim.order); default: the config's")
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
    d.add_argument("--tau", type=float, metavar="T",
                   help="derivation temperature: the outer edges' softmax(alpha / T); default: the one the "
                        "search recorded in the arch state (its derive.tau), else derive.tau: auto for the "
                        "variant it records (0.5 for Gumbel variants, 1 for softmax ones); a state with "
                        "neither needs --tau. The genotype file records the temperature (derive_tau)")
    d.add_argument("--out", required=True, metavar="FILE", help="genotype JSON to write (atomically)")
    d.add_argument("--name", help="the genotype's name, written into the file: the runs that train "
                                  "it show it, e.g. `itnas select`'s candidates (the workflow passes "
                                  "VARIANT-seedS)")
    d.set_defaults(func=run_derive)

    r = sub.add_parser(
        "sample", formatter_class=HelpFormatter,
        help="draw a random cell of the search space (the random baseline)",
        description="Write a genotype drawn uniformly from the search space: each intermediate node\n"
                    "takes 2 distinct inputs among its predecessors and each of those edges one of\n"
                    "the 7 operations, uniformly; normal and reduction cell independently. The same\n"
                    "seed gives the same cell on any machine. The workflow trains such cells under\n"
                    "the searched cells' protocol (`evaluate.BENCHMARK.random: N`).")
    r.add_argument("--seed", type=int, required=True, help="which random cell (0, 1, ...)")
    r.add_argument("--out", required=True, metavar="FILE", help="genotype JSON to write (atomically)")
    r.set_defaults(func=run_sample)


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
    check_seed(args.seed)
    output_path(args.out, "--out", folder=True)
    cfg = load_search_config(args)  # every config error surfaces here, before any work
    from itnas.search.loop import run_search as search

    with lease_for(cfg["runtime"]["device"], 1):
        metrics = search(cfg, args.seed, args.out)
    if args.json:
        print(json.dumps(metrics))
    return 0


def run_derive(args: argparse.Namespace) -> int:
    from itnas.formats import load_arch_state
    from itnas.search.derive import derive, state_derive_tau

    output_path(args.out, "--out", folder=False)
    state = load_arch_state(args.arch_state)
    if args.tau is not None:
        tau, origin = args.tau, "--tau"
    else:
        tau, origin = state_derive_tau(state, args.arch_state)
    genotype = derive(state, args.method, tau)
    log.info("derive %s with %s at temperature %g (%s)", args.arch_state, args.method, tau, origin)
    save_genotype(args.out, genotype, **({"name": args.name} if args.name else {}), derive_tau=tau)
    print(json.dumps(genotype.to_json()))
    return 0


def run_sample(args: argparse.Namespace) -> int:
    check_seed(args.seed)
    output_path(args.out, "--out", folder=False)
    genotype = sample_genotype(args.seed)
    save_genotype(args.out, genotype, name=random_name(args.seed), source=f"itnas sample --seed {args.seed}")
    print(json.dumps(genotype.to_json()))
    return 0
