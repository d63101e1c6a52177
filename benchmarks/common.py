"""What the benchmark scripts share: their size arguments, the search weight step they time, the
fixed batches it alternates between, and the JSON line they print (with machine and command).

The scripts import it as `common` (they run as `python benchmarks/NAME.py`, which puts this
folder first on sys.path)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F

from itnas.accel import bench


def parser(doc: str | None, *, repeats: int, warmup: int, variant: str = "darts",
           variant_help: str | None = None) -> argparse.ArgumentParser:
    """An argument parser with the sizes and timing knobs every script takes."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default=variant, help=variant_help)
    p.add_argument("--layers", type=int, default=8, help="cells in the supernet")
    p.add_argument("--init-channels", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=repeats, help="timed steps per candidate")
    p.add_argument("--warmup", type=int, default=warmup, help="untimed steps per candidate first")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 keeps process CPU time meaningful on a shared machine")
    p.add_argument("--seed", type=int, default=0)
    return p


def batches(batch: int, size: int, seed: int, channels_last: bool = False,
            device: torch.device | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Two fixed random batches (a step alternates between them), on the CPU unless `device`."""
    device = device or torch.device("cpu")
    g = torch.Generator().manual_seed(seed)
    out = [bench.synthetic_batch(batch, 3, size, 10, device, g) for _ in range(2)]
    if channels_last:
        out = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in out]
    return out


class WeightStep:
    """The search's weight step on alternating fixed batches: zero_grad, forward, cross-entropy,
    backward, clip to norm 5, SGD(0.025, momentum 0.9, weight decay 3e-4) update.

    `forward(x)` returns the logits; `params` are what SGD updates (and what is clipped);
    `also_zero` are modules whose gradients are cleared too (the architecture policy);
    `before` runs first in every step (module-wide switches of the candidate)."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], params: Iterable[torch.nn.Parameter],
                 data: list[tuple[torch.Tensor, torch.Tensor]], also_zero: Iterable[torch.nn.Module] = (),
                 before: Callable[[], None] | None = None):
        self.forward, self.params, self.data = forward, list(params), data
        self.also_zero, self.before = list(also_zero), before
        self.opt = torch.optim.SGD(self.params, lr=0.025, momentum=0.9, weight_decay=3e-4)
        self.turn = 0

    def __call__(self) -> float:
        if self.before is not None:
            self.before()
        self.turn ^= 1
        x, y = self.data[self.turn]
        self.opt.zero_grad(set_to_none=True)
        for m in self.also_zero:
            m.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.forward(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 5.0)
        self.opt.step()
        return float(loss.detach())


def supernet_step(net: torch.nn.Module, policy: torch.nn.Module, data, before=None) -> WeightStep:
    """`WeightStep` of a search supernet whose edge weights come from `policy`."""
    return WeightStep(lambda x: net(x, policy.all_weights()), net.parameters(), data, (policy,), before)


def emit(script: str, result: dict[str, Any], argv: list[str] | None) -> int:
    """Print `result` as one JSON line, with the machine and the command that produced it."""
    args = argv if argv is not None else sys.argv[1:]
    print(json.dumps({**result, **bench.machine(), "command": " ".join([f"benchmarks/{script}", *args])}),
          flush=True)
    return 0
