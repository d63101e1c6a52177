"""How far apart two runs of the GPU search-step comparison land by rounding alone, and how far
a compiled mode lands from eager: the floor under the tolerances of
tests/accel/test_cuda.py's `*_search_steps_equal_eager_ones_on_gpu` tests.

    python3 benchmarks/gpu_noise_floor.py [MODE ...] [--device cuda]

Runs the tests' own setup (3-cell supernet, C=4, batch 8, transition policy without the Gumbel
draw, five architecture + weight steps, then a two-batch evaluation; TF32 off) eagerly twice with
cuDNN free to choose its algorithms, twice with deterministic cuDNN, then once per MODE (a
`compile` value such as cudagraphs or reduce-overhead), and prints for each pair the largest
difference, as a fraction of the largest entry, of the step losses, the weights' changes and the
architecture parameters, and both evaluation losses. On the CPU every eager pair agrees exactly.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from itnas import runtime as dev  # noqa: E402
from itnas.accel.bench import search_config  # noqa: E402
from itnas.search.loop import Searcher  # noqa: E402


def _batch(device: torch.device, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g).to(device), torch.arange(n, device=device) % 10


def search_run(device: torch.device, compile: bool | str, deterministic: bool) -> dict:
    dev.set_deterministic(deterministic)
    cfg = search_config("darts", 3, 4, 8, device.type, False, False, compile)
    cfg["arch"].update(gumbel=False, transition=True, tiep=False)
    dev.seed_everything(0)
    searcher = Searcher(cfg, 10, 3)
    start = [p.detach().clone() for p in searcher.net.parameters()]
    batches = [_batch(device, 8, k) for k in range(11)]
    losses = []
    for k in range(5):
        (x_val, y_val), (x_tr, y_tr) = batches[2 * k], batches[2 * k + 1]
        losses += [searcher.arch_step(x_val, y_val, x_tr, y_tr), searcher.weight_step(x_tr, y_tr)[0]]
    return {"losses": losses,
            "deltas": [p.detach() - p0 for p, p0 in zip(searcher.net.parameters(), start)],
            "arch": [p.detach().clone() for p in searcher.policy.parameters()],
            "eval": searcher.evaluate([batches[10], batches[0]])[0]}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def differences(a: dict, b: dict) -> dict[str, float]:
    return {"losses": max(abs(x - y) / abs(y) for x, y in zip(a["losses"], b["losses"])),
            "weight_deltas": max(_rel(x, y) for x, y in zip(a["deltas"], b["deltas"])),
            "arch": max(_rel(x, y) for x, y in zip(a["arch"], b["arch"])),
            "eval": abs(a["eval"] - b["eval"]) / abs(b["eval"])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("modes", nargs="*", metavar="MODE", help="compile values to compare with eager")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    start = time.perf_counter()
    free = [search_run(device, False, False) for _ in range(2)]
    fixed = [search_run(device, False, True) for _ in range(2)]
    pairs = {"eager vs eager, cuDNN free": (free[0], free[1]),
             "eager vs eager, deterministic cuDNN": (fixed[0], fixed[1]),
             "eager, free vs deterministic": (free[0], fixed[0])}
    for mode in args.modes:
        pairs[f"{mode} vs eager"] = (search_run(device, mode, False), free[0])
    for label, (a, b) in pairs.items():
        d = differences(a, b)
        print(f"{label}: losses {d['losses']:.1e}, weight deltas {d['weight_deltas']:.1e}, "
              f"architecture {d['arch']:.1e}, evaluation {d['eval']:.1e}", flush=True)
    print(f"{time.perf_counter() - start:.0f} s on {dev.describe(device)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
