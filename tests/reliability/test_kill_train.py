"""SIGKILL a training at random moments, rerun it, and get the uninterrupted result bit for bit."""

import json
import random

import pytest
import torch

from itnas.checkpoint import load_weights

from .killing import kill_at_random_moments, run_to_end


@pytest.mark.slow
def test_training_killed_at_random_moments_resumes_bit_identical(tmp_path, standin_root):
    def args(out):
        a = ["train", "--config", "config/recipes/train_cifar.yaml", "--genotype", "DARTS_V2",
             "--dataset", "synthetic-cifar10", "--seed", "2", "--out", str(out), "--data-root", str(standin_root)]
        for item in ("epochs=4", "data.batch_size=8", "model.layers=5", "model.init_channels=4", "data.max_train_samples=32",
                     "data.max_test_samples=16", "runtime.workers=0", "runtime.device=cpu", "model.drop_path_prob=0.2", "data.cutout=8"):
            a += ["--set", item]
        return a

    run_to_end(args(tmp_path / "straight"))
    rng = random.Random(1)
    delays = [rng.uniform(2.0, 6.0) for _ in range(6)]
    kills = kill_at_random_moments(args(tmp_path / "killed"), tmp_path / "killed", delays)
    run_to_end(args(tmp_path / "killed"))
    assert kills >= 1

    a = load_weights(tmp_path / "straight" / "model.pt")
    b = load_weights(tmp_path / "killed" / "model.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    killed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    for key in ("test_top1_err", "test_top5_err", "params", "epochs"):
        assert straight[key] == killed[key], key
