"""Where the supernet weight step spends its time: torch.profiler over a few steps, top ops by
self CPU time (the profile in docs/performance.md).

    .venv/bin/python benchmarks/profile_supernet.py --batch-size 16 --threads 1 [--channels-last]
    .venv/bin/python benchmarks/profile_supernet.py --base 78f172c ...   # the revision before

Profiler times are wall time per op, so on a machine shared with other work they are
stretched by preemption; the shares are what to read, and `--repeats` averages more.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from compare_revisions import _accelerated, load_revision, revision_step  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__, repeats=2, warmup=1)
    p.add_argument("--base", help="profile this git revision's supernet instead")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--rows", type=int, default=15)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        build = load_revision(args.base, Path(tmp)) if args.base else _accelerated("itnas")
        step = revision_step(build, args.variant, args.layers, args.init_channels,
                             args.batch_size, args.image_size, args.channels_last, args.seed)
        for _ in range(args.warmup):
            step()
        cpu = time.process_time()
        step()
        print(f"one step: {time.process_time() - cpu:.3f} s CPU ({args.threads} thread(s))")
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(args.repeats):
                step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print(f"\nby op ({args.repeats} steps, {total / 1e6:.2f} s profiled):")
    print(f"{'op':<45} {'self %':>7} {'calls/step':>10}")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:args.rows]:
        print(f"{e.key[:45]:<45} {100 * e.self_cpu_time_total / total:7.1f} {e.count // args.repeats:10d}")
    print("\nby op and input shapes:")
    shaped = prof.key_averages(group_by_input_shape=True)
    for e in sorted(shaped, key=lambda e: -e.self_cpu_time_total)[:args.rows]:
        shapes = ", ".join(str(s) for s in e.input_shapes[:3] if s)
        print(f"{e.key[:30]:<30} {100 * e.self_cpu_time_total / total:6.1f}%  {shapes[:70]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
