"""`itnas data fetch|verify|list`: get the datasets, check them, see what is there."""

from __future__ import annotations

import argparse
from pathlib import Path

from itnas.cli.common import HelpFormatter
from itnas.data.registry import get_spec, list_specs, names
from itnas.errors import DataError, UserError
from itnas.files import given_path, output_path

DEFAULT_ROOT = "data"


def register(subparsers) -> None:
    known = ", ".join(names())
    parser = subparsers.add_parser(
        "data", help="fetch, verify and list datasets (benchmarks and stand-ins)",
        formatter_class=HelpFormatter,
        description="Datasets live under a root folder (default ./data): downloads in "
                    "ROOT/downloads/NAME/, prepared data in ROOT/NAME/ with a manifest that "
                    "`verify` checks. Names starting with synthetic- are generated stand-ins, "
                    f"never the benchmark. Known: {known}.")
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    fetch = sub.add_parser(
        "fetch", help="download (or generate) and prepare a dataset", formatter_class=HelpFormatter,
        description="Make ROOT/NAME a complete, verified dataset. Does nothing if it already "
                    "verifies. cifar10, cifar100, svhn and cinic10 are downloaded (checksums "
                    "pinned; retries with backoff); imagenet is prepared from the ILSVRC2012 "
                    "archives you place in ROOT/downloads/imagenet/ (run it once to see the "
                    "exact instructions); synthetic-* stand-ins are generated locally in "
                    "seconds, with no network.")
    fetch.add_argument("name", metavar="NAME", help=f"dataset ({known})")
    _root_arg(fetch)
    fetch.add_argument("--mirror", metavar="URL", default=None,
                       help="base URL (http://, https:// or file://) holding the archives under "
                            "their own names; overrides $ITNAS_DATA_MIRROR")
    fetch.add_argument("--retries", type=int, default=4, help="download retries per file")
    fetch.add_argument("--force", action="store_true",
                       help="prepare again even if the dataset verifies")
    fetch.set_defaults(func=_fetch)

    verify = sub.add_parser(
        "verify", help="check a prepared dataset against its manifest",
        formatter_class=HelpFormatter,
        description="Exit 0 and print 'ok: NAME (N files) at DIR' when every file of "
                    "ROOT/NAME is present with its recorded size and sha256; otherwise exit 2 "
                    "with one line naming the first missing or corrupt file.")
    verify.add_argument("name", metavar="NAME", help=f"dataset ({known})")
    _root_arg(verify)
    verify.add_argument("--quick", action="store_true",
                        help="check presence and sizes only, not contents")
    verify.set_defaults(func=_verify)

    listing = sub.add_parser(
        "list", help="table of all datasets", formatter_class=HelpFormatter,
        description="One row per registered dataset: classes, image size, train/test sizes, "
                    "whether it is a stand-in, and with --root whether it is present there "
                    "(a cheap check; use `verify` for a thorough one).")
    listing.add_argument("--root", metavar="DIR", default=None,
                         help="also show which datasets are present under DIR")
    listing.set_defaults(func=_list)


def _root_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", metavar="DIR", default=DEFAULT_ROOT,
                        help="data root folder (prepared data in DIR/NAME)")


def _fetch(args) -> int:
    from itnas.data.fetch import fetch

    spec = get_spec(args.name)
    if args.retries < 0:
        raise UserError(f"--retries must be >= 0, got {args.retries}")
    output_path(args.root, "--root", folder=True)
    folder = fetch(args.name, args.root, mirror=args.mirror, retries=args.retries,
                   force=args.force)
    print(f"ready: {folder} -- {spec.describe()}")
    return 0


def _verify(args) -> int:
    from itnas.data.manifest import load_manifest, manifest_count, verify

    given_path(args.root, "--root", "folder")
    verify(args.name, args.root, quick=args.quick)
    count = manifest_count(load_manifest(args.name, args.root))
    print(f"ok: {args.name} ({count} files) at {Path(args.root) / args.name}")
    return 0


def _presence(name: str, root: str) -> str:
    from itnas.data.manifest import check_present

    if not (Path(root) / name).exists():
        return "no"
    try:
        check_present(name, root)
    except DataError:
        return "incomplete"
    return f"yes ({Path(root) / name})"


def _list(args) -> int:
    header = ["name", "kind", "classes", "image", "train", "test", "protocol"]
    if args.root is not None:
        root = given_path(args.root, "--root", "folder")
        if root.exists() and not root.is_dir():  # else every dataset would read "no" there
            raise UserError(f"--root {root}: is a file, not a folder; expected the data root (prepared data in DIR/NAME)")
        header.append("present")
    rows = [header]
    for spec in list_specs():
        kind = f"STAND-IN (synthetic, not {spec.benchmark})" if spec.standin else "benchmark"
        image = f"{spec.channels}x{spec.stored_size}x{spec.stored_size}" if spec.stored_size \
            else f"{spec.channels}x(var)"
        row = [spec.name, kind, str(spec.num_classes), f"{image}->{spec.image_size}",
               f"{spec.train_size:,} ({'+'.join(spec.train_parts)})",
               f"{spec.test_size:,} ({'+'.join(spec.test_parts)})", spec.protocol]
        if args.root:
            row.append(_presence(spec.name, args.root))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0
