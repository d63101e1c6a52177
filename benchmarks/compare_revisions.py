"""Before/after: the supernet step of a git revision's ops/supernet/policies against the working
tree's, in one interleaved run (the ratio the optimisation notes in docs/performance.md cite).

The revision's three modules are read with `git show REV:itnas/<module>.py` into a throwaway
package, so both versions run side by side in one process on the same batches; everything
else (formats, the training step below) is shared. One step = the policy's edge weights,
forward, cross-entropy, backward, clip to norm 5, SGD update (the search's weight step).

    .venv/bin/python benchmarks/compare_revisions.py --base HEAD --variant darts --threads 1
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

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


class Step:
    def __init__(self, supernet, policies, variant: str, layers: int, channels: int, batch: int,
                 size: int, channels_last: bool, seed: int):
        flags = policies.VARIANT_FLAGS[variant]
        torch.manual_seed(seed)
        self.net = supernet.SearchNetwork(10, layers, channels)
        self.policy = policies.build_policy(flags["gumbel"], flags["transition"])
        g = torch.Generator().manual_seed(seed)
        self.batches = [bench.synthetic_batch(batch, 3, size, 10, torch.device("cpu"), g) for _ in range(2)]
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
            self.batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in self.batches]
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
        self.turn = 0

    def __call__(self) -> None:
        self.turn ^= 1
        x, y = self.batches[self.turn]
        self.opt.zero_grad(set_to_none=True)
        self.policy.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.net(x, self.policy.all_weights()), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
        self.opt.step()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default="HEAD", help="git revision to compare against")
    p.add_argument("--variant", default="darts")
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--init-channels", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--channels-last", action="store_true", help="both in channels-last")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    bench.set_threads(args.threads)
    from itnas import policies, supernet

    with tempfile.TemporaryDirectory() as tmp:
        base_supernet, base_policies = load_revision(args.base, Path(tmp))
        common = (args.variant, args.layers, args.init_channels, args.batch_size, args.image_size,
                  args.channels_last, args.seed)
        runs = {"before": Step(base_supernet, base_policies, *common), "after": Step(supernet, policies, *common)}
        t = bench.interleave(runs, args.repeats, torch.device("cpu"), args.warmup)
    result = {"compare": "revisions", "base": args.base, "variant": args.variant, "layers": args.layers,
              "init_channels": args.init_channels, "batch_size": args.batch_size,
              "image_size": args.image_size, "channels_last": args.channels_last,
              "repeats": args.repeats, **bench.machine(),
              **{name: timings.summary("step") for name, timings in t.items()},
              "ratio_cpu": bench.ratio(t["after"], t["before"], "cpu"),
              "ratio_wall": bench.ratio(t["after"], t["before"], "wall"),
              "command": " ".join(["benchmarks/compare_revisions.py",
                                   *(argv if argv is not None else sys.argv[1:])])}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
