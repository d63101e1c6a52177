"""The check both resume tests make: two search folders hold the same run, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from itnas.checkpoint import load_checkpoint


def assert_same_search(straight: Path, resumed: Path) -> None:
    """Equal arch state, genotype, history (less the epoch timings) and final weights."""
    for name in ("arch_state.json", "genotype.json", "history.json"):
        a = json.loads((straight / name).read_text())
        b = json.loads((resumed / name).read_text())
        if name == "history.json":
            for rec in a + b:
                rec.pop("epoch_s")
        assert a == b, name
    a = load_checkpoint(straight / "checkpoint.pt")["payload"]
    b = load_checkpoint(resumed / "checkpoint.pt")["payload"]
    for part in ("net", "policy"):
        for key, tensor in a[part].items():
            assert torch.equal(tensor, b[part][key]), f"{part}.{key}"
