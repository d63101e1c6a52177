"""Before/after: the supernet step of a git revision against the working tree's, in one
interleaved run (the ratio the optimisation notes in docs/performance.md cite).

The revision's `itnas/` tree is unpacked (`git archive`) into a throwaway package `itnas_rev`,
so both versions run side by side in one process on the same batches, each with the speed-ups
its search runs with (revisions before the package layout of 2026-12 had them built in; later
ones apply itnas/accel). One step = the policy's edge weights, forward, cross-entropy,
backward, clip to norm 5, SGD update (the search's weight step).

    .venv/bin/python benchmarks/compare_revisions.py --base HEAD --variant darts --threads 1
"""

from __future__ import annotations

import importlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import common
import torch

from itnas.accel import bench

REPO = Path(__file__).resolve().parents[1]
Build = Callable[[str, int, int], tuple[torch.nn.Module, torch.nn.Module]]  # (variant, layers, C) -> net, policy


def load_revision(rev: str, where: Path) -> Build:
    """The revision's `itnas` package as `itnas_rev` (its imports of itself rewritten); returns
    how it builds a search network, as its search runs it, and the policy of a variant."""
    archive = subprocess.run(["git", "archive", rev, "itnas"], cwd=REPO, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(where, filter="data")
    (where / "itnas").rename(where / "itnas_rev")
    for path in (where / "itnas_rev").rglob("*.py"):
        text = path.read_text()
        text = re.sub(r"\b(from|import) itnas\b", r"\1 itnas_rev", text)
        path.write_text(text.replace('"itnas.schemas"', '"itnas_rev.schemas"'))
    sys.path.insert(0, str(where))
    if (where / "itnas_rev" / "search" / "supernet.py").exists():
        return _accelerated("itnas_rev")
    supernet = importlib.import_module("itnas_rev.supernet")
    policies = importlib.import_module("itnas_rev.policies")

    def build(variant: str, layers: int, channels: int):
        flags = policies.VARIANT_FLAGS[variant]  # fast paths built in
        return supernet.SearchNetwork(10, layers, channels), policies.build_policy(flags["gumbel"], flags["transition"])

    return build


def _accelerated(package: str) -> Build:
    """How the package layout of 2026-12 and later builds them: plain, then itnas/accel."""
    supernet = importlib.import_module(f"{package}.search.supernet")
    policies = importlib.import_module(f"{package}.search.policies")
    variants = importlib.import_module(f"{package}.variants")
    kernels = importlib.import_module(f"{package}.accel.kernels")
    fast = importlib.import_module(f"{package}.accel.supernet")

    def build(variant: str, layers: int, channels: int):
        v = variants.get(variant)
        net = fast.use_fast_cells(kernels.use_fast_kernels(supernet.SearchNetwork(10, layers, channels)))
        return net, policies.build_policy(v.gumbel, v.transition)

    return build


def revision_step(build: Build, variant: str, layers: int, channels: int, batch: int, size: int,
                  channels_last: bool, seed: int) -> common.WeightStep:
    """The weight step of one revision's supernet and policy (built from `seed`)."""
    torch.manual_seed(seed)
    net, policy = build(variant, layers, channels)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return common.supernet_step(net, policy, common.batches(batch, size, seed, channels_last))


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__, repeats=7, warmup=2)
    p.add_argument("--base", default="HEAD", help="git revision to compare against")
    p.add_argument("--channels-last", action="store_true", help="both in channels-last")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        base = load_revision(args.base, Path(tmp))
        common_args = (args.variant, args.layers, args.init_channels, args.batch_size, args.image_size,
                       args.channels_last, args.seed)
        runs = {"before": revision_step(base, *common_args),
                "after": revision_step(_accelerated("itnas"), *common_args)}
        t = bench.interleave(runs, args.repeats, torch.device("cpu"), args.warmup)
    return common.emit("compare_revisions.py", {
        "compare": "revisions", "base": args.base, "variant": args.variant, "layers": args.layers,
        "init_channels": args.init_channels, "batch_size": args.batch_size, "image_size": args.image_size,
        "channels_last": args.channels_last, "repeats": args.repeats,
        **{name: timings.summary("step") for name, timings in t.items()},
        "ratio_cpu": bench.ratio(t["after"], t["before"], "cpu"),
        "ratio_wall": bench.ratio(t["after"], t["before"], "wall")}, argv)


if __name__ == "__main__":
    sys.exit(main())
