"""search/supernet.py: the mixed op (a weighted sum over the candidate ops), the search cell's
wiring (node j sums an edge from every earlier state, Eq. 2) and the supernet's layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from itnas.search.supernet import MixedOp, SearchCell, SearchNetwork
from itnas.space import ALL_EDGES, NONE, POOLING, PRIMITIVES, search_primitives

C, K, E = 4, len(PRIMITIVES), len(ALL_EDGES)


def _eval(module: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return module.eval()  # batch norm from its running statistics: the same function every call


def test_the_mixed_op_is_the_weighted_sum_of_its_ops():
    op = _eval(MixedOp(C, 1))
    x, w = torch.randn(2, C, 6, 6), torch.rand(K)
    expected = sum(w[k] * op.ops[k](x) for k in range(K))
    torch.testing.assert_close(op(x, w), expected)
    one_hot = torch.zeros(K)
    one_hot[PRIMITIVES.index("sep_conv_5x5")] = 1.0
    torch.testing.assert_close(op(x, one_hot), op.ops[PRIMITIVES.index("sep_conv_5x5")](x))


def test_each_pooling_is_followed_by_a_non_affine_batch_norm_and_none_is_optional():
    op = MixedOp(C, 2)
    wrapped = [name for name, candidate in zip(op.primitives, op.ops, strict=True)
               if isinstance(candidate[-1] if isinstance(candidate, nn.Sequential) else None, nn.BatchNorm2d)
               and isinstance(candidate[0], (nn.AvgPool2d, nn.MaxPool2d)) and not candidate[-1].affine]
    assert sorted(wrapped) == sorted(POOLING)
    assert MixedOp(C, 1, search_primitives(none_op=True)).primitives[0] == NONE


def test_a_cell_wires_each_node_to_every_earlier_state():
    """Only the skip on edge 0->2 on: node 2 is the first input's adapter output, and every
    later node, which reads no other edge, is zero."""
    cell = _eval(SearchCell(6, 6, C, reduction=False, reduction_prev=False))
    s0, s1 = torch.randn(2, 6, 4, 4), torch.randn(2, 6, 4, 4)
    weights = torch.zeros(E, K)
    weights[ALL_EDGES.index((0, 2)), PRIMITIVES.index("skip_connect")] = 1.0
    out = cell(s0, s1, weights)
    assert out.shape == (2, 4 * C, 4, 4)  # the four nodes concatenated
    torch.testing.assert_close(out[:, :C], cell.pre0(s0))
    assert not out[:, C:].any()
    weights[ALL_EDGES.index((2, 5)), PRIMITIVES.index("skip_connect")] = 1.0  # node 5 reads node 2
    torch.testing.assert_close(cell(s0, s1, weights)[:, 3 * C:], cell.pre0(s0))


def test_only_the_edges_from_the_inputs_stride_in_a_reduction_cell():
    cell = SearchCell(6, 6, C, reduction=True, reduction_prev=False)
    assert len(cell.edges) == E == 14
    pools = [edge.ops[PRIMITIVES.index("max_pool_3x3")][0] for edge in cell.edges]
    assert [p.stride for p in pools] == [2 if i < 2 else 1 for i, _ in ALL_EDGES]
    assert cell(torch.randn(1, 6, 8, 8), torch.randn(1, 6, 8, 8), torch.rand(E, K)).shape == (1, 4 * C, 4, 4)


def test_the_supernet_reduces_at_a_third_and_two_thirds_and_classifies():
    net = SearchNetwork(10, layers=5, init_channels=C)
    assert [cell.reduction for cell in net.cells] == [False, True, False, True, False]
    weights = {"normal": torch.rand(E, K, requires_grad=True), "reduce": torch.rand(E, K, requires_grad=True)}
    logits = net(torch.randn(2, 3, 8, 8), weights)
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert weights["normal"].grad.abs().sum() > 0 and weights["reduce"].grad.abs().sum() > 0  # both cell types used
    with pytest.raises(ValueError, match="layers must be >= 3"):
        SearchNetwork(10, layers=2)
