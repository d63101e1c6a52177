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
ours / peer of each; the goal (issue 7) is a ratio of at most 0.8.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
import torch.nn.functional as F

from itnas import bench

PEER_OPS = ["dua_sepc_3x3", "dua_sepc_5x5", "dil_sepc_3x3", "dil_sepc_5x5",
            "avg_pool_3x3", "max_pool_3x3", "skip_connect"]


class PeerStep:
    """xautodl's NASNetworkDARTS weight step, as its DARTS search script runs it."""

    def __init__(self, cells: int, channels: int, batch: int, size: int, device: torch.device,
                 channels_last: bool, seed: int):
        from xautodl.models.cell_searchs.search_model_darts_nasnet import NASNetworkDARTS

        if cells % 3:
            raise SystemExit(f"xautodl stacks 3N cells; --cells {cells} is not a multiple of 3")
        torch.manual_seed(seed)
        self.net = NASNetworkDARTS(channels, cells // 3, 4, 4, 3, 10, PEER_OPS, False, True).to(device)
        g = torch.Generator().manual_seed(seed)
        self.batches = [bench.synthetic_batch(batch, 3, size, 10, device, g) for _ in range(2)]
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
            self.batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in self.batches]
        self.opt = torch.optim.SGD(self.net.get_weights(), lr=0.025, momentum=0.9, weight_decay=3e-4)
        self.turn = 0

    def __call__(self) -> float:
        self.turn ^= 1
        x, y = self.batches[self.turn]
        self.opt.zero_grad(set_to_none=True)
        self.net.zero_grad(set_to_none=True)
        _, logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
        self.opt.step()
        return float(loss.detach())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, default=6)
    p.add_argument("--init-channels", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 keeps process CPU time meaningful on a shared machine")
    p.add_argument("--device", default="cpu")
    p.add_argument("--channels-last", action="store_true", help="both networks in channels-last")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    bench.set_threads(args.threads)
    try:
        import xautodl  # noqa: F401
    except ImportError:
        print(json.dumps({"skipped": "xautodl is not installed (pip install --no-deps xautodl)"}))
        return 0
    ours = bench.SupernetBench("darts", args.cells, args.init_channels, args.batch_size, args.image_size,
                               args.device, amp=False, channels_last=args.channels_last, seed=args.seed)
    device = ours.device
    peer = PeerStep(args.cells, args.init_channels, args.batch_size, args.image_size, device,
                    args.channels_last, args.seed)
    t = bench.interleave({"ours": ours.weight_step, "peer": peer}, args.repeats, device, args.warmup)
    result = {
        "compare": "darts_vs_xautodl", "cells": args.cells, "init_channels": args.init_channels,
        "batch_size": args.batch_size, "image_size": args.image_size, "channels_last": args.channels_last,
        "device": str(device), "repeats": args.repeats, **bench.machine(),
        "ours": {"weights": sum(p.numel() for p in ours.searcher.net.parameters()),
                 **t["ours"].summary("step")},
        "peer": {"weights": sum(p.numel() for p in peer.net.get_weights()), **t["peer"].summary("step")},
        "ratio_cpu": bench.ratio(t["ours"], t["peer"], "cpu"),
        "ratio_wall": bench.ratio(t["ours"], t["peer"], "wall"),
        "command": " ".join(["benchmarks/compare_peer.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
