"""Before/after: the supernet step of a git revision's ops/supernet/policies against the working
tree's, in one interleaved run (the ratio the optimisation notes in docs/performance.md cite).

The revision's three modules are read with `git show REV:itnas/<module>.py` into a throwaway
package, so both versions run side by side in one process on the same batches; everything
else (formats, the training step below) is shared. One step = the policy's edge weights,
forward, cross-entropy, backward, clip to norm 5, SGD update (the search's weight step).

    .venv/bin/python benchmarks/compare_revisions.py --base HEAD --variant darts --threads 1
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

import common
import torch

from itnas import bench

MODULES = ("ops", "supernet", "policies")
REPO = Path(__file__).resolve().parents[1]


def load_revision(rev: str, where: Path):
    """Import the revision's modules as package `itnas_rev` (their itnas.* imports of each other
    rewritten to it); returns (supernet module, policies module)."""
    pkg = where / "itnas_rev"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in MODULES:
        text = subprocess.run(["git", "show", f"{rev}:itnas/{name}.py"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout
        for other in MODULES:
            text = text.replace(f"from itnas.{other} import", f"from itnas_rev.{other} import")
        (pkg / f"{name}.py").write_text(text)
    sys.path.insert(0, str(where))
    return importlib.import_module("itnas_rev.supernet"), importlib.import_module("itnas_rev.policies")


def revision_step(supernet, policies, variant: str, layers: int, channels: int, batch: int, size: int,
                  channels_last: bool, seed: int) -> common.WeightStep:
    """The weight step of one revision's supernet and policy (built from `seed`)."""
    flags = policies.VARIANT_FLAGS[variant]
    torch.manual_seed(seed)
    net = supernet.SearchNetwork(10, layers, channels)
    policy = policies.build_policy(flags["gumbel"], flags["transition"])
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return common.supernet_step(net, policy, common.batches(batch, size, seed, channels_last))


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__, repeats=7, warmup=2)
    p.add_argument("--base", default="HEAD", help="git revision to compare against")
    p.add_argument("--channels-last", action="store_true", help="both in channels-last")
    args = p.parse_args(argv)
    bench.set_threads(args.threads)
    from itnas import policies, supernet

    with tempfile.TemporaryDirectory() as tmp:
        base_supernet, base_policies = load_revision(args.base, Path(tmp))
        common_args = (args.variant, args.layers, args.init_channels, args.batch_size, args.image_size,
                       args.channels_last, args.seed)
        runs = {"before": revision_step(base_supernet, base_policies, *common_args),
                "after": revision_step(supernet, policies, *common_args)}
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
