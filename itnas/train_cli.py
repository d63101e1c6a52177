"""`itnas train`: train (or resume) one evaluation network under its dataset's protocol."""

from __future__ import annotations

import argparse
import json
import os

from itnas.cli import HelpFormatter, add_config_args

DESCRIPTION = """\
Train a genotype's evaluation network from scratch (SPEC sections 6-7).

The protocol follows the dataset: CIFAR-like datasets use the CIFAR recipe (config/train_cifar.yaml:
20 cells, C=36, 600 epochs, batch 96, cosine lr 0.025, cutout 16, drop-path 0.2, auxiliary 0.4),
ImageNet the ImageNet one (config/train_imagenet.yaml). The output folder gets metrics.json
(test top-1/top-5 error in %, params, MACs, wall-clock, GPU-hours, device, peak memory),
history.json (one record per epoch), model.pt (final weights) and checkpoint.pt (rewritten every
epoch). Run the same command again after an interruption and it resumes where it stopped.

Several processes: `torchrun --nproc_per_node N -m itnas.cli train ...` or `itnas train --nproc N
...` (which starts torchrun for you). batch_size is the GLOBAL batch and lr is never scaled: each
process takes batch_size/N images per step, split into micro-batches of at most
max_batch_per_process with gradient accumulation."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", formatter_class=HelpFormatter, description=DESCRIPTION,
                       help="train one evaluation network (resumable)")
    add_config_args(p)
    add_run_args(p)
    p.add_argument("--genotype", required=True, metavar="NAME_OR_FILE",
                   help="a published genotype (DARTS_V1, DARTS_V2, ...) or a genotype JSON file")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="run folder (created; resumed if it holds this run)")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON on stdout")
    p.set_defaults(func=run)


def add_run_args(p: argparse.ArgumentParser) -> None:
    """Flags `itnas train` and `itnas select` share."""
    p.add_argument("--dataset", required=True, metavar="NAME",
                   help="dataset to train on (cifar10, cifar100, svhn, cinic10, imagenet, or a "
                        "synthetic-* stand-in); it decides the protocol")
    p.add_argument("--seed", type=int, required=True,
                   help="seeds the weights, the batch order, augmentation and drop-path")
    p.add_argument("--data-root", metavar="DIR", help="dataset folder (overrides the config's data_root)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides the config's device; "
                                    "under torchrun each process takes cuda:LOCAL_RANK)")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="processes (GPUs) on this machine; N > 1 re-runs the command under torchrun")


def forwarded_argv(args: argparse.Namespace, command: str, extra: list[str]) -> list[str]:
    """The command line to hand to torchrun: the same arguments without --nproc."""
    argv = (["-v"] if getattr(args, "verbose", False) else []) + \
        (["-q"] if getattr(args, "quiet", False) else []) + [command]
    if args.config:
        argv += ["--config", args.config]
    for item in args.overrides:
        argv += ["--set", item]
    argv += ["--dataset", args.dataset, "--seed", str(args.seed)]
    if args.data_root:
        argv += ["--data-root", args.data_root]
    if args.device:
        argv += ["--device", args.device]
    return argv + extra


def gpu_lease(args: argparse.Namespace, device: str):
    """Hold this job's GPUs (one per process) while it runs, when several jobs share a machine;
    under torchrun the launching command already holds them."""
    import contextlib

    if "WORLD_SIZE" in os.environ:
        return contextlib.nullcontext()
    from itnas.gpu_lease import lease_for

    return lease_for(device, args.nproc)


def launch_torchrun(args: argparse.Namespace, argv: list[str]) -> int | None:
    """Run under torchrun when --nproc > 1 asks for it and we are not already inside it."""
    if args.nproc == 1 or "WORLD_SIZE" in os.environ:
        return None
    import subprocess

    from itnas.distributed import torchrun_argv

    return subprocess.call(torchrun_argv(args.nproc, argv))


def prepare(args: argparse.Namespace, stage: str = "train") -> tuple[dict, object]:
    """Resolve dataset and config (all user errors surface here, before any model is built)."""
    from itnas.data import get_spec
    from itnas.distributed import env_world
    from itnas.errors import UserError

    if args.nproc < 1:
        raise UserError(f"--nproc {args.nproc}: expected at least 1")
    from itnas.train import load_train_config

    spec = get_spec(args.dataset)
    overrides = list(args.overrides)
    # Under --nproc the processes do not exist yet, but the batch must already split over them.
    world = env_world()[1] if "WORLD_SIZE" in os.environ else args.nproc
    cfg = load_train_config(args.config, overrides, spec.protocol, spec.name, world, stage)
    # Where the data lives and which device runs are not part of the recipe: flags win.
    if args.data_root:
        cfg["data_root"] = args.data_root
    if args.device:
        cfg["device"] = args.device
    return cfg, spec


def run(args: argparse.Namespace) -> int:
    cfg, spec = prepare(args)  # every config and dataset error surfaces here, before any work
    from itnas.formats import resolve_genotype

    genotype, label = resolve_genotype(args.genotype)
    with gpu_lease(args, cfg["device"]):
        rc = launch_torchrun(args, forwarded_argv(args, "train", ["--genotype", args.genotype, "--out", args.out]
                                                  + (["--json"] if args.json else [])))
        if rc is not None:
            return rc
        from itnas import distributed
        from itnas.train import load_data, train

        ctx, device = distributed.init_from_env(cfg["device"])
        try:
            data = load_data(spec.name, cfg, cfg["data_root"], args.seed, device)
            metrics = train(cfg, genotype, label, data, args.out, args.seed, ctx, device)
        finally:
            distributed.shutdown()
    if args.json and ctx.is_main:
        print(json.dumps(metrics))
    return 0
