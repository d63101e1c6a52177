"""SIGKILL a search at random moments, rerun it, and get the uninterrupted result bit for bit."""

import json
import random

import pytest
import torch

from itnas.checkpoint import load_checkpoint

from .killing import kill_at_random_moments, run_to_end


@pytest.mark.slow
def test_search_killed_at_random_moments_resumes_bit_identical(tmp_path, tiny_search_overrides):
    def args(out):
        a = ["search", "--config", "config/recipes/search.yaml", "--variant", "itnas", "--seed", "3",
             "--out", str(out)]
        for item in tiny_search_overrides + ["epochs=4"]:
            a += ["--set", item]
        return a

    run_to_end(args(tmp_path / "straight"))
    rng = random.Random(0)  # reproducible "random" moments, spread over import, epochs and writes
    delays = [rng.uniform(2.0, 7.0) for _ in range(6)]
    kills = kill_at_random_moments(args(tmp_path / "killed"), tmp_path / "killed", delays,
                                   final_outputs=("genotype.json", "arch_state.json"))
    run_to_end(args(tmp_path / "killed"))
    assert kills >= 1

    for name in ("arch_state.json", "genotype.json"):
        assert (tmp_path / "straight" / name).read_text() == (tmp_path / "killed" / name).read_text()
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["payload"]
    b = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["payload"]
    for key, tensor in a["net"].items():
        assert torch.equal(tensor, b["net"][key]), key
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    killed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "genotype_hash"):
        assert straight[key] == killed[key], key
