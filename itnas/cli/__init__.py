"""The `itnas` console script: one subcommand per workflow step (README.md, docs/workflow.md).

Command modules are grouped by the arguments their commands share, and each registers its
commands through `register(subparsers)`. Handlers import the implementation (torch) only when
they run, so `itnas --help` stays fast. User errors print one line and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from itnas import __version__
from itnas.cli.common import HelpFormatter, set_threads
from itnas.errors import UserError

# Modules that contribute subcommands, in the order `--help` lists them.
COMMAND_MODULES = [
    "itnas.cli.data",      # data fetch | verify | list
    "itnas.cli.search",    # search, derive
    "itnas.cli.train",     # train, select
    "itnas.cli.stats",     # stats
    "itnas.cli.report",    # tables, plot
    "itnas.cli.plan",      # plan
    "itnas.cli.bench",     # bench
    "itnas.cli.infra",     # tracking, lease, gpu-check
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="itnas",
        description="ITNAS reproduction: search, derive, train, tabulate. "
                    "Run `itnas COMMAND --help` for each command.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"itnas {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads for torch; default: OMP_NUM_THREADS (which the workflow "
                             "sets to each rule's threads), else all cores")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)  # a module that fails to import fails loudly
    return parser


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", force=True)
    for noisy in ("urllib3", "matplotlib", "PIL", "alembic", "mlflow", "git", "filelock"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def out_of_memory(exc: BaseException) -> bool:
    """A failed allocation: Python's MemoryError, torch's CUDA OutOfMemoryError or its CPU
    allocator's RuntimeError. Sizes the schemas accept may still not fit the machine."""
    text = str(exc)
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" \
        or "can't allocate memory" in text or "out of memory" in text.lower()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.verbose, args.quiet)
    try:
        set_threads(args.threads)
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"itnas {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (MemoryError, RuntimeError) as exc:
        if not out_of_memory(exc):
            raise
        what = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        print(f"itnas {args.command}: error: out of memory ({what}); lower data.batch_size (or "
              "runtime.max_batch_per_process) or the model's size", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"itnas {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
