"""Fixtures for the evaluation-network and training tests."""

from __future__ import annotations

import pytest

from itnas.train import TrainData
from tests.train.tiny import tensor_data, tiny_config


@pytest.fixture
def tiny_cfg() -> dict:
    return tiny_config()


@pytest.fixture
def data() -> TrainData:
    return tensor_data()


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks run fastest on one thread, and on a busy 2-core box extra threads contend."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
