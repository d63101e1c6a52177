"""What both resume tests do: kill a search right after its first checkpoint, and check that
two search folders hold the same run, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from itnas.checkpoint import load_checkpoint
from itnas.run import TIMING_KEYS, RunDir


def die_after_first_checkpoint(monkeypatch) -> None:
    """Make the next run raise KeyboardInterrupt (exit 130) right after it checkpoints an epoch;
    `monkeypatch.undo()` or a new setattr of `RunDir.end_epoch` lifts it."""
    original = RunDir.end_epoch

    def end_then_die(self, epoch, record, payload):
        original(self, epoch, record, payload)
        raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "end_epoch", end_then_die)


def assert_same_search(straight: Path, resumed: Path) -> None:
    """Equal arch state, genotype, history (less its wall-clock times) and final weights."""
    for name in ("arch_state.json", "genotype.json", "history.json"):
        a = json.loads((straight / name).read_text())
        b = json.loads((resumed / name).read_text())
        if name == "history.json":
            a, b = ([{k: v for k, v in rec.items() if k not in TIMING_KEYS} for rec in h] for h in (a, b))
        assert a == b, name
    a = load_checkpoint(straight / "checkpoint.pt")["payload"]
    b = load_checkpoint(resumed / "checkpoint.pt")["payload"]
    for part in ("net", "policy"):
        for key, tensor in a[part].items():
            assert torch.equal(tensor, b[part][key]), f"{part}.{key}"
