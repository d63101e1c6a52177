"""Fixtures for the evaluation-network and training tests."""

from __future__ import annotations

import pytest

from itnas.train.batches import TrainData
from tests.train.tiny import tensor_data, tiny_config


@pytest.fixture
def tiny_cfg() -> dict:
    return tiny_config()


@pytest.fixture
def data() -> TrainData:
    return tensor_data()
