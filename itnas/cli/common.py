"""What the command modules share: the help layout, `--config`/`--set`, threads, and the run
flags of the commands that train (`itnas train` and `itnas select`), with their torchrun hand-off.
Importing this module stays cheap (no torch)."""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys

from itnas.errors import UserError
from itnas.files import output_path
from itnas.gpu_lease import lease_for

# Seeds from 0 to 2**31 - 1: numpy takes up to 2**32 - 1, and the loaders add small offsets to a
# seed. workflow/schemas/config.schema.yaml bounds the workflow's seeds the same way.
MAX_SEED = 2**31 - 1


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show the defaults that say something (not None, False or an empty list) and keep the
    paragraphs of descriptions as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == [] \
                or "default:" in (action.help or ""):  # none to show, or the help says it in words
            return action.help
        return super()._get_help_string(action)


def add_config_args(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """The `--config FILE` and repeatable `--set dotted.key=value` pair every config reader takes."""
    parser.add_argument("--config", required=required, metavar="FILE",
                        help="YAML config (see config/recipes/); omitted keys take the schema defaults")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override one config entry, e.g. --set epochs=2 (repeatable; "
                             "validated like the file)")


def check_seed(seed: int, flag: str = "--seed") -> None:
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"{flag} {seed}: expected an integer from 0 to {MAX_SEED}")


def set_threads(n: int | None) -> None:
    """Cap intra-op threads (None: leave the default), for this process and those it starts.
    Oversubscribed OpenMP threads spin: two jobs with two threads each on two cores ran a
    supernet step 20-40x slower than with one thread each (measured here)."""
    if n is None:
        return
    if n < 1:
        raise UserError(f"--threads {n}: expected at least 1")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


# ----------------------------------------------------------------------------- train and select


def add_run_args(p: argparse.ArgumentParser) -> None:
    """Flags `itnas train` and `itnas select` share."""
    p.add_argument("--dataset", required=True, metavar="NAME",
                   help="dataset to train on (cifar10, cifar100, svhn, cinic10, imagenet, or a "
                        "synthetic-* stand-in); it decides the protocol")
    p.add_argument("--seed", type=int, required=True,
                   help="seeds the weights, the batch order, augmentation and drop-path")
    p.add_argument("--data-root", metavar="DIR", help="dataset folder (overrides the config's data_root)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides runtime.device; "
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
    if "WORLD_SIZE" in os.environ:
        return contextlib.nullcontext()
    return lease_for(device, args.nproc)


def launch_torchrun(args: argparse.Namespace, argv: list[str]) -> int | None:
    """Run under torchrun when --nproc > 1 asks for it and we are not already inside it."""
    if args.nproc == 1 or "WORLD_SIZE" in os.environ:
        return None
    from itnas.train.distributed import torchrun_argv

    return subprocess.call(torchrun_argv(args.nproc, argv))


def prepare_training(args: argparse.Namespace, stage: str = "train") -> tuple[dict, object]:
    """Resolve dataset and config (all user errors surface here, before any model is built)."""
    from itnas.data.registry import get_spec
    from itnas.train.distributed import env_world
    from itnas.train.loop import load_train_config

    if args.nproc < 1:
        raise UserError(f"--nproc {args.nproc}: expected at least 1")
    check_seed(args.seed)
    output_path(args.out, "--out", folder=True)
    spec = get_spec(args.dataset)
    # Under --nproc the processes do not exist yet, but the batch must already split over them.
    world = env_world()[1] if "WORLD_SIZE" in os.environ else args.nproc
    cfg = load_train_config(args.config, list(args.overrides), spec.protocol, spec.name, world, stage)
    # Where the data lives and which device runs are not part of the recipe: flags win.
    if args.data_root:
        cfg["data_root"] = args.data_root
    if args.device:
        cfg["runtime"]["device"] = args.device
    return cfg, spec
