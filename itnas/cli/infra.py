"""Commands for the machinery around the runs: `itnas tracking init` (the MLflow store),
`itnas lease` (run a command on leased GPUs) and `itnas gpu-check` (the GPUs a job asked for
are the GPUs torch sees). Torch is imported only where a GPU is asked about."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping

from itnas import tracking
from itnas.cli.common import HelpFormatter, add_config_args
from itnas.config import load_config
from itnas.errors import UserError
from itnas.files import write_json
from itnas.gpu_lease import exec_with_lease, lease_for

log = logging.getLogger(__name__)

GPU_CHECK = """\
`itnas gpu-check --expect N`: inside an allocation, check that the GPUs a job asked for are
the GPUs torch sees, before an expensive multi-GPU run starts (the workflow's ImageNet canary).

It compares N with every count it can read: `torch.cuda.device_count()` (each visible GPU
must also take a one-element tensor), the entries of `CUDA_VISIBLE_DEVICES`, SLURM's
`SLURM_GPUS_ON_NODE` and the indices in `SLURM_STEP_GPUS` (inside `srun`) or `SLURM_JOB_GPUS`.
Variables that are not set are not compared. Outside a scheduler it first leases N GPUs the
way `itnas train` does. With device `cpu` (from `--device`, or the `runtime.device` key of the
training's `--config`/`--set`) the run uses no GPU, so torch is not asked: only the
scheduler's variables are compared, as on a test cluster whose GPUs are fake. Any mismatch
exits with status 2 and one line naming every count."""


def register(sub: argparse._SubParsersAction) -> None:
    _register_tracking(sub)
    _register_lease(sub)
    _register_gpu_check(sub)


# ----------------------------------------------------------------------------- tracking


def _register_tracking(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tracking", formatter_class=HelpFormatter, help="MLflow store set-up",
                       description="MLflow tracking store commands. Runs are tracked when "
                                   "MLFLOW_TRACKING_URI is set (the workflow sets it).")
    tsub = p.add_subparsers(dest="tracking_command", metavar="ACTION", required=True)
    init = tsub.add_parser("init", formatter_class=HelpFormatter,
                           help="create the store and experiment once, before jobs fan out",
                           description="Create the tracking store (SQLite schema) and the experiment, "
                                       "so that concurrent jobs never race to create them. A failure "
                                       "is a warning (exit 0) unless --strict.")
    init.add_argument("--uri", help="tracking URI (default: $MLFLOW_TRACKING_URI)")
    init.add_argument("--experiment", help="experiment name (default: $MLFLOW_EXPERIMENT_NAME or itnas)")
    init.add_argument("--out", metavar="FILE", help="write what was created as JSON")
    init.add_argument("--strict", action="store_true", help="exit non-zero when the store cannot be set up")
    init.set_defaults(func=run_tracking_init)


def run_tracking_init(args: argparse.Namespace) -> int:
    uri = args.uri or tracking.tracking_uri()
    try:
        info = tracking.init_store(uri, args.experiment)
    except Exception as exc:  # noqa: BLE001 - tracking never stops the workflow
        if args.strict:
            raise UserError(f"tracking store {uri}: {type(exc).__name__}: {exc}") from None
        log.warning("MLflow tracking store %s could not be set up (%s: %s); jobs will run untracked",
                    uri, type(exc).__name__, " ".join(str(exc).split())[:200])
        info = {"enabled": False, "uri": uri, "error": f"{type(exc).__name__}"}
    if info.get("enabled"):
        ui = "" if info["uri"].startswith("http") else f"`mlflow ui --backend-store-uri {info['uri']}`, then "
        log.info("tracking store %s ready, experiment '%s' (id %s); its runs: %s%s", info["uri"],
                 info["experiment"], info["experiment_id"], ui, info["runs_view"])
    if args.out:
        write_json(args.out, info)
    return 0


# ----------------------------------------------------------------------------- lease


def _register_lease(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lease", formatter_class=HelpFormatter, help="run a command on N leased GPUs",
        description="Lease N distinct GPUs of this machine (lock files, see itnas/gpu_lease.py), "
                    "set CUDA_VISIBLE_DEVICES and replace this process by the command, which keeps "
                    "the lease until it and its workers exit. Used for multi-GPU torchrun jobs:\n"
                    "  itnas lease --gpus 4 -- torchrun --standalone --nproc-per-node 4 "
                    "--no-python itnas train ...\n"
                    "Leases nothing under a scheduler (CUDA_VISIBLE_DEVICES or SLURM_JOB_ID set) "
                    "or without GPUs.")
    p.add_argument("--gpus", type=int, default=1, help="how many GPUs")
    p.add_argument("--timeout", type=float, default=24 * 3600.0, help="seconds to wait for free GPUs")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    p.set_defaults(func=run_lease)


def run_lease(args: argparse.Namespace) -> int:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if args.gpus < 1:
        raise UserError(f"--gpus {args.gpus}: expected at least 1")
    exec_with_lease(args.gpus, cmd, args.timeout)
    return 0  # not reached: exec replaced the process


# ----------------------------------------------------------------------------- gpu-check


def _register_gpu_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gpu-check", formatter_class=HelpFormatter, description=GPU_CHECK,
                       help="check that the GPUs a job asked for are the GPUs torch sees")
    p.add_argument("--expect", type=int, required=True, metavar="N",
                   help="GPUs the job asked for (the workflow's gpu_check rule passes its "
                        "resources.gpu, i.e. train.imagenet.gpus)")
    add_config_args(p)
    p.add_argument("--device", help="the training's device: auto, cuda, cuda:N or cpu "
                                    "(default: the config's runtime.device, else auto)")
    p.add_argument("--out", metavar="FILE", help="write the counts as JSON (the gpu_check rule's "
                                                  "output, RESULTS/gpu_check/DATASET.json)")
    p.set_defaults(func=run_gpu_check)


def scheduler_counts(env: Mapping[str, str]) -> dict[str, int]:
    """GPU counts the scheduler's environment states, keyed by the variable read."""
    counts: dict[str, int] = {}
    if "CUDA_VISIBLE_DEVICES" in env:
        counts["CUDA_VISIBLE_DEVICES"] = _list_len(env["CUDA_VISIBLE_DEVICES"])
    if env.get("SLURM_GPUS_ON_NODE", "").strip():
        try:
            counts["SLURM_GPUS_ON_NODE"] = int(env["SLURM_GPUS_ON_NODE"])
        except ValueError:
            raise UserError(f"SLURM_GPUS_ON_NODE={env['SLURM_GPUS_ON_NODE']!r} is not a number") from None
    for name in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):  # the step's own list is the narrower one
        if env.get(name, "").strip():
            counts[name] = _list_len(env[name])
            break
    return counts


def describe(counts: dict[str, int], env: Mapping[str, str]) -> str:
    """'torch sees 2, CUDA_VISIBLE_DEVICES=0,1, SLURM_GPUS_ON_NODE=2': counts with their sources."""
    parts = [f"torch sees {counts['torch']}"] if "torch" in counts else []
    parts += [f"{name}={env[name]!r}" if name == "CUDA_VISIBLE_DEVICES" else f"{name}={env[name]}"
              for name in counts if name != "torch"]
    return ", ".join(parts)


def _gpus(n: int) -> str:
    return f"{n} GPU" if n == 1 else f"{n} GPUs"


def _list_len(value: str) -> int:
    return len([item for item in value.split(",") if item.strip()])


def torch_devices() -> list[str]:
    """Names of the CUDA devices this process sees; each must take a one-element tensor."""
    import torch

    names = []
    for i in range(torch.cuda.device_count()):
        try:
            torch.ones(1, device=f"cuda:{i}").add_(1)
            names.append(torch.cuda.get_device_name(i))
        except Exception as exc:  # noqa: BLE001 - any failure of a visible GPU is the finding
            raise UserError(f"cuda:{i} is visible but unusable: {type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:200]}") from None
    return names


def check(expect: int, env: Mapping[str, str], use_torch: bool = True) -> dict:
    """The counts as a dict; raises UserError with one line when any differs from `expect`."""
    if expect < 0:
        raise UserError(f"--expect {expect}: must be 0 or more")
    counts = scheduler_counts(env)
    names: list[str] = []
    if use_torch:
        names = torch_devices()
        counts["torch"] = len(names)
    if any(v != expect for v in counts.values()):
        raise UserError(f"expected {_gpus(expect)} but {describe(counts, env)}; do not start the "
                        "run: check the job's --gpus/--gres request and the node's driver")
    return {"expect": expect, "counts": counts, "summary": describe(counts, env), "devices": names,
            "slurm_job_id": env.get("SLURM_JOB_ID"), "node": os.uname().nodename}


def training_device(args: argparse.Namespace) -> str:
    if args.device:
        return args.device
    if args.config or args.overrides:
        return load_config(args.config, "train", args.overrides)["runtime"]["device"]
    return "auto"


def run_gpu_check(args: argparse.Namespace) -> int:
    device = training_device(args)
    with lease_for(device, args.expect):
        result = check(args.expect, os.environ, use_torch=device != "cpu")
    result["device"] = device
    if args.out:
        write_json(args.out, result)
    summary = result["summary"] or "device cpu and no scheduler GPU variables: nothing to compare"
    devices = f" [{'; '.join(result['devices'])}]" if result["devices"] else ""
    print(f"gpu-check: ok: {_gpus(args.expect)} ({summary}){devices}")
    return 0
