"""The faster kernels (itnas/accel/kernels.py) give the plain convolution's results: the dilated
depthwise conv on pixel phases (bit-identical output) and the 5x5 depthwise conv with its
block-wise weight gradient (bit-identical output and input gradient, weight gradient equal
up to float rounding)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from itnas import ops
from itnas.accel import kernels
from itnas.space import Genotype
from itnas.train.networks import build_network
from tests.accel.conftest import assert_rel_close

LAYOUTS = [torch.contiguous_format, torch.channels_last]


def _grads(fn, x, weight, g):
    x = x.detach().requires_grad_()
    out = fn(x)
    gx, gw = torch.autograd.grad(out, (x, weight), g)
    return out.detach(), gx, gw


@pytest.mark.parametrize("layout", LAYOUTS, ids=["nchw", "channels_last"])
@pytest.mark.parametrize("kernel,stride,size", [(3, 1, 16), (5, 1, 16), (3, 2, 16), (5, 2, 16),
                                                (3, 2, 15), (5, 2, 9)])
def test_dilated_depthwise_on_phases_equals_the_dilated_conv(layout, kernel, stride, size):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 6, kernel, stride=stride, padding=kernel - 1, dilation=2, groups=6, bias=False)
    x = torch.randn(3, 6, size, size).contiguous(memory_format=layout)
    assert kernels._phases_apply(conv, x), "the fast path must be taken here"
    g = torch.randn_like(conv(x))
    out, gx, gw = _grads(lambda t: kernels.dilated_depthwise(conv, t), x, conv.weight, g)
    ref, rgx, rgw = _grads(conv, x, conv.weight, g)
    assert torch.equal(out, ref)
    assert_rel_close(gx, rgx, 1e-6, "input gradient")
    assert_rel_close(gw, rgw, 1e-5, "weight gradient")
    assert out.is_contiguous(memory_format=layout)


def test_odd_sizes_at_stride_1_take_the_plain_conv():
    conv = torch.nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=4, bias=False)
    assert not kernels._phases_apply(conv, torch.randn(1, 4, 15, 15))
    x = torch.randn(1, 4, 15, 15)
    assert torch.equal(kernels.depthwise(conv, x), conv(x))


@pytest.mark.parametrize("layout", LAYOUTS, ids=["nchw", "channels_last"])
@pytest.mark.parametrize("dtype,rel", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_blockwise_5x5_weight_gradient_equals_the_plain_one(layout, dtype, rel):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=False).to(dtype)
    x = torch.randn(4, 8, 16, 20, dtype=dtype).contiguous(memory_format=layout)
    g = torch.randn(4, 8, 16, 20, dtype=dtype).contiguous(memory_format=layout)
    out, gx, gw = _grads(lambda t: kernels._Depthwise5x5.apply(t, conv.weight), x, conv.weight, g)
    ref, rgx, rgw = _grads(conv, x, conv.weight, g)
    assert torch.equal(out, ref)
    assert torch.equal(gx, rgx)
    assert_rel_close(gw, rgw, rel, "weight gradient")


def test_depthwise_picks_the_blockwise_gradient_only_where_it_is_faster():
    conv = torch.nn.Conv2d(4, 4, 5, padding=2, groups=4, bias=False)
    big = kernels.depthwise(conv, torch.randn(1, 4, 16, 16, requires_grad=True))
    small = kernels.depthwise(conv, torch.randn(1, 4, 8, 8, requires_grad=True))
    assert "Depthwise5x5" in type(big.grad_fn).__name__
    assert "Depthwise5x5" not in type(small.grad_fn).__name__


def _all_ops_genotype() -> Genotype:
    """A cell using every primitive, so the evaluation-network test covers all fast paths."""
    normal = (("sep_conv_3x3", 0), ("sep_conv_5x5", 1), ("dil_conv_3x3", 0), ("dil_conv_5x5", 2),
              ("avg_pool_3x3", 1), ("skip_connect", 3), ("max_pool_3x3", 2), ("sep_conv_5x5", 4))
    reduce = (("dil_conv_5x5", 0), ("dil_conv_3x3", 1), ("sep_conv_5x5", 0), ("skip_connect", 1),
              ("max_pool_3x3", 0), ("sep_conv_3x3", 3), ("avg_pool_3x3", 1), ("dil_conv_5x5", 4))
    return Genotype(normal, (2, 3, 4, 5), reduce, (2, 3, 4, 5))


@pytest.mark.parametrize("layout", LAYOUTS, ids=["nchw", "channels_last"])
def test_evaluation_network_fast_paths_match_the_plain_network(layout):
    torch.manual_seed(0)
    plain = build_network(_all_ops_genotype(), "cifar", 10, layers=3, init_channels=6).to(memory_format=layout)
    net = kernels.use_fast_kernels(copy.deepcopy(plain))
    assert any(isinstance(m, kernels.FastDepthwise) for m in net.modules())
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=layout)
    y = torch.tensor([1, 7])
    results = []
    for model in (net, plain):
        logits, aux = model(x)
        loss = F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)
        loss.backward()
        results.append((logits.detach(), [p.grad for p in model.parameters()]))
    (out, grads), (ref, ref_grads) = results
    assert torch.equal(out, ref)
    for (name, _), g, rg in zip(net.named_parameters(), grads, ref_grads):
        assert_rel_close(g, rg, 1e-4, name)


def _pool_grads(x, g, **kw):
    x = x.detach().requires_grad_()
    out = kernels.avg_pool(x, 3, kw.pop("stride"), 1, **kw)
    out.backward(g)
    return out.detach(), x.grad


@pytest.mark.parametrize("stride,size", [(1, 8), (2, 8), (1, 7), (2, 7)])
def test_avg_pool_with_the_nchw_backward_equals_the_plain_pooling(stride, size):
    """The route around pytorch/pytorch#188344 (CUDA's channels-last avg_pool2d backward ignored
    the padding): forced on here, on the CPU, it must give the NCHW kernel's gradient bit for bit
    and keep the channels-last layout."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, size, size)
    g = torch.randn_like(F.avg_pool2d(x, 3, stride, 1))
    ref, ref_grad = _pool_grads(x, g, stride=stride, nchw_backward=False)
    out, grad = _pool_grads(x.contiguous(memory_format=torch.channels_last),
                            g.contiguous(memory_format=torch.channels_last), stride=stride, nchw_backward=True)
    assert torch.equal(out, ref)
    assert torch.equal(grad, ref_grad)
    assert grad.is_contiguous(memory_format=torch.channels_last) and not grad.is_contiguous()
    # Mean over the window inside the image: the corner of a stride-1 pooling averages 4 pixels.
    assert torch.allclose(ref[0, 0, 0, 0], x[0, 0, :2, :2].mean())


def test_avg_pool_takes_the_nchw_backward_only_for_channels_last_cuda_input():
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    assert type(kernels.avg_pool(x, 3, 1, 1).grad_fn).__name__ == "AvgPool2DBackward0"  # CPU: stock
    forced = kernels.avg_pool(x.contiguous(memory_format=torch.channels_last), 3, 1, 1, nchw_backward=True)
    assert "_AvgPoolNCHWBackward" in type(forced.grad_fn).__name__
    op = kernels.use_safe_kernels(ops.make_op("avg_pool_3x3", 2, 2, affine=False))
    assert isinstance(op, kernels.AvgPool3x3) and torch.equal(op(x), F.avg_pool2d(x, 3, 2, 1, count_include_pad=False))



def test_the_safe_factorized_reduce_equals_the_plain_one_on_a_channels_last_cpu_input():
    torch.manual_seed(0)
    plain = ops.FactorizedReduce(4, 4)
    safe = kernels.use_safe_kernels(copy.deepcopy(plain))
    assert type(safe) is kernels.SafeFactorizedReduce
    safe.to(memory_format=torch.channels_last)
    assert safe.conv_1.weight.stride() == (4, 1, 1, 1)  # NCHW strides kept: oneDNN's NCHW route
    x = torch.randn(8, 4, 16, 16)
    xc = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    x.requires_grad_()
    out, ref = safe(xc), plain(x)
    assert out.is_contiguous(memory_format=torch.channels_last)  # the layout goes on unchanged
    assert_rel_close(out, ref, 1e-5)
    g = torch.randn_like(ref)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    assert_rel_close(xc.grad, x.grad, 1e-4, "input gradient")
    for (name, a), b in zip(safe.named_parameters(), plain.parameters()):
        assert_rel_close(a.grad, b.grad, 1e-4, name)


# oneDNN's weight gradient of a stride-2 1x1 conv on an NHWC input with fewer than 8 channels
# corrupts the heap (torch 2.14.1): within a few iterations the process aborts or hangs.
_HEAP = """
import copy, torch
from itnas import ops
from itnas.accel import kernels
torch.manual_seed(0)
op = ops.FactorizedReduce(4, 4)
if {safe}:
    kernels.use_safe_kernels(op)
op.to(memory_format=torch.channels_last)
x = torch.randn(8, 4, 16, 16).contiguous(memory_format=torch.channels_last)
for _ in range(40):
    op(x).square().sum().backward()
print("survived")
"""


def test_a_tiny_channels_last_factorized_reduce_trains_on_the_cpu_without_corrupting_the_heap():
    """Run in a child process: the broken kernel aborts the process, not just the test. Without
    the swap (`safe` False) this child dies with "free(): invalid next size" or hangs."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.run([sys.executable, "-c", _HEAP.format(safe=True)], env=env, capture_output=True,
                           text=True, timeout=120)
    assert child.returncode == 0 and "survived" in child.stdout, child.stderr[-500:]


@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_without_the_counter_equals_torchs(affine):
    """`kernels.BatchNorm` skips the `num_batches_tracked += 1` kernel and nothing else: outputs,
    gradients and running statistics bit-identical to nn.BatchNorm2d's, in training and in eval
    mode, the same state-dict keys (a torch BN's state loads into it and back), one aten op
    fewer per training forward."""
    from itnas.accel.bench import count_dispatches

    torch.manual_seed(0)
    ours, ref = kernels.BatchNorm(6, affine=affine), torch.nn.BatchNorm2d(6, affine=affine)
    ours.load_state_dict(ref.state_dict())
    for step in range(3):
        x = torch.randn(4, 6, 5, 5)
        outs = []
        for bn in (ours, ref):
            xi = x.clone().requires_grad_()
            out = bn(xi)
            out.backward(torch.ones_like(out) * torch.arange(6.0).view(1, 6, 1, 1))
            outs.append((out.detach(), xi.grad))
        assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1]), step
        assert torch.equal(ours.running_mean, ref.running_mean) and torch.equal(ours.running_var, ref.running_var)
    assert int(ours.num_batches_tracked) == 0 and int(ref.num_batches_tracked) == 3
    x = torch.randn(4, 6, 5, 5)
    assert count_dispatches(lambda: ours(x)) == count_dispatches(lambda: ref(x)) - 1
    ours.eval(), ref.eval()
    assert torch.equal(ours(x), ref(x))
    assert ours.state_dict().keys() == ref.state_dict().keys()
    ref.load_state_dict(ours.state_dict())
