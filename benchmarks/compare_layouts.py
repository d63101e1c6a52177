"""Channels-last against NCHW on this machine, in one interleaved run: the supernet weight step
(through `Searcher`) and the evaluation network's training step (DARTS_V2), each in both layouts.

    .venv/bin/python benchmarks/compare_layouts.py --batch-size 16 --repeats 5 --threads 1

Prints one JSON line with the medians and the ratios channels-last / NCHW.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from itnas.accel import bench


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="darts")
    p.add_argument("--layers", type=int, default=8, help="supernet cells")
    p.add_argument("--genotype", default="DARTS_V2")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    candidates = {}
    for cl in (False, True):
        tag = "channels_last" if cl else "nchw"
        s = bench.SupernetBench(args.variant, args.layers, 16, args.batch_size, 32, args.device, amp=False,
                                channels_last=cl)
        t = bench.TrainBench(args.genotype, "cifar", batch_size=args.batch_size, device=args.device, amp=False,
                             channels_last=cl)
        candidates[f"supernet_{tag}"] = s.weight_step
        candidates[f"train_{tag}"] = t.step
        device = s.device
    t = bench.interleave(candidates, args.repeats, device, args.warmup)
    result = {"compare": "layouts", "variant": args.variant, "layers": args.layers, "genotype": args.genotype,
              "batch_size": args.batch_size, "repeats": args.repeats, **bench.machine(),
              **{name: timings.summary("step") for name, timings in t.items()},
              "supernet_ratio_cpu": bench.ratio(t["supernet_channels_last"], t["supernet_nchw"]),
              "train_ratio_cpu": bench.ratio(t["train_channels_last"], t["train_nchw"]),
              "command": " ".join(["benchmarks/compare_layouts.py",
                                   *(argv if argv is not None else sys.argv[1:])])}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
