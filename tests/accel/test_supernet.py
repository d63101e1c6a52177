"""The supernet's fast forward (itnas/accel/supernet.py: ReLU and poolings shared by the edges
leaving a state, each node's weighted sum as one matrix-vector product, plus the faster kernels)
computes what the plain forward computes: logits, BN statistics and gradients equal up to float
rounding (tight in float64, where rounding is 1e-16); so does a Searcher with `runtime.accel`."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from itnas.accel.bench import search_config
from itnas.accel.kernels import use_fast_kernels
from itnas.accel.supernet import FastSearchCell, mix, use_fast_cells
from itnas.search.loop import Searcher
from itnas.search.policies import build_policy
from itnas.search.supernet import SearchCell, SearchNetwork
from itnas.variants import VARIANTS
from tests.accel.conftest import assert_rel_close


def _fast_and_plain(dtype=torch.float32, layout=torch.contiguous_format, variant="itnas", device="cpu"):
    torch.manual_seed(0)
    plain = SearchNetwork(10, layers=3, init_channels=4).to(device=device, dtype=dtype, memory_format=layout)
    v = VARIANTS[variant]
    policy = build_policy(v.gumbel, v.transition).to(device=device, dtype=dtype)
    return use_fast_cells(use_fast_kernels(copy.deepcopy(plain))), plain, policy


def _run(net, policy, x, y):
    policy.zero_grad(set_to_none=True)
    torch.manual_seed(5)  # the same Gumbel draw for both
    logits = net(x, policy.all_weights())
    F.cross_entropy(logits, y).backward()
    return (logits.detach(), {n: p.grad for n, p in net.named_parameters()},
            {n: p.grad.clone() for n, p in policy.named_parameters()},
            {n: b.clone() for n, b in net.named_buffers()})


def _inputs(dtype, layout, device="cpu"):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 32, 32, generator=g, dtype=dtype).to(device).contiguous(memory_format=layout)
    return x, torch.tensor([0, 3], device=device)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("dtype,rel_out,rel_w,rel_a", [(torch.float32, 1e-5, 1e-4, 1e-2),
                                                       (torch.float64, 1e-13, 1e-10, 1e-9)],
                         ids=["float32", "float64"])
def test_fast_supernet_step_equals_the_plain_one(layout, dtype, rel_out, rel_w, rel_a):
    net, plain, policy = _fast_and_plain(dtype, layout)
    assert all(type(cell) is FastSearchCell for cell in net.cells)
    assert not any(isinstance(cell, FastSearchCell) for cell in plain.cells)
    x, y = _inputs(dtype, layout)
    out, grads, arch_grads, buffers = _run(net, policy, x, y)
    ref, ref_grads, ref_arch_grads, ref_buffers = _run(plain, policy, x, y)
    assert_rel_close(out, ref, rel_out, "logits")
    for name in ref_buffers:
        if name.endswith("num_batches_tracked"):  # the faster BN does not count (kernels.BatchNorm)
            assert buffers[name] == 0 and ref_buffers[name] == 1, name
            continue
        # A running mean averages values of either sign, so its own size says little about the
        # rounding in it; measure it against the spread of the values (the running variance).
        scale = ref_buffers[name.replace("running_mean", "running_var")].double().abs().max()
        err = (buffers[name].double() - ref_buffers[name].double()).abs().max()
        assert err <= rel_out * scale, f"{name}: {float(err):.3g}"
    for name in ref_grads:
        assert_rel_close(grads[name], ref_grads[name], rel_w, name)
    # The architecture gradient is a difference of near-equal sums (softmax Jacobian), so float32
    # rounding shows more there; float64 pins it down.
    for name in ref_arch_grads:
        assert_rel_close(arch_grads[name], ref_arch_grads[name], rel_a, name)


def test_fast_supernet_in_eval_mode_equals_the_plain_one():
    net, plain, policy = _fast_and_plain()
    x, y = _inputs(torch.float32, torch.contiguous_format)
    _run(net, policy, x, y), _run(plain, policy, x, y)  # some running statistics first
    net.eval(), plain.eval(), policy.eval()
    with torch.no_grad():
        w = policy.all_weights()
        assert_rel_close(net(x, w), plain(x, w), 1e-5, "logits")


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "channels_last"])
def test_mix_is_the_weighted_sum_of_its_terms_and_keeps_the_layout(layout):
    gen = torch.Generator().manual_seed(2)
    terms = [torch.randn(3, 5, 4, 6, generator=gen, dtype=torch.float64).contiguous(memory_format=layout)
             for _ in range(9)]
    terms = [t.requires_grad_() for t in terms]
    w = torch.randn(9, generator=gen, dtype=torch.float64, requires_grad=True)
    out = mix(terms, w)
    ref = sum(w[i] * t for i, t in enumerate(terms))
    assert out.is_contiguous(memory_format=layout) and out.shape == (3, 5, 4, 6)
    assert_rel_close(out, ref, 1e-14, "sum")
    probe = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad((out * probe).sum(), [w, *terms])
    ref_grads = torch.autograd.grad((ref * probe).sum(), [w, *terms])
    for g, rg in zip(grads, ref_grads):
        assert_rel_close(g, rg, 1e-14, "gradient")


def test_fast_cell_leaves_its_inputs_untouched_by_the_in_place_sums():
    torch.manual_seed(0)
    cell = use_fast_cells(SearchCell(8, 8, 4, reduction=False, reduction_prev=False))
    assert type(cell) is FastSearchCell
    s0, s1 = torch.randn(2, 8, 8, 8), torch.randn(2, 8, 8, 8)
    before = s0.clone(), s1.clone()
    cell(s0, s1, torch.softmax(torch.randn(14, 7), -1))
    assert torch.equal(s0, before[0]) and torch.equal(s1, before[1])


def test_searcher_weight_step_with_fast_paths_matches_the_plain_step():
    cfg = search_config("itnas", 3, 4, 2, "cpu", False, False, False)
    results = []
    for accel in (True, False):
        cfg["runtime"]["accel"] = accel
        torch.manual_seed(0)
        searcher = Searcher(cfg, 10, 3)
        assert isinstance(searcher.net.cells[0], FastSearchCell) is accel
        x, y = _inputs(torch.float32, torch.contiguous_format)
        torch.manual_seed(7)
        loss, _ = searcher.weight_step(x, y)
        results.append((loss, [p.detach().clone() for p in searcher.net.parameters()]))
    (loss, params), (ref_loss, ref_params) = results
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    for p, rp in zip(params, ref_params):
        assert_rel_close(p, rp, 1e-5)


def test_searcher_arch_step_computes_only_the_architecture_gradient():
    """The first-order arch step back-propagates to the architecture parameters only: the same
    gradient as a full backward, bit for bit, without touching the weights' gradients."""
    cfg = search_config("itnas", 3, 4, 2, "cpu", False, False, False)
    torch.manual_seed(0)
    searcher = Searcher(cfg, 10, 3)
    x, y = _inputs(torch.float32, torch.contiguous_format)
    arch = list(searcher.policy.parameters())
    before = {k: v.clone() for k, v in searcher.net.state_dict().items()}
    torch.manual_seed(7)
    loss, _ = searcher.loss(x, y)
    loss.backward()
    ref = [a.grad.clone() for a in arch]
    searcher.net.load_state_dict(before)  # the BN statistics that forward moved
    searcher.net.zero_grad(set_to_none=True)
    for a in arch:
        a.grad = None
    searcher.a_opt.step = lambda: None  # keep the gradient for the comparison
    torch.manual_seed(7)
    searcher.arch_step(x, y, x, y)
    assert all(p.grad is None for p in searcher.net.parameters())
    for a, r in zip(arch, ref):
        assert torch.equal(a.grad, r)
