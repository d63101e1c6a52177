"""Our `darts` supernet weight step against a published DARTS-space supernet (xautodl's
NASNet-space DARTS search model, `pip install xautodl`), in one interleaved run.

Equal settings: the same seven primitives (xautodl's names dua_sepc_3x3/5x5, dil_sepc_3x3/5x5,
avg/max_pool_3x3, skip_connect; no `none`, which our space does not have), the same width C,
batch, resolution and number of cells (xautodl stacks 3N cells: N=2 gives our 6-cell layout,
reductions at cells 3 and 5), non-affine BN with running statistics, the same SGD settings
and gradient clipping, and the same memory format. One weight step = zero_grad, forward,
cross-entropy, backward, clip to norm 5, SGD update, on fixed random batches.

    .venv/bin/python benchmarks/compare_peer.py --batch-size 16 --repeats 7 --threads 1

Prints one JSON line: per-candidate medians (process CPU and wall seconds) and the ratio
ours / peer of each; the goal (docs/performance.md) is a ratio of at most 0.8.
"""

from __future__ import annotations

import json
import sys

import common
import torch

from itnas.accel import bench

PEER_OPS = ["dua_sepc_3x3", "dua_sepc_5x5", "dil_sepc_3x3", "dil_sepc_5x5",
            "avg_pool_3x3", "max_pool_3x3", "skip_connect"]


def peer_step(cells: int, channels: int, batch: int, size: int, device: torch.device, channels_last: bool,
              seed: int) -> common.WeightStep:
    """xautodl's NASNetworkDARTS weight step, as its DARTS search script runs it."""
    from xautodl.models.cell_searchs.search_model_darts_nasnet import NASNetworkDARTS

    torch.manual_seed(seed)
    net = NASNetworkDARTS(channels, cells // 3, 4, 4, 3, 10, PEER_OPS, False, True).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    step = common.WeightStep(lambda x: net(x)[1], net.get_weights(), common.batches(batch, size, seed, channels_last,
                                                                                     device), (net,))
    step.net = net
    return step


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__, repeats=7, warmup=2)
    p.add_argument("--cells", type=int, default=6, help="cells of both networks (xautodl stacks 3N)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--channels-last", action="store_true", help="both networks in channels-last")
    args = p.parse_args(argv)
    if args.cells % 3 or args.cells < 3:
        raise SystemExit(f"compare_peer.py: error: --cells {args.cells}: xautodl stacks 3N cells, "
                         f"expected a multiple of 3")
    torch.set_num_threads(args.threads)
    try:
        import xautodl  # noqa: F401
    except ImportError:
        print(json.dumps({"skipped": "xautodl is not installed (pip install --no-deps xautodl)"}))
        return 0
    ours = bench.SupernetBench("darts", args.cells, args.init_channels, args.batch_size, args.image_size,
                               args.device, amp=False, channels_last=args.channels_last, seed=args.seed)
    device = ours.device
    peer = peer_step(args.cells, args.init_channels, args.batch_size, args.image_size, device,
                     args.channels_last, args.seed)
    t = bench.interleave({"ours": ours.weight_step, "peer": peer}, args.repeats, device, args.warmup)
    return common.emit("compare_peer.py", {
        "compare": "darts_vs_xautodl", "cells": args.cells, "init_channels": args.init_channels,
        "batch_size": args.batch_size, "image_size": args.image_size, "channels_last": args.channels_last,
        "device": str(device), "repeats": args.repeats,
        "ours": {"weights": sum(p.numel() for p in ours.searcher.net.parameters()), **t["ours"].summary("step")},
        "peer": {"weights": sum(p.numel() for p in peer.net.get_weights()), **t["peer"].summary("step")},
        "ratio_cpu": bench.ratio(t["ours"], t["peer"], "cpu"),
        "ratio_wall": bench.ratio(t["ours"], t["peer"], "wall")}, argv)


if __name__ == "__main__":
    sys.exit(main())
