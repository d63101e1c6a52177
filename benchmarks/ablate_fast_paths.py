"""What each supernet fast path buys, in one interleaved run: the search weight step with the
fast paths switched on one after another (docs/performance.md, "Optimisations").

    plain      the method as written: every edge computes everything itself (runtime.accel: false)
    phases     + dilated depthwise convs on pixel phases (accel.kernels.dilated_depthwise, CPU only)
    blocks     + 5x5 depthwise weight gradients from four 3x3 ones (accel.kernels._Depthwise5x5, CPU only)
    shared     + ReLU and poolings computed once per cell state, each node's weighted sum of
                 its 7j op outputs as one matrix-vector product (accel.supernet), and BN without
                 its batch counter (accel.kernels.BatchNorm)

    .venv/bin/python benchmarks/ablate_fast_paths.py --batch-size 16 --repeats 5 --threads 1
"""

from __future__ import annotations

import copy
import sys

import common
import torch

from itnas import variants
from itnas.accel import bench, kernels
from itnas.accel.supernet import use_fast_cells
from itnas.search.policies import build_policy
from itnas.search.supernet import SearchNetwork

LEVELS = ("plain", "phases", "blocks", "shared")


def configure(net: SearchNetwork, level: str) -> SearchNetwork:
    on = LEVELS.index(level)
    kernels.use_fast_kernels(net, depthwise_convs=on >= 1, batch_norm=on >= 3)
    return use_fast_cells(net) if on >= 3 else net


def blockwise_switch(on: bool):
    """The blockwise 5x5 gradient has no per-module switch: its size threshold is module-wide,
    so each candidate sets it before its step."""
    def switch() -> None:
        kernels.BLOCKWISE_MIN_SIZE = 16 if on else 1 << 30
    return switch


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__, repeats=5, warmup=1)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--levels", default=",".join(LEVELS), help="comma-separated subset of " + ", ".join(LEVELS))
    args = p.parse_args(argv)
    levels = args.levels.split(",")
    if not levels or any(level not in LEVELS for level in levels):
        raise SystemExit(f"ablate_fast_paths.py: error: --levels {args.levels}: expected names from {', '.join(LEVELS)}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    v = variants.get(args.variant)
    base = SearchNetwork(10, args.layers, args.init_channels)
    policy = build_policy(v.gumbel, v.transition)
    if args.channels_last:
        base = base.to(memory_format=torch.channels_last)
    data = common.batches(args.batch_size, args.image_size, args.seed, args.channels_last)
    runs = {level: common.supernet_step(configure(copy.deepcopy(base), level), policy, data,
                                        blockwise_switch(LEVELS.index(level) >= 2))
            for level in levels}
    t = bench.interleave(runs, args.repeats, torch.device("cpu"), args.warmup)
    first = levels[0]
    return common.emit("ablate_fast_paths.py", {
        "compare": "fast_path_ablation", "variant": args.variant, "layers": args.layers,
        "init_channels": args.init_channels, "batch_size": args.batch_size, "image_size": args.image_size,
        "channels_last": args.channels_last, "repeats": args.repeats,
        **{level: {**t[level].summary("step"), "ratio_cpu_vs_" + first: bench.ratio(t[level], t[first])}
           for level in levels}}, argv)


if __name__ == "__main__":
    sys.exit(main())
