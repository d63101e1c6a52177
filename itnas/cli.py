"""The `itnas` console script: one subcommand per workflow step.

Each subcommand lives with the module that implements it and registers itself through a
`register(subparsers)` function; handlers import heavy modules (torch) only when they run,
so `itnas --help` stays fast. User errors print one line and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from itnas import __version__
from itnas.errors import UserError

# Modules that contribute subcommands, in the order `--help` lists them.
COMMAND_MODULES = [
    "itnas.data.cli",
    "itnas.search_cli",
    "itnas.derive_cli",
    "itnas.train_cli",
    "itnas.stats_cli",
    "itnas.select_cli",
    "itnas.tables_cli",
    "itnas.bench_cli",
    "itnas.misc_cli",
    "itnas.gpu_check_cli",
]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults and keep the paragraphs of descriptions as written."""


def add_config_args(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """The `--config FILE` and repeatable `--set dotted.key=value` pair every config reader takes."""
    parser.add_argument("--config", required=required, metavar="FILE",
                        help="YAML config (see config/); omitted keys take the schema defaults")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override one config entry, e.g. --set epochs=2 (repeatable; "
                             "validated like the file)")


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
                        help="CPU threads for torch (the workflow passes each rule's `threads`); "
                             "default: OMP_NUM_THREADS, else all cores")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", force=True)
    for noisy in ("urllib3", "matplotlib", "PIL", "alembic", "mlflow", "git", "filelock"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def set_threads(n: int) -> None:
    """Cap intra-op threads. Oversubscribed OpenMP threads spin: two jobs with two threads each
    on two cores ran a supernet step 20-40x slower than with one thread each (measured here)."""
    if n < 1:
        raise SystemExit("itnas: error: --threads must be >= 1")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.verbose, args.quiet)
    if args.threads is not None:
        set_threads(args.threads)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"itnas {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"itnas {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
