"""Small commands the workflow needs: `itnas tracking init`, `itnas plot ...`, `itnas lease`."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from itnas.cli import HelpFormatter
from itnas.errors import UserError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    _register_tracking(sub)
    _register_plot(sub)
    _register_lease(sub)


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
    from itnas import tracking
    from itnas.atomic import write_json

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
        log.info("tracking store %s ready, experiment '%s' (id %s)", info["uri"], info["experiment"],
                 info["experiment_id"])
    if args.out:
        write_json(args.out, info)
    return 0


# ----------------------------------------------------------------------------- plots


def _register_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", formatter_class=HelpFormatter, help="draw cells and search curves",
                       description="Figures with matplotlib only (no graphviz).")
    psub = p.add_subparsers(dest="plot_command", metavar="FIGURE", required=True)
    cell = psub.add_parser("cell", formatter_class=HelpFormatter,
                           help="draw a genotype's normal and reduction cells",
                           description="Draw the normal and reduction cells of a genotype "
                                       "(a genotype.json or a registered name such as DARTS_V2).")
    cell.add_argument("--genotype", required=True, metavar="NAME_OR_FILE")
    cell.add_argument("--out", required=True, metavar="FILE", help=".png, .pdf or .svg")
    cell.add_argument("--title", help="figure title")
    cell.set_defaults(func=run_plot_cell)
    curves = psub.add_parser("curves", formatter_class=HelpFormatter,
                             help="temperature, edge-weight entropy and accuracy per search epoch",
                             description="Plot the per-epoch history.json of one or more searches "
                                         "(one line per file, labelled by its seedN folder).")
    curves.add_argument("--history", nargs="+", required=True, metavar="FILE")
    curves.add_argument("--out", required=True, metavar="FILE")
    curves.add_argument("--title", help="figure title")
    curves.set_defaults(func=run_plot_curves)


def run_plot_cell(args: argparse.Namespace) -> int:
    from itnas.plots import draw_genotype, read_genotype_file

    if Path(args.genotype).is_file():  # read without torch: the workflow's plots stay light
        genotype, label = read_genotype_file(args.genotype), args.genotype
    else:
        from itnas.formats import resolve_genotype

        genotype, label = resolve_genotype(args.genotype)
        label = f"{label} (hash {genotype.hash()})"
    draw_genotype(genotype, args.out, args.title or label)
    log.info("drew %s -> %s", label, args.out)
    return 0


def _history_label(path: Path) -> str:
    m = re.search(r"seed(-?\d+)", path.parent.name)
    return f"seed {m.group(1)}" if m else path.parent.name or path.stem


def run_plot_curves(args: argparse.Namespace) -> int:
    from itnas.plots import plot_search_curves
    from itnas.tables import read_json

    histories = {}
    for raw in args.history:
        path = Path(raw)
        records = read_json(path, "search history")
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise UserError(f"{path}: expected a list of per-epoch records")
        histories[_history_label(path)] = records
    plot_search_curves(histories, args.out, args.title)
    log.info("plotted %d histories -> %s", len(histories), args.out)
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
    from itnas.gpu_lease import exec_with_lease

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if args.gpus < 1:
        raise UserError(f"--gpus {args.gpus}: expected at least 1")
    exec_with_lease(args.gpus, cmd, args.timeout)
    return 0  # not reached: exec replaced the process

