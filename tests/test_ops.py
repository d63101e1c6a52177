"""ops.py: the seven primitives and a cell's input adapters as DARTS defines them, on tiny tensors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from itnas.ops import (
    DilConv,
    FactorizedReduce,
    Identity,
    ReLUConvBN,
    SepConv,
    Zero,
    make_op,
    preprocess,
)
from itnas.space import NONE, PRIMITIVES

C = 4


@pytest.mark.parametrize("name", [*PRIMITIVES, NONE])
@pytest.mark.parametrize("stride", [1, 2])
def test_every_primitive_keeps_the_channels_and_strides_the_resolution(name, stride):
    x = torch.randn(2, C, 8, 8)
    assert make_op(name, C, stride, affine=False)(x).shape == (2, C, 8 // stride, 8 // stride)


@pytest.mark.parametrize("name, kind, kernel, dilation", [
    ("sep_conv_3x3", SepConv, 3, 1), ("sep_conv_5x5", SepConv, 5, 1),
    ("dil_conv_3x3", DilConv, 3, 2), ("dil_conv_5x5", DilConv, 5, 2),
])
def test_the_convolutions_are_relu_depthwise_pointwise_bn(name, kind, kernel, dilation):
    op = make_op(name, C, 2, affine=True)
    assert type(op) is kind
    blocks = list(op) if kind is SepConv else [op]
    assert len(blocks) == (2 if kind is SepConv else 1)  # a separable conv is two stacked blocks
    for k, (relu, depthwise, pointwise, bn) in enumerate(blocks):
        assert isinstance(relu, nn.ReLU)  # first: itnas/accel computes it once per state
        assert depthwise.groups == C and depthwise.kernel_size == (kernel, kernel)
        assert depthwise.dilation == (dilation, dilation) and depthwise.stride == ((2, 2) if k == 0 else (1, 1))
        assert pointwise.kernel_size == (1, 1) and bn.affine


def test_average_pooling_does_not_count_the_padding_and_skip_is_the_input_itself():
    ones = torch.ones(1, 1, 4, 4)
    assert torch.equal(make_op("avg_pool_3x3", 1, 1, affine=False)(ones), ones)  # the corners average 4 ones
    x = torch.randn(1, C, 4, 4)
    skip = make_op("skip_connect", C, 1, affine=False)
    assert type(skip) is Identity and skip(x) is x
    assert type(make_op("skip_connect", C, 2, affine=False)) is FactorizedReduce


def test_none_gives_zeros_at_its_stride():
    out = Zero(2)(torch.randn(1, C, 6, 6))
    assert out.shape == (1, C, 3, 3) and not out.any()


def test_affine_is_off_in_the_search_and_on_in_evaluation():
    for affine in (False, True):
        bns = [m for m in make_op("sep_conv_3x3", C, 1, affine).modules() if isinstance(m, nn.BatchNorm2d)]
        assert len(bns) == 2 and all(bn.affine == affine for bn in bns)


def test_factorized_reduce_sees_the_odd_positions_through_its_shifted_half():
    reduce = FactorizedReduce(1, 2).eval()
    for conv in (reduce.conv_1, reduce.conv_2):
        nn.init.ones_(conv.weight)
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 1.0  # an odd position: the unshifted stride-2 path skips it
    out = reduce(x)
    assert out.shape == (1, 2, 2, 2)
    assert not out[0, 0].any() and out[0, 1, 0, 0] > 0.99 and out[0, 1].count_nonzero() == 1
    with pytest.raises(ValueError, match="even channel count"):
        FactorizedReduce(4, 5)


def test_an_unknown_primitive_names_the_known_ones():
    with pytest.raises(KeyError, match="unknown primitive 'conv_7x7'.*sep_conv_3x3"):
        make_op("conv_7x7", C, 1, affine=False)


@pytest.mark.parametrize("reduction_prev", [False, True])
def test_the_input_adapters_bring_both_inputs_to_the_cells_channels_and_resolution(reduction_prev):
    pre0, pre1 = preprocess(6, 8, C, reduction_prev, affine=False)
    s0 = torch.randn(2, 6, 8 if reduction_prev else 4, 8 if reduction_prev else 4)
    s1 = torch.randn(2, 8, 4, 4)
    assert type(pre0) is (FactorizedReduce if reduction_prev else ReLUConvBN) and type(pre1) is ReLUConvBN
    assert pre0(s0).shape == pre1(s1).shape == (2, C, 4, 4)
