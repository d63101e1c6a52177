"""The seven primitives of the DARTS space (K = 7; DARTS's `none` only where a search adds it)
and a cell's input adapters, as plain PyTorch: what the method computes, read as written.

Conventions follow DARTS: a separable conv is two stacked (ReLU, depthwise, pointwise, BN);
a dilated conv is one (ReLU, depthwise with dilation 2, pointwise, BN); a stride-2 skip is a
FactorizedReduce; average pooling does not count the padding. `affine=False` for every BN of
the search network, `True` in evaluation networks. Every block that starts with a ReLU keeps
it as its first step, so `itnas/accel` can compute that ReLU once for all the edges leaving a
state; the faster kernels it swaps in compute the same (tests/accel).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from itnas.space import NONE, PRIMITIVES


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, depthwise conv (optionally dilated), pointwise conv, BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 dilation: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride=stride, padding=padding, dilation=dilation,
                      groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked DilConv blocks with dilation 1; only the first one strides."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine),
        )


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """DARTS's `none`: zeros at the edge's stride."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset stride-2 1x1 convs of ReLU(x), concatenated, then BN."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even channel count, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.halves(self.relu(x))

    def halves(self, r: torch.Tensor) -> torch.Tensor:
        """The block after its ReLU: r = ReLU(x)."""
        # The second path is shifted by one pixel so both together see every input position.
        shifted = F.pad(r[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_1(r), self.conv_2(shifted)], dim=1))


def make_op(name: str, channels: int, stride: int, affine: bool) -> nn.Module:
    """Build primitive `name` mapping `channels` to `channels` with the given stride."""
    c = channels
    if name == "sep_conv_3x3":
        return SepConv(c, c, 3, stride, 1, affine)
    if name == "sep_conv_5x5":
        return SepConv(c, c, 5, stride, 2, affine)
    if name == "dil_conv_3x3":
        return DilConv(c, c, 3, stride, 2, 2, affine)
    if name == "dil_conv_5x5":
        return DilConv(c, c, 5, stride, 4, 2, affine)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if name == "skip_connect":
        return Identity() if stride == 1 else FactorizedReduce(c, c, affine)
    if name == NONE:
        return Zero(stride)
    raise KeyError(f"unknown primitive '{name}' (expected one of: {', '.join(PRIMITIVES)})")


def preprocess(c_prev_prev: int, c_prev: int, c: int, reduction_prev: bool, affine: bool):
    """The two 1x1 adapters that bring a cell's inputs to `c` channels (and to one resolution)."""
    pre0 = (FactorizedReduce(c_prev_prev, c, affine) if reduction_prev
            else ReLUConvBN(c_prev_prev, c, 1, 1, 0, affine))
    pre1 = ReLUConvBN(c_prev, c, 1, 1, 0, affine)
    return pre0, pre1
