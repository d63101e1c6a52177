"""What each supernet fast path buys, in one interleaved run: the search weight step with the
fast paths switched on one after another (docs/performance.md, "Optimisations").

    plain      every edge computes everything itself (`set_fast_paths(net, False)`)
    phases     + dilated depthwise convs on pixel phases (ops.dilated_depthwise, CPU only)
    blocks     + 5x5 depthwise weight gradients from four 3x3 ones (ops._Depthwise5x5, CPU only)
    shared     + ReLU and poolings computed once per cell state, in-place sums

    .venv/bin/python benchmarks/ablate_fast_paths.py --batch-size 16 --repeats 5 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import json
import sys

import torch
import torch.nn.functional as F

from itnas import bench, ops
from itnas.ops import DilConv, set_fast_paths
from itnas.policies import VARIANT_FLAGS, build_policy
from itnas.supernet import SearchCell, SearchNetwork


def configure(net: SearchNetwork, level: str) -> SearchNetwork:
    levels = ("plain", "phases", "blocks", "shared")
    on = levels.index(level)
    net.blockwise = on >= 2
    set_fast_paths(net, False)
    for m in net.modules():
        if isinstance(m, DilConv):
            m.fast = on >= 1
        elif isinstance(m, SearchCell):
            m.fast = on >= 3
    return net


class Step:
    def __init__(self, net, policy, batches):
        self.net, self.policy, self.batches = net, policy, batches
        self.blockwise = getattr(net, "blockwise", True)
        self.opt = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
        self.turn = 0

    def __call__(self) -> None:
        # The blockwise 5x5 gradient has no per-module switch: its size threshold is module-wide.
        ops.BLOCKWISE_MIN_SIZE = 16 if self.blockwise else 1 << 30
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
    p.add_argument("--variant", default="darts")
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--init-channels", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--levels", default="plain,phases,blocks,shared")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    bench.set_threads(args.threads)
    torch.manual_seed(args.seed)
    flags = VARIANT_FLAGS[args.variant]
    base = SearchNetwork(10, args.layers, args.init_channels)
    policy = build_policy(flags["gumbel"], flags["transition"])
    g = torch.Generator().manual_seed(args.seed)
    batches = [bench.synthetic_batch(args.batch_size, 3, args.image_size, 10, torch.device("cpu"), g)
               for _ in range(2)]
    if args.channels_last:
        base = base.to(memory_format=torch.channels_last)
        batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in batches]
    levels = args.levels.split(",")
    runs = {level: Step(configure(copy.deepcopy(base), level), policy, batches) for level in levels}
    t = bench.interleave(runs, args.repeats, torch.device("cpu"), args.warmup)
    first = levels[0]
    result = {"compare": "fast_path_ablation", "variant": args.variant, "layers": args.layers,
              "init_channels": args.init_channels, "batch_size": args.batch_size,
              "image_size": args.image_size, "channels_last": args.channels_last,
              "repeats": args.repeats, **bench.machine(),
              **{level: {**t[level].summary("step"), "ratio_cpu_vs_" + first: bench.ratio(t[level], t[first])}
                 for level in levels},
              "command": " ".join(["benchmarks/ablate_fast_paths.py",
                                   *(argv if argv is not None else sys.argv[1:])])}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
