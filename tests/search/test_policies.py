"""The architecture policies: probability vectors, gradients, temperature, Gumbel safety."""

import math

import pytest
import torch

from itnas.search.policies import (
    TransitionPolicy,
    arch_param_count,
    attention,
    build_policy,
    gumbel_noise,
    temperature,
    transition_weights,
)
from itnas.search.supernet import SearchNetwork
from itnas.space import ALL_EDGES, INNER_EDGES, OUTER_EDGES, TRIPLES
from itnas.variants import VARIANTS


@pytest.mark.parametrize("variant", list(VARIANTS.values()), ids=list(VARIANTS))
def test_every_edge_weight_is_a_probability_vector(variant):
    torch.manual_seed(0)
    policy = build_policy(variant.gumbel, variant.transition)
    policy.set_temperature(0.7)
    for cell, z in policy.all_weights().items():
        assert z.shape == (14, 7)
        assert torch.all(z >= 0), cell
        assert torch.allclose(z.sum(-1), torch.ones(14, dtype=z.dtype), atol=1e-6), cell


def test_inner_edges_follow_eq11_from_predecessors():
    torch.manual_seed(1)
    policy = TransitionPolicy(gumbel=False)
    z = policy.edge_weights("normal")
    p, beta = policy.transition("normal"), policy.beta("normal")
    # Z(2,3) = beta(0,2,3) Z(0,2) P(0,2,3) + beta(1,2,3) Z(1,2) P(1,2,3); triples 0 and 1.
    idx = {e: n for n, e in enumerate(ALL_EDGES)}
    expected = beta[0] * z[idx[(0, 2)]] @ p[0] + beta[1] * z[idx[(1, 2)]] @ p[1]
    assert torch.allclose(z[idx[(2, 3)]], expected)


def test_gradients_reach_alpha_transitions_and_attention():
    torch.manual_seed(0)
    policy = build_policy(gumbel=True, transition=True)
    net = SearchNetwork(num_classes=3, layers=3, init_channels=4)
    out = net(torch.randn(2, 3, 8, 8), policy.all_weights())
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 2])).backward()
    names = {name: p.grad for name, p in policy.named_parameters()}
    assert set(names) == {"outer.alpha.normal", "outer.alpha.reduce", "trans_logits.normal",
                          "trans_logits.reduce", "beta_logits.normal", "beta_logits.reduce"}
    for name, grad in names.items():
        assert grad is not None and grad.abs().sum() > 0, name


def test_inner_weights_are_probability_vectors_for_any_stochastic_inputs():
    gen = torch.Generator().manual_seed(3)
    outer = torch.softmax(torch.randn(8, 7, generator=gen) * 4, -1)
    trans = torch.softmax(torch.randn(16, 7, 7, generator=gen) * 4, -1)
    beta = torch.cat([torch.softmax(torch.randn(i, generator=gen), 0) for i, _ in INNER_EDGES])
    z = transition_weights(outer, trans, beta)
    assert torch.allclose(z.sum(-1), torch.ones(14))
    assert torch.all(z >= 0)


@pytest.mark.parametrize("variant,count", [("darts", 196), ("gumbel", 196),
                                           ("gumbel_transition", 1712), ("itnas", 1712)])
def test_architecture_parameter_counts(variant, count):
    v = VARIANTS[variant]
    assert arch_param_count(build_policy(v.gumbel, v.transition)) == count


def test_transition_adds_1376_parameters_over_darts_with_its_none_op():
    # The paper counts DARTS with 8 ops (incl. `none`): 2 x 14 x 8 = 224.
    assert 2 * (16 * 49 + 16) - 2 * 14 * 8 == 1376


def test_temperature_anneals_linearly_from_5_to_0_5():
    assert temperature(0, 50) == 5.0
    assert temperature(49, 50) == pytest.approx(0.5)
    assert temperature(1, 50) - temperature(2, 50) == pytest.approx(4.5 / 49)
    assert temperature(0, 1) == 5.0  # one epoch: no division by zero


def test_gumbel_noise_is_finite_at_the_extremes(monkeypatch):
    for fill in (0.0, 1.0):
        monkeypatch.setattr(torch, "rand", lambda *a, fill=fill, **k: torch.full(a[0], fill))
        g = gumbel_noise(torch.Size([4, 7]), torch.device("cpu"), torch.float32)
        assert torch.isfinite(g).all()


def test_one_gumbel_draw_per_cell_type_is_shared_by_all_cells():
    torch.manual_seed(0)
    policy = build_policy(gumbel=True, transition=False)
    policy.set_temperature(1.0)
    net = SearchNetwork(num_classes=3, layers=5, init_channels=4)
    seen: dict[bool, list[torch.Tensor]] = {True: [], False: []}
    hooks = [c.register_forward_pre_hook(lambda m, args: seen[m.reduction].append(args[2]))
             for c in net.cells]
    net(torch.randn(2, 3, 8, 8), policy.all_weights())
    for h in hooks:
        h.remove()
    assert len(seen[False]) == 3 and len(seen[True]) == 2
    for tensors in seen.values():
        assert all(t is tensors[0] for t in tensors)
    # ... and a second forward draws afresh.
    second = policy.all_weights()["normal"]
    assert not torch.equal(second, seen[False][0])


def test_gumbel_is_noise_free_in_eval_mode():
    policy = build_policy(gumbel=True, transition=False).eval()
    policy.set_temperature(2.0)
    a = policy.edge_weights("normal")
    assert torch.equal(a, policy.edge_weights("normal"))
    assert torch.allclose(a, torch.softmax(policy.alpha["normal"] / 2.0, -1))


def test_low_temperature_gives_near_one_hot_samples():
    torch.manual_seed(0)
    policy = build_policy(gumbel=True, transition=False)
    policy.set_temperature(0.01)
    z = policy.edge_weights("normal")
    assert float(z.detach().max(-1).values.min()) > 0.99
    assert math.isclose(float(z.sum()), 14.0, rel_tol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_transition_weights_are_eq11_written_out_for_every_inner_edge(dtype):
    """Every inner Z against Eq. 11 as the paper writes it, for each inner edge by its own name:
    sum over the m < i of beta(m, i, j) * Z(m, i) @ P(m, i, j), predecessors first."""
    gen = torch.Generator().manual_seed(3)
    outer = torch.softmax(torch.randn(8, 7, generator=gen, dtype=dtype) * 4, -1)
    trans = torch.softmax(torch.randn(16, 7, 7, generator=gen, dtype=dtype) * 4, -1)
    beta = attention(torch.randn(16, generator=gen, dtype=dtype))
    z = transition_weights(outer, trans, beta)
    by_edge = {e: z[n] for n, e in enumerate(ALL_EDGES)}
    for n, e in enumerate(OUTER_EDGES):
        assert torch.equal(by_edge[e], outer[n])
    triple = {t: n for n, t in enumerate(TRIPLES)}
    for i, j in INNER_EDGES:
        expected = sum(beta[triple[(m, i, j)]] * torch.einsum("s,st->t", by_edge[(m, i)], trans[triple[(m, i, j)]])
                       for m in range(i))
        assert torch.allclose(by_edge[(i, j)], expected, rtol=1e-6 if dtype == torch.float32 else 1e-14), (i, j)


def test_attention_is_a_softmax_over_the_predecessors_of_each_inner_edge():
    logits = torch.randn(16, generator=torch.Generator().manual_seed(0)) * 3
    beta = attention(logits)
    # Independently: one softmax over a [6, 4] table padded with -inf (which softmax makes 0).
    table = torch.full((6, 4), float("-inf"))
    for n, (i, _) in enumerate(INNER_EDGES):
        table[n, :i] = logits[[TRIPLES.index((m, i, j)) for (m, i2, j) in TRIPLES if (i2, j) == INNER_EDGES[n]]]
    expected = torch.cat([torch.softmax(table[n], 0)[:i] for n, (i, _) in enumerate(INNER_EDGES)])
    assert torch.allclose(beta, expected, atol=1e-7)
    for i, j in INNER_EDGES:
        total = sum(float(beta[TRIPLES.index((m, i, j))]) for m in range(i))
        assert total == pytest.approx(1.0, abs=1e-6)


def test_gumbel_noise_follows_the_standard_gumbel_law():
    """G = -log(-log U): mean Euler's gamma (0.5772), variance pi^2 / 6 (1.645), right-skewed.
    Noise of the wrong law (-G, or a plain normal) fails one of these."""
    torch.manual_seed(0)
    g = gumbel_noise(torch.Size([400_000]), torch.device("cpu"), torch.float64)
    assert float(g.mean()) == pytest.approx(0.5772, abs=0.01)
    assert float(g.var()) == pytest.approx(math.pi ** 2 / 6, abs=0.03)
    assert float(((g - g.mean()) ** 3).mean() / g.var() ** 1.5) == pytest.approx(1.1395, abs=0.05)


def test_gumbel_softmax_samples_each_op_with_its_softmax_probability():
    """The Gumbel-max property the method rests on (Eq. 5 as tau -> 0): the op with the largest
    alpha + G is op k with probability softmax(alpha)_k, on every edge."""
    torch.manual_seed(1)
    policy = build_policy(gumbel=True, transition=False)
    with torch.no_grad():
        policy.alpha["normal"].copy_(torch.tensor([2.0, 1.0, 0.5, 0.0, -0.5, -1.0, 0.3]).expand(14, 7))
    policy.set_temperature(0.5)
    picks = torch.zeros(7)
    for _ in range(1500):
        picks += torch.nn.functional.one_hot(policy.edge_weights("normal").argmax(-1), 7).sum(0)
    expected = torch.softmax(policy.alpha["normal"][0].detach(), 0)
    assert torch.allclose(picks / picks.sum(), expected, atol=0.01), (picks / picks.sum(), expected)
