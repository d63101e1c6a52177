"""The `itnas` variant's steps against our own `darts` ones, in one interleaved run.

Both are the search's `Searcher` on the same supernet (same seed, same batches); only the
architecture policy differs: ITNAS adds the Gumbel draw on the outer edges and Eq. 11 on the
inner ones (1,376 more architecture parameters), which must not cost step time.

    .venv/bin/python benchmarks/compare_variants.py --batch-size 16 --repeats 7 --threads 1

Prints one JSON line: medians of the weight step and of the architecture step per variant
(process CPU and wall seconds) and the ratios itnas / darts; the goal (docs/performance.md) is a weight-step
ratio of at most 1.05.
"""

from __future__ import annotations

import sys

import common
import torch

from itnas.accel import bench


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__, repeats=7, warmup=2, variant="itnas", variant_help="the variant compared with darts")
    p.add_argument("--device", default="cpu")
    p.add_argument("--channels-last", default="auto", help="auto, true or false (both variants)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cl = args.channels_last if args.channels_last == "auto" else args.channels_last.lower() == "true"
    runs = {name: bench.SupernetBench(name, args.layers, args.init_channels, args.batch_size,
                                      args.image_size, args.device, amp=False, channels_last=cl,
                                      seed=args.seed)
            for name in ("darts", args.variant)}
    device = runs["darts"].device
    candidates = {}
    for name, run in runs.items():
        candidates[f"{name}_weight"] = run.weight_step
        candidates[f"{name}_arch"] = run.arch_step
    t = bench.interleave(candidates, args.repeats, device, args.warmup)
    v = args.variant
    return common.emit("compare_variants.py", {
        "compare": f"{v}_vs_darts", "layers": args.layers, "init_channels": args.init_channels,
        "batch_size": args.batch_size, "image_size": args.image_size,
        "channels_last": runs["darts"].searcher.rt.channels_last, "device": str(device), "repeats": args.repeats,
        **{name: timings.summary("step") for name, timings in t.items()},
        "weight_ratio_cpu": bench.ratio(t[f"{v}_weight"], t["darts_weight"], "cpu"),
        "weight_ratio_wall": bench.ratio(t[f"{v}_weight"], t["darts_weight"], "wall"),
        "arch_ratio_cpu": bench.ratio(t[f"{v}_arch"], t["darts_arch"], "cpu"),
        "arch_ratio_wall": bench.ratio(t[f"{v}_arch"], t["darts_arch"], "wall")}, argv)


if __name__ == "__main__":
    sys.exit(main())
