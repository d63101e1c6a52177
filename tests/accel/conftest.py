"""Fixtures of the fast-path equality tests: the CUDA device and comparison helpers. (One CPU
thread comes from tests/conftest.py; the `gpu` marker is declared in pyproject.toml.)"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def cuda():
    """The CUDA device, with TF32 off for the test (float32 means float32 in the comparisons)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield torch.device("cuda")
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def assert_rel_close(actual: torch.Tensor, expected: torch.Tensor, rel: float, what: str = "") -> None:
    """max |actual - expected| <= rel * max |expected| (rounding-level agreement of a tensor)."""
    assert actual.shape == expected.shape, what
    scale = expected.detach().abs().max().double().clamp_min(1e-30)
    err = (actual.detach().double() - expected.detach().double()).abs().max()
    assert float(err) <= rel * float(scale), f"{what}: max error {float(err):.3g} > {rel:g} x {float(scale):.3g}"
