"""The CUDA fast paths (channels-last, bf16 autocast, opt-in torch.compile) give the plain
path's results, checked on the CPU here and on the GPU by the `gpu`-marked tests (run by
benchmarks/gpu_check.sh). Channels-last and compile change only the order of float sums, so
they match tightly; bf16 keeps 8 mantissa bits, so it matches to about 1e-2. The
`*_steps_equal_eager_ones_on_gpu` tests run the search's and the training's own steps compiled
with CUDA graphs (mode reduce-overhead, and torch's cudagraphs backend) against eager ones
(tests/accel/test_compile.py checks the same step protocol on the CPU with a stand-in
for CUDA graphs)."""

from __future__ import annotations

import copy
import statistics

import pytest
import torch
import torch.nn.functional as F

from itnas import runtime as dev
from itnas.accel.kernels import use_fast_kernels
from itnas.accel.supernet import SharedInput, branches, mix, use_fast_cells
from itnas.genotypes import lookup
from itnas.ops import make_op
from itnas.search.policies import build_policy
from itnas.search.supernet import MixedOp, SearchNetwork
from itnas.space import PRIMITIVES
from itnas.train.networks import build_network
from tests.accel.conftest import assert_rel_close

CL = torch.channels_last


def _supernet(device, fast=True):
    """The search network with its speed-ups (itnas/accel), as a search runs it, or plain."""
    torch.manual_seed(0)
    net = SearchNetwork(10, layers=3, init_channels=4)
    if fast:
        net = use_fast_cells(use_fast_kernels(net))
    return net.to(device), build_policy(gumbel=False, transition=True).to(device)


def _evalnet(device, layers=3, channels=6):
    torch.manual_seed(0)
    return use_fast_kernels(build_network(lookup("DARTS_V2"), "cifar", 10, layers=layers,
                                          init_channels=channels)).to(device)


def _batch(device, n=2, size=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g).to(device), torch.arange(n, device=device) % 10


def _supernet_step(net, policy, x, y, amp=False):
    net.zero_grad(set_to_none=True)
    policy.zero_grad(set_to_none=True)
    with dev.autocast(x.device, amp):
        logits = net(x, policy.all_weights())
        loss = F.cross_entropy(logits.float(), y)
    loss.backward()
    return logits.detach().float(), [p.grad.float() for p in net.parameters()]


def _eval_step(net, x, y, amp=False):
    net.zero_grad(set_to_none=True)
    with dev.autocast(x.device, amp):
        logits, aux = net(x)
        loss = F.cross_entropy(logits.float(), y) + 0.4 * F.cross_entropy(aux.float(), y)
    loss.backward()
    return logits.detach().float(), [p.grad.float() for p in net.parameters()]


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


def _check_channels_last(device):
    net, policy = _supernet(device)
    fast = copy.deepcopy(net).to(memory_format=CL)
    x, y = _batch(device)
    out, grads = _supernet_step(fast, policy, x.contiguous(memory_format=CL), y)
    ref, ref_grads = _supernet_step(net, policy, x, y)
    assert_rel_close(out, ref, 1e-4, "logits")
    for (name, _), g, rg in zip(net.named_parameters(), grads, ref_grads):
        assert_rel_close(g, rg, 2e-3, name)


def _check_primitives_channels_last(device):
    """Every primitive at both strides, channels-last against contiguous (output, input and
    parameter gradients), all failures reported together: a layout bug in one kernel is named,
    not only seen in the stem's gradient (how pytorch/pytorch#188344, avg_pool2d's CUDA
    channels-last backward, first showed here)."""
    failures = []
    for name in PRIMITIVES:
        for stride in (1, 2):
            torch.manual_seed(0)
            op = use_fast_kernels(make_op(name, 8, stride, affine=True)).to(device)
            fast = copy.deepcopy(op).to(memory_format=CL)
            x = torch.randn(4, 8, 16, 16, device=device)
            g = torch.randn_like(op(x))
            results = []
            for module, layout in ((fast, CL), (op, torch.contiguous_format)):
                xi = x.contiguous(memory_format=layout).requires_grad_()
                out = module(xi)
                out.backward(g.contiguous(memory_format=layout))
                results.append([out.detach(), xi.grad] + [p.grad for p in module.parameters()])
            labels = ["output", "input gradient"] + [f"{n} gradient" for n, _ in op.named_parameters()]
            for label, a, b in zip(labels, *results):
                try:
                    assert_rel_close(a, b, 1e-4, f"{name} stride {stride} {label}")
                except AssertionError as exc:
                    failures.append(str(exc))
    assert not failures, "; ".join(failures)


def _check_bf16(device, step, build):
    net = build(device)
    policy = net[1] if isinstance(net, tuple) else None
    net = net[0] if isinstance(net, tuple) else net
    fast = copy.deepcopy(net)
    # Batch 8: at 2 the auxiliary head's BN over 1x1 maps normalises two values, an
    # ill-conditioned gradient that magnifies any rounding.
    x, y = _batch(device, n=8)
    args = (policy,) if policy is not None else ()
    out, grads = step(fast, *args, x, y, amp=True)
    ref, ref_grads = step(net, *args, x, y, amp=False)
    assert_rel_close(out, ref, 5e-2, "logits")
    # bf16 gradients are noisy tensor by tensor (small ones reach cosine ~0.7) but agree as a
    # whole: the direction SGD follows.
    assert _cosine(torch.cat([g.flatten() for g in grads]), torch.cat([g.flatten() for g in ref_grads])) > 0.98
    assert statistics.median(_cosine(g, rg) for g, rg in zip(grads, ref_grads) if rg.abs().sum() > 0) > 0.95


def test_channels_last_supernet_equals_the_contiguous_one_on_cpu():
    _check_channels_last(torch.device("cpu"))


def test_each_primitive_in_channels_last_equals_the_contiguous_one_on_cpu():
    _check_primitives_channels_last(torch.device("cpu"))


class _PaddingBlindPoolBackward(torch.autograd.Function):
    """avg_pool2d (count_include_pad=False) with the backward of pytorch/pytorch#188344: input
    pixel (h, w) takes the gradient of padded position (h, w), not (h + pad, w + pad)."""

    @staticmethod
    def forward(ctx, x, kernel, stride, padding):
        ctx.shape, ctx.args = x.shape, (kernel, stride, padding)
        return F.avg_pool2d(x, kernel, stride, padding, count_include_pad=False)

    @staticmethod
    def backward(ctx, grad):
        k, s, p = ctx.args
        n, c, h, w = ctx.shape
        with torch.enable_grad():
            padded = grad.new_zeros(n, c, h + 2 * p, w + 2 * p).requires_grad_()
            inside = F.pad(grad.new_ones(1, 1, h, w), (p, p, p, p))
            out = F.avg_pool2d(padded, k, s, 0) / F.avg_pool2d(inside, k, s, 0)
            (full,) = torch.autograd.grad(out, padded, grad)
        return full[:, :, :h, :w].contiguous(memory_format=CL), None, None, None


def test_the_channels_last_checks_name_a_padding_blind_pooling_backward(monkeypatch):
    """The checks can fail, and for the reason they failed on the H200: with torch 2.11's CUDA
    avg_pool2d channels-last backward emulated on the CPU, the primitive check names
    avg_pool_3x3, and the supernet check fails at the stem's weight gradient as the GPU run did
    (0.142 off out of 0.235 there, 2026-11-28)."""
    from itnas.accel import kernels

    def blind(x, kernel, stride, padding, nchw_backward=None):
        if kernels.is_channels_last(x) and x.requires_grad:
            return _PaddingBlindPoolBackward.apply(x, kernel, stride, padding)
        return F.avg_pool2d(x, kernel, stride, padding, count_include_pad=False)

    monkeypatch.setattr(kernels, "avg_pool", blind)
    with pytest.raises(AssertionError) as primitives:
        _check_primitives_channels_last(torch.device("cpu"))
    failing = {part.split(" stride")[0] for part in str(primitives.value).split("; ")}
    assert failing == {"avg_pool_3x3"}, primitives.value
    with pytest.raises(AssertionError, match=r"^stem\.0\.weight: max error 0\.14\d+ > 0\.002 x 0\.235"):
        _check_channels_last(torch.device("cpu"))


def test_bf16_autocast_supernet_stays_close_to_float32_on_cpu():
    _check_bf16(torch.device("cpu"), _supernet_step, _supernet)


def test_bf16_autocast_evaluation_network_stays_close_to_float32_on_cpu():
    _check_bf16(torch.device("cpu"), _eval_step, _evalnet)


def test_compiled_supernet_edges_equal_eager_ones_on_cpu():
    """Two edges leaving one state (shared ReLU and poolings, in-place sum, phase and blockwise
    convs) through dynamo and AOTAutograd. Inductor's C++ build takes minutes on 2 cores, so the
    CPU test stops at aot_eager; the GPU test below compiles with inductor."""
    torch.manual_seed(0)
    edges = use_fast_kernels(torch.nn.ModuleList([MixedOp(4, 1), MixedOp(4, 1)]))

    def two_edges(x, w):
        shared = SharedInput(x)
        a, b = (mix([branch() for branch in branches(edge, shared)], w[k]) for k, edge in enumerate(edges))
        return a.add_(b)

    x = torch.randn(2, 4, 16, 16, requires_grad=True)
    w = torch.softmax(torch.randn(2, 7), -1)
    compiled = torch.compile(two_edges, backend="aot_eager", fullgraph=True)
    out = compiled(x, w)
    (gx,) = torch.autograd.grad(out.sum(), x)
    ref = two_edges(x, w)
    (ref_gx,) = torch.autograd.grad(ref.sum(), x)
    assert_rel_close(out, ref, 1e-6, "output")
    assert_rel_close(gx, ref_gx, 1e-5, "input gradient")


def test_compiled_evaluation_network_equals_the_eager_one_on_cpu():
    net = _evalnet(torch.device("cpu"), layers=3, channels=4)
    compiled = torch.compile(copy.deepcopy(net), backend="aot_eager")
    x, y = _batch(torch.device("cpu"), size=16)
    out, grads = _eval_step(compiled, x, y)
    ref, ref_grads = _eval_step(net, x, y)
    assert_rel_close(out, ref, 1e-5, "logits")
    for g, rg in zip(grads, ref_grads):
        assert_rel_close(g, rg, 1e-4)


# ----------------------------------------------------------------------------- on the GPU


@pytest.mark.gpu
def test_fast_supernet_equals_plain_on_gpu(cuda):
    net, policy = _supernet(cuda)
    plain, _ = _supernet(cuda, fast=False)
    x, y = _batch(cuda)
    out, grads = _supernet_step(net, policy, x, y)
    ref, ref_grads = _supernet_step(plain, policy, x, y)
    assert_rel_close(out, ref, 1e-5, "logits")
    for g, rg in zip(grads, ref_grads):
        assert_rel_close(g, rg, 1e-3)


@pytest.mark.gpu
def test_channels_last_supernet_equals_the_contiguous_one_on_gpu(cuda):
    _check_channels_last(cuda)


@pytest.mark.gpu
def test_each_primitive_in_channels_last_equals_the_contiguous_one_on_gpu(cuda):
    _check_primitives_channels_last(cuda)


@pytest.mark.gpu
def test_avg_pool_channels_last_gradient_equals_the_nchw_one_on_gpu(cuda):
    """pytorch/pytorch#188344: torch's own CUDA kernel got this wrong when padding > 0 (fixed
    after torch 2.11); `kernels.avg_pool` routes the backward through the NCHW kernel."""
    from tests.accel.test_kernels import _pool_grads

    torch.manual_seed(0)
    for stride in (1, 2):
        x = torch.randn(2, 8, 16, 16, device=cuda)
        g = torch.randn_like(F.avg_pool2d(x, 3, stride, 1))
        ref, ref_grad = _pool_grads(x, g, stride=stride)
        out, grad = _pool_grads(x.contiguous(memory_format=CL), g.contiguous(memory_format=CL), stride=stride)
        assert_rel_close(out, ref, 1e-6, f"stride {stride} output")
        assert_rel_close(grad, ref_grad, 1e-6, f"stride {stride} input gradient")


@pytest.mark.gpu
def test_bf16_autocast_supernet_stays_close_to_float32_on_gpu(cuda):
    _check_bf16(cuda, _supernet_step, _supernet)


@pytest.mark.gpu
def test_bf16_autocast_evaluation_network_stays_close_to_float32_on_gpu(cuda):
    _check_bf16(cuda, _eval_step, _evalnet)


@pytest.mark.gpu
def test_device_pipeline_batches_live_on_the_gpu(cuda):
    from itnas.accel.bench import endless_device_batches

    x, y = next(endless_device_batches(8, 3, 32, 10, cuda, seed=0, cutout=16))
    assert x.device.type == "cuda" and y.device.type == "cuda"
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32


def _close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(abs(b), 1e-12)


@pytest.mark.gpu
def test_step_graphs_search_steps_equal_eager_ones_on_gpu(cuda):
    """compile: step-graphs (itnas/accel/graphs.py), the search's whole steps as recorded CUDA graphs:
    the common check (steps 3-5 are the recording and two replays), then two more epochs' worth
    of the protocol: a new temperature and learning rate (recorded again) and a validation of
    four batches (two warm-up calls, the recording, a replay) and a shorter one (eager)."""
    _check_graphed_search(cuda, dev.STEP_GRAPHS)
    searchers = eager, graphed = _searchers(cuda, dev.STEP_GRAPHS)
    batches = [_batch(cuda, n=8, seed=s) for s in range(8)]
    val = [_batch(cuda, n=n, seed=20 + n) for n in (8, 8, 8, 8, 5)]
    for epoch in range(2):
        for s in searchers:
            s.policy.set_temperature(2.0 - epoch)
        for k in range(4):
            (x_val, y_val), (x_tr, y_tr) = batches[2 * k], batches[2 * k + 1]
            arch = [s.arch_step(x_val, y_val, x_tr, y_tr) for s in searchers]
            weight = [s.weight_step(x_tr, y_tr)[0] for s in searchers]
            assert _close(arch[1], arch[0], 1e-3) and _close(weight[1], weight[0], 1e-3), (epoch, k, arch, weight)
        for s in searchers:
            s.scheduler.step()
        evaluations = [s.evaluate(val) for s in searchers]
        assert _close(evaluations[1][0], evaluations[0][0], 1e-3), (epoch, evaluations)
        assert evaluations[1][1] == pytest.approx(evaluations[0][1], abs=100 / 37), (epoch, evaluations)
    counts = {k: (g.captures, g.replays) for k, g in graphed.graphs.items()}
    assert counts == {"arch": (2, 4), "weight": (2, 4), "eval": (2, 4)}, counts


@pytest.mark.gpu
@pytest.mark.parametrize("mode", [dev.STEP_GRAPHS, False], ids=["step-graphs", "eager"])
def test_branch_streams_search_steps_equal_single_stream_ones_on_gpu(cuda, mode):
    """runtime.streams (itnas/accel/streams.py): the ops into each node on four CUDA streams, recorded
    as step graphs and eagerly. First the common check against eager steps on one stream (five
    arch + weight steps and an evaluation, within the noise of cuDNN's free choice of
    algorithms); then, with deterministic cuDNN, four steps at a size whose kernels overlap for
    longer (C=16, batch 64) against the same mode on one stream: bit for bit, as each branch
    runs the kernels it runs on one stream (H200, 2026-11-28: 0 difference on 4 and 8 streams,
    where eager against eager without deterministic cuDNN differed by 1.2e-2 of the largest
    weight change). A missing wait between streams would read half-written tensors."""
    _check_graphed_search(cuda, mode, streams=4)
    dev.set_deterministic(True)
    try:
        searchers = [_searcher(cuda, mode, n, channels=16, batch=64) for n in (1, 4)]
        assert [s.rt.streams for s in searchers] == [1, 4]
        for k in range(4):
            (x_val, y_val), (x_tr, y_tr) = _batch(cuda, n=64, seed=2 * k), _batch(cuda, n=64, seed=2 * k + 1)
            arch = [s.arch_step(x_val, y_val, x_tr, y_tr) for s in searchers]
            weight = [s.weight_step(x_tr, y_tr)[0] for s in searchers]
            assert arch[0] == arch[1] and weight[0] == weight[1], (k, arch, weight)
        one, four = searchers
        for (name, a), b in zip(one.net.named_parameters(), four.net.parameters()):
            assert torch.equal(a, b), name
        for a, b in zip(one.policy.parameters(), four.policy.parameters()):
            assert torch.equal(a, b), "architecture parameters"
    finally:
        dev.set_deterministic(False)


@pytest.mark.gpu
def test_a_step_graph_replays_new_inputs_and_fresh_random_numbers_on_gpu(cuda):
    """The CUDA protocol itself: a replay reads the new input and draws new random numbers from
    the default generator (the Gumbel noise of a recorded step must not be frozen)."""
    from itnas.accel.graphs import StepGraph

    graph = StepGraph(lambda x: (x * 2, torch.rand(4, device=x.device)), "test", backend="cuda", warmup=2)
    seen = []
    for i in range(5):
        doubled, noise = graph("k", torch.full((4,), float(i), device=cuda))
        assert torch.equal(doubled, torch.full((4,), 2.0 * i, device=cuda)), (i, doubled)
        seen.append(noise.clone())
    assert (graph.captures, graph.replays) == (1, 2)
    assert not torch.equal(seen[3], seen[4]) and not torch.equal(seen[2], seen[3])


@pytest.mark.gpu
def test_reduce_overhead_search_steps_equal_eager_ones_on_gpu(cuda):
    _check_graphed_search(cuda, "reduce-overhead")


@pytest.mark.gpu
def test_cudagraphs_backend_search_steps_equal_eager_ones_on_gpu(cuda):
    _check_graphed_search(cuda, "cudagraphs")


def _searcher(cuda, mode, streams=1, channels=4, batch=8):
    """A Searcher in compile `mode` on `streams` CUDA streams, from seed 0: 3 cells, transition
    policy without the Gumbel draw (no randomness, so Searchers built alike see the same numbers)."""
    from itnas.accel.bench import search_config
    from itnas.search.loop import Searcher

    cfg = search_config("darts", 3, channels, batch, "cuda", False, False, mode, streams)
    cfg["arch"].update(gumbel=False, transition=True, tiep=False)
    dev.seed_everything(0)
    return Searcher(cfg, 10, 3)


def _searchers(cuda, mode, streams=1):
    """An eager Searcher and one in compile `mode` on `streams` CUDA streams (`_searcher`: C=4,
    batch 8)."""
    return _searcher(cuda, False), _searcher(cuda, mode, streams)


def _check_graphed_search(cuda, mode, streams=1):
    """The Searcher compiled in a CUDA-graph `mode` against the eager one, step by step:
    CUDA-graph trees warm up on the first call, record on the second and replay from the third,
    so five arch + weight steps on fresh batches cover replays with new inputs; then an
    evaluation of two batches (eval mode: another graph). No randomness (`_searchers`), so both
    see the same numbers. (A shorter last batch would be one more graph to compile; the CPU
    tests cover it.)"""
    searchers = eager, graphed = _searchers(cuda, mode, streams)
    assert (graphed.rt.cuda_graphs or graphed.graphs or streams > 1) and not eager.rt.cuda_graphs
    assert (graphed.rt.streams, eager.rt.streams) == (streams, 1)
    start = [p.detach().clone() for p in eager.net.parameters()]
    batches = [_batch(cuda, n=8, seed=s) for s in range(11)]
    for k in range(5):
        (x_val, y_val), (x_tr, y_tr) = batches[2 * k], batches[2 * k + 1]
        arch = [s.arch_step(x_val, y_val, x_tr, y_tr) for s in searchers]
        weight = [s.weight_step(x_tr, y_tr)[0] for s in searchers]
        assert _close(arch[1], arch[0], 1e-3) and _close(weight[1], weight[0], 1e-3), (k, arch, weight)
    for (name, pe), pg, p0 in zip(eager.net.named_parameters(), graphed.net.parameters(), start):
        assert_rel_close(pg.detach() - p0, pe.detach() - p0, 1e-2, name)
    # Adam divides each gradient by its own running RMS, so architecture entries with gradients
    # near zero take steps of about the learning rate whose sign is rounding noise. Measured on
    # an H200 (2026-11-28) in this very setup: eager against eager, cuDNN free to pick its
    # algorithms, 2.1e-4 of the largest entry; eager with deterministic cuDNN against without,
    # 1.8e-3; the cudagraphs backend against eager, 2.0e-4 and 5.5e-4 in two runs. A graph
    # replaying stale or wrong data is off by the entries' own size.
    for a, b in zip(graphed.policy.parameters(), eager.policy.parameters()):
        assert_rel_close(a, b, 1e-2, "architecture parameters")
    evaluations = [s.evaluate([batches[10], batches[0]]) for s in searchers]
    assert _close(evaluations[1][0], evaluations[0][0], 1e-3), evaluations


@pytest.mark.gpu
def test_reduce_overhead_training_steps_equal_eager_ones_on_gpu(cuda):
    _check_graphed_training(cuda, "reduce-overhead")


@pytest.mark.gpu
def test_cudagraphs_backend_training_steps_equal_eager_ones_on_gpu(cuda):
    _check_graphed_training(cuda, "cudagraphs")


def _check_graphed_training(cuda, mode):
    """The Trainer compiled in a CUDA-graph `mode` against the eager one: two epochs of two
    steps of two accumulated micro-batches each (one CUDA-graph generation per step), and the
    evaluation (two batches). Drop-path off: Inductor draws its own random numbers."""
    try:
        from itnas.train.distributed import DistContext
        from itnas.train.loop import Trainer
        from tests.train.tiny import tensor_data, tiny_config
    except ImportError as exc:  # itnas.train reads configs: PyYAML and jsonschema
        pytest.skip(f"needs the training stack: {exc}")
    data = tensor_data(n_train=32, n_eval=16, size=16)
    trainers = [Trainer(tiny_config("model.layers=3", "data.batch_size=16", "runtime.max_batch_per_process=8", "model.drop_path_prob=0",
                                    "runtime.device=cuda", f"runtime.compile={compile}"),
                        lookup("DARTS_V2"), data, 0, DistContext())
                for compile in ("false", mode)]
    eager, graphed = trainers
    assert graphed.rt.cuda_graphs and graphed.plan.accumulation == 2
    start = [p.detach().clone() for p in eager.model.parameters()]
    for epoch in range(2):
        (train_e, test_e), (train_g, test_g) = [(t.train_epoch(epoch), t.evaluate()) for t in trainers]
        assert _close(train_g["train_loss"], train_e["train_loss"], 1e-3), (epoch, train_g, train_e)
        assert _close(test_g["loss"], test_e["loss"], 1e-3), (epoch, test_g, test_e)
    for (name, pe), pg, p0 in zip(eager.model.named_parameters(), graphed.model.parameters(), start):
        assert_rel_close(pg.detach() - p0, pe.detach() - p0, 1e-2, name)


@pytest.mark.gpu
def test_inductor_compiled_supernet_equals_eager_on_gpu(cuda):
    net, policy = _supernet(cuda)
    compiled = torch.compile(copy.deepcopy(net))
    x, y = _batch(cuda)
    out, grads = _supernet_step(compiled, policy, x, y)
    ref, ref_grads = _supernet_step(net, policy, x, y)
    assert_rel_close(out, ref, 1e-4, "logits")
    for g, rg in zip(grads, ref_grads):
        assert_rel_close(g, rg, 1e-3)


@pytest.mark.gpu
def test_inductor_compiled_evaluation_network_equals_eager_on_gpu(cuda):
    net = _evalnet(cuda)
    compiled = torch.compile(copy.deepcopy(net))
    x, y = _batch(cuda)
    out, grads = _eval_step(compiled, x, y)
    ref, ref_grads = _eval_step(net, x, y)
    assert_rel_close(out, ref, 1e-4, "logits")
    for g, rg in zip(grads, ref_grads):
        assert_rel_close(g, rg, 1e-3)
