"""`itnas train` (one evaluation network) and `itnas select` (the best of several cells by short
training): the commands that train, with the same recipe, run flags and torchrun hand-off."""

from __future__ import annotations

import argparse
import json

from itnas.cli.common import (
    HelpFormatter,
    add_config_args,
    add_run_args,
    forwarded_argv,
    gpu_lease,
    launch_torchrun,
    prepare_training,
)
from itnas.genotypes import resolve_genotype

TRAIN = """\
Train a genotype's evaluation network from scratch (docs/training.md).

The protocol follows the dataset: CIFAR-like datasets use the CIFAR recipe (the config's defaults:
20 cells, C=36, 600 epochs, batch 96, cosine lr 0.025, cutout 16, drop-path 0.2, auxiliary 0.4;
config/recipes/train_cifar.yaml), ImageNet the ImageNet one (config/recipes/train_imagenet.yaml).
The output folder gets metrics.json (test top-1/top-5 error in %, params, MACs, wall-clock,
GPU-hours, device, peak memory),
history.json (one record per epoch), genotype.json (the cell, under the name runs show),
model.pt (final weights) and checkpoint.pt (rewritten every epoch). Run the same command again after an interruption and it resumes where it stopped.

Several processes: `torchrun --nproc_per_node N -m itnas.cli train ...` or `itnas train --nproc N
...` (which starts torchrun for you). data.batch_size is the GLOBAL batch and optim.lr is never
scaled: each process takes batch_size/N images per step, split into micro-batches of at most
runtime.max_batch_per_process with gradient accumulation."""

SELECT = """\
Short-training selection, the DARTS protocol the family follows: train each candidate genotype
from scratch for selection.epochs epochs (config entry; DARTS: 100) on selection.train_portion of
the TRAINING set, score it on the held-out rest of the training set (never the test set), and
keep the most accurate (ties go to the candidate listed first).

The output folder gets selection.json (every candidate with its held-out accuracy, the winner, the
epochs, the --label, and winner_search_seed: the search seed of a winner named VARIANT-seedS),
genotype.json (a copy of the winner) and candidates/<genotype hash>/ (one resumable run folder
per candidate: run the same command again after an interruption and finished candidates are
not retrained). The training recipe is the one of `itnas train` (same config file)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", formatter_class=HelpFormatter, description=TRAIN,
                       help="train one evaluation network (resumable)")
    add_config_args(p)
    add_run_args(p)
    p.add_argument("--genotype", required=True, metavar="NAME_OR_FILE",
                   help="a published genotype (DARTS_V1, DARTS_V2, ...) or a genotype JSON file")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="run folder (created; resumed if it holds this run)")
    p.add_argument("--label", metavar="NAME",
                   help="what the run is filed under, recorded in metrics.json and tagged in MLflow: the "
                        "workflow passes its folder's label (a variant, whose selected cell it trains, "
                        "DARTS_V2 or randomK); default: the genotype's name")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON on stdout")
    p.set_defaults(func=run_train)

    s = sub.add_parser("select", formatter_class=HelpFormatter, description=SELECT,
                       help="choose among genotypes by short training (resumable)")
    add_config_args(s)
    s.add_argument("--genotypes", nargs="+", required=True, metavar="NAME_OR_FILE",
                   help="candidate genotypes: published names or genotype JSON files (shown by "
                        "their `name`; the workflow passes each search seed's derived genotype, "
                        "named VARIANT-seedS)")
    add_run_args(s)
    s.add_argument("--out", required=True, metavar="DIR", help="selection folder (created; resumed)")
    s.add_argument("--label", metavar="NAME",
                   help="what is being selected, recorded in selection.json, naming the MLflow runs and "
                        "the kept cell (NAME-selected): the workflow passes the variant, or random_search; "
                        "default: the variant the candidates' names share")
    s.add_argument("--json", action="store_true", help="print selection.json on stdout at the end")
    s.set_defaults(func=run_select)


def run_train(args: argparse.Namespace) -> int:
    cfg, spec = prepare_training(args)  # every config and dataset error surfaces here, before any work
    genotype, label = resolve_genotype(args.genotype)
    extra = ["--genotype", args.genotype, "--out", args.out] + (["--label", args.label] if args.label else []) \
        + (["--json"] if args.json else [])
    return _launch(args, cfg, "train", extra, lambda rt, ctx: _train(cfg, spec, genotype, label, args, rt, ctx))


def run_select(args: argparse.Namespace) -> int:
    cfg, spec = prepare_training(args, "select")
    candidates = [resolve_genotype(g) for g in args.genotypes]
    extra = ["--genotypes", *args.genotypes, "--out", args.out] + (["--label", args.label] if args.label else []) \
        + (["--json"] if args.json else [])
    return _launch(args, cfg, "select", extra, lambda rt, ctx: _select(cfg, spec, candidates, args, rt, ctx))


def _launch(args, cfg, command, extra, work) -> int:
    """Lease the GPUs, hand over to torchrun when --nproc asks for it, else join the process group
    (if any), resolve the runtime and do `work(rt, ctx)`; print its result with --json."""
    with gpu_lease(args, cfg["runtime"]["device"]):
        rc = launch_torchrun(args, forwarded_argv(args, command, extra))
        if rc is not None:
            return rc
        from itnas.runtime import resolve_runtime
        from itnas.train import distributed

        ctx, device = distributed.init_from_env(cfg["runtime"]["device"])
        try:
            rt = resolve_runtime(cfg["runtime"], "train", device, distributed=ctx.enabled)
            result = work(rt, ctx)
        finally:
            distributed.shutdown()
    if args.json and ctx.is_main:
        print(json.dumps(result))
    return 0


def _train(cfg, spec, genotype, label, args, rt, ctx) -> dict:
    from itnas.train.batches import load_data
    from itnas.train.loop import train

    data = load_data(spec.name, cfg, rt, args.seed)
    return train(cfg, genotype, label, data, args.out, args.seed, rt, ctx,
                 tags={"label": args.label} if args.label else None)


def _select(cfg, spec, candidates, args, rt, ctx) -> dict:
    from itnas.train.select import holdout_data, select

    data = holdout_data(spec.name, cfg, rt, args.seed)
    return select(cfg, candidates, data, args.out, args.seed, rt, ctx, label=args.label)
