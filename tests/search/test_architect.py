"""The architecture step (itnas/search/architect.py): what it reads, and that its gradient is the
one the method defines.

- First order: the gradient of the architecture loss on the architecture batch only.
- Second order (DARTS's unrolled step): the finite-difference hypergradient matches the exact
  one (autograd through the virtual SGD step) up to the finite-difference error, so a flipped
  sign or a dropped term in the correction fails; and every loss evaluation inside one step
  shares one Gumbel draw per cell type, so the Hessian term is not a difference of two noises.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from itnas.accel.bench import search_config
from itnas.search import policies
from itnas.search.loop import Searcher


def _searcher(variant: str, order: str = "second", accel: bool = False, seed: int = 0) -> Searcher:
    cfg = search_config(variant, 3, 4, 4, "cpu", False, False, False)
    cfg["arch_optim"]["order"] = order
    cfg["runtime"]["accel"] = accel
    torch.manual_seed(seed)
    searcher = Searcher(cfg, 10, 3)
    searcher.policy.set_temperature(1.0)
    return searcher


def _batches(n: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 3, 8, 8, generator=g), torch.randint(10, (4,), generator=g)) for _ in range(n)]


def _keep_gradients(searcher: Searcher) -> None:
    """Leave the architecture gradient in .grad: the optimiser's update is skipped."""
    searcher.a_opt.step = lambda: None


def _arch_grads(searcher: Searcher) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in searcher.policy.parameters()]


def test_one_second_order_step_draws_gumbel_noise_once_per_cell_type(monkeypatch):
    """Four loss evaluations (train at w, val at w', train at w+ and w-) in one unrolled step:
    one draw per cell type for all of them; the weight step that follows draws afresh."""
    draws = []
    real = policies.gumbel_noise

    def counted(*args, **kwargs):
        draws.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(policies, "gumbel_noise", counted)
    searcher = _searcher("itnas")
    (x_val, y_val), (x_tr, y_tr) = _batches()
    searcher.arch_step(x_val, y_val, x_tr, y_tr)
    assert len(draws) == 2
    searcher.weight_step(x_tr, y_tr)
    assert len(draws) == 4


def test_the_unrolled_step_under_noise_equals_the_step_with_that_noise_held_fixed(monkeypatch):
    """The step with real Gumbel draws gives the gradient of the same step in which every
    evaluation sees the first draw (recorded, then replayed): the noise cancels out of the
    finite difference as the method intends."""
    torch.manual_seed(5)
    first = {}
    real = policies.gumbel_noise

    def record(shape, device, dtype):
        noise = real(shape, device, dtype)
        first.setdefault(tuple(shape) + (len(first),), noise)
        return noise

    batches = _batches()
    (x_val, y_val), (x_tr, y_tr) = batches
    monkeypatch.setattr(policies, "gumbel_noise", record)
    searcher = _searcher("gumbel")
    _keep_gradients(searcher)
    torch.manual_seed(11)
    searcher.arch_step(x_val, y_val, x_tr, y_tr)
    noisy = _arch_grads(searcher)
    drawn = list(first.values())
    assert len(drawn) == 2  # normal, reduce

    calls = []

    def replay(shape, device, dtype):
        calls.append(1)
        return drawn[(len(calls) - 1) % 2]  # normal then reduce, at every evaluation

    monkeypatch.setattr(policies, "gumbel_noise", replay)
    fixed = _searcher("gumbel")
    _keep_gradients(fixed)
    fixed.arch_step(x_val, y_val, x_tr, y_tr)
    for a, b in zip(noisy, _arch_grads(fixed)):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-9)


def _exact_hypergradient(searcher: Searcher, x_val, y_val, x_tr, y_tr) -> list[torch.Tensor]:
    """d/da L_val(w - xi * (grad_w L_train(w, a) + wd * w), a), by autograd through the virtual
    step (no momentum buffer yet): the quantity DARTS's finite difference approximates."""
    net, policy = searcher.net, searcher.policy
    names = [n for n, _ in net.named_parameters()]
    weights = [p for _, p in net.named_parameters()]
    arch = list(policy.parameters())
    xi = searcher.w_opt.param_groups[0]["lr"]
    wd = searcher.cfg["optim"]["weight_decay"]
    loss_tr = F.cross_entropy(net(x_tr, policy.all_weights()), y_tr)
    grads = torch.autograd.grad(loss_tr, weights, create_graph=True)
    unrolled = {n: w - xi * (g + wd * w) for n, w, g in zip(names, weights, grads)}
    logits = torch.func.functional_call(net, unrolled, (x_val, policy.all_weights()))
    return list(torch.autograd.grad(F.cross_entropy(logits, y_val), arch))


@pytest.fixture
def smooth(monkeypatch):
    """A smooth supernet: softplus for ReLU and average for max pooling. DARTS's finite
    difference assumes a smooth loss; across ReLU and max-pool kinks it is inexact at any
    step size (measured on this 3-cell net in float64: 2x the Hessian term in the normal cell
    at DARTS's eps), which would hide the formula behind the kinks."""
    monkeypatch.setattr(torch.nn.ReLU, "forward", lambda self, x: F.softplus(x))
    monkeypatch.setattr(torch.nn.MaxPool2d, "forward",
                        lambda self, x: F.avg_pool2d(x, self.kernel_size, self.stride, self.padding))


@pytest.mark.parametrize("variant", ["darts", "itnas"])
def test_the_finite_difference_hypergradient_matches_the_exact_one(variant, monkeypatch, smooth):
    """Against autograd through the unrolled step, in float64 with BN in eval mode (so the four
    forward passes see the same normalisation) and the Gumbel noise held fixed: the finite
    difference agrees to a small fraction of the gradient (measured: 0.1 %), while dropping the
    Hessian term or flipping its sign would change it by the term's own size (over 100 % here)."""
    monkeypatch.setattr(policies, "gumbel_noise", lambda shape, device, dtype: torch.zeros(shape, dtype=dtype))
    searcher = _searcher(variant)
    searcher.net.double().eval()
    searcher.policy.double()
    searcher.w_opt.param_groups[0]["lr"] = 0.5  # a large xi makes the second-order term large
    _keep_gradients(searcher)
    (x_val, y_val), (x_tr, y_tr) = [(x.double(), y) for x, y in _batches()]
    searcher.arch_step(x_val, y_val, x_tr, y_tr)
    finite = _arch_grads(searcher)
    exact = _exact_hypergradient(searcher, x_val, y_val, x_tr, y_tr)
    searcher.a_opt.zero_grad(set_to_none=True)
    first = torch.autograd.grad(searcher.loss(x_val, y_val)[0], list(searcher.policy.parameters()))  # at w
    for f, e, g in zip(finite, exact, first):
        scale = e.abs().max()
        assert (f - e).abs().max() <= 0.01 * scale, (float((f - e).abs().max()), float(scale))
        assert (g - e).abs().max() > 0.5 * scale  # the correction is not negligible here
