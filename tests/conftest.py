"""Shared test fixtures: tiny stand-in data generated once per session, tiny configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tests never write to a tracking server a developer has configured.
os.environ.pop("MLFLOW_TRACKING_URI", None)

REPO = Path(__file__).resolve().parents[1]

# One intra-op thread in the test process and in every process it spawns: the shapes are tiny
# (one thread is as fast), and tests that run several processes at once (kill/resume, DDP,
# workflow) would otherwise oversubscribe the cores, which makes OpenMP spin 20-40x slower.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True)
def one_thread():
    """Every test starts on one thread and leaves the count as it found it (some change it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def standin_root(tmp_path_factory) -> Path:
    """A data root holding the CIFAR-10 stand-in, generated once for the whole session."""
    from itnas.data.synthetic import generate

    root = tmp_path_factory.mktemp("data")
    generate("synthetic-cifar10", root)
    return root


@pytest.fixture
def tiny_search_overrides(standin_root) -> list[str]:
    """A search small enough for a few seconds on 2 cores: 5 cells, C=4, 16 images per half."""
    return [
        "dataset=synthetic-cifar10", f"data_root={standin_root}", "epochs=2",
        "model.layers=5", "model.init_channels=4", "data.batch_size=8", "data.max_samples=32",
        "runtime.workers=0", "runtime.device=cpu", "runtime.progress=false",
    ]
