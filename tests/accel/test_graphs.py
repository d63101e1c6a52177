"""`compile: step-graphs`: whole search steps recorded as CUDA graphs, checked on the CPU with the
tape stand-in (tests/accel/tape.py), which replays the recorded aten ops with their frozen
arguments as a CUDA graph replays its kernels.

- The tape replays a step as the step itself would run it, refuses a host read inside a step
  as CUDA capture would, and freezes Python numbers as a recording does.
- `StepGraph`: two eager warm-up calls, a recording, then replays; other shapes run eagerly and
  keep the recording; a new key records again.
- A search recorded this way (ITNAS variant: Gumbel draws, Eq. 11; learning rate and temperature
  changing between epochs; validation with a shorter last batch) ends bit-identical to the
  eager one, and a recording that missed the epoch's new learning rate and temperature would not.
- StepGraph's CUDA branch, with a tape that leaves no trace of the recording (a CUDA capture
  runs nothing): the recording call's step is the replay after it, still bit-identical; a
  capture that fails leaves that step eager from then on, with a warning, and the search equal.
- The config plumbing: `step-graphs` is a search mode only; on the CPU it runs eagerly.

The GPU check of the real thing is `test_step_graphs_search_equals_eager_on_gpu` in
tests/accel/test_cuda.py.
"""

from __future__ import annotations

import contextlib
import logging
import sys

import pytest
import torch
import torch.nn.functional as F

import itnas.accel as accel
from itnas import runtime as dev
from itnas.accel import auto, graphs
from itnas.accel.bench import search_config
from itnas.accel.graphs import StepGraph, make_capturable
from itnas.errors import UserError
from itnas.search.loop import Searcher
from tests.accel import tape as tapes
from tests.accel.tape import HostReadInStep, TapeGraph

CPU = torch.device("cpu")


@pytest.fixture
def tape(monkeypatch):
    """The tape stand-in for CUDA graphs on the CPU, and Adam's capturable update allowed on
    the CPU (torch keeps it to accelerators; the arithmetic is plain tensor code)."""
    monkeypatch.setattr(graphs, "NON_CUDA_BACKEND", "tape")
    monkeypatch.setitem(graphs.GRAPH_CLASSES, "tape", TapeGraph)
    adam = sys.modules[torch.optim.Adam.__module__]  # torch.optim.adam, hidden behind the class name
    monkeypatch.setattr(adam, "_get_capturable_supported_devices", lambda supports_xla=True: ["cuda", "cpu"])


def _tiny_model():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    return net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)


def _step(net, opt, x, y):
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    opt.step()
    return loss.detach()


def _batches(n, seed=0, size=6):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 4, generator=g), torch.randint(0, 3, (size,), generator=g)) for _ in range(n)]


# ----------------------------------------------------------------------------- the tape


def test_a_tape_replay_runs_the_step_as_the_step_itself_would():
    (net, opt), (ref, ref_opt) = _tiny_model(), _tiny_model()
    batches = _batches(5)
    for x, y in batches[:2]:  # momentum buffers exist before recording, as after a warm-up
        _step(net, opt, x, y), _step(ref, ref_opt, x, y)
    static_x, static_y = batches[2][0].clone(), batches[2][1].clone()
    graph = TapeGraph()
    with graph.capture():
        loss = _step(net, opt, static_x, static_y)
    assert torch.equal(loss, _step(ref, ref_opt, *batches[2]))
    for x, y in batches[3:]:
        static_x.copy_(x), static_y.copy_(y)
        graph.replay()
        assert torch.equal(loss, _step(ref, ref_opt, x, y))
    for p, q in zip(net.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(p, q)
    assert int(net[1].num_batches_tracked) == 5


def test_a_tape_refuses_host_reads_and_host_data_inside_the_step():
    net, opt = _tiny_model()
    x, y = _batches(1)[0]
    with pytest.raises(HostReadInStep, match="_local_scalar_dense"):
        with TapeGraph().capture():
            float(_step(net, opt, x, y))
    with pytest.raises(HostReadInStep, match="lift_fresh"):  # a tensor from host data
        with TapeGraph().capture():
            _step(net, opt, x * torch.tensor([1.0, 2.0, 3.0, 4.0]), y)


def test_a_tape_freezes_python_numbers_as_a_recording_does():
    """The learning rate is read when the step is recorded; changing it afterwards changes
    nothing until the step is recorded again (why `accel.graph_key` holds it)."""
    net, opt = _tiny_model()
    x, y = _batches(1)[0]
    _step(net, opt, x, y)
    graph = TapeGraph()
    with graph.capture():
        _step(net, opt, x, y)
    opt.param_groups[0]["lr"] = 0.0
    before = [p.detach().clone() for p in net.parameters()]
    graph.replay()
    assert any(not torch.equal(p, b) for p, b in zip(net.parameters(), before)), "the frozen lr 0.1 still steps"


# ----------------------------------------------------------------------------- StepGraph


def test_step_graph_warms_up_records_replays_and_keeps_the_recording_for_other_shapes(tape):
    calls = []

    def fn(x):
        calls.append(x.shape[0])
        return x * 2

    graph = StepGraph(fn, "test", backend="tape", warmup=2)
    outs = [graph("k", torch.full((4,), float(i))).clone() for i in range(5)]
    assert [float(o[0]) for o in outs] == [0, 2, 4, 6, 8]
    assert calls == [4, 4, 4]  # two eager warm-up calls and the recording; then replays only
    assert (graph.captures, graph.replays) == (1, 2)
    assert float(graph("k", torch.full((3,), 7.0))[0]) == 14 and calls[-1] == 3  # another shape: eager
    assert float(graph("k", torch.full((4,), 9.0))[0]) == 18 and graph.captures == 1  # recording kept
    graph("k2", torch.full((4,), 1.0))
    assert graph.captures == 2 and calls[-1] == 4  # a new key records again, without warm-up


def test_step_graph_rejects_an_unknown_backend():
    with pytest.raises(ValueError, match="backend"):
        StepGraph(lambda: None, "x", backend="cpu")


def test_make_capturable_follows_the_run_and_moves_step_counts_to_the_parameters():
    p = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.Adam([p])
    opt.state[p]["step"] = torch.tensor(3.0)
    make_capturable(opt, True)
    assert opt.param_groups[0]["capturable"] and opt.state[p]["step"].dtype == torch.float32
    make_capturable(opt, False)
    assert not opt.param_groups[0]["capturable"]
    make_capturable(torch.optim.SGD([p], lr=0.1), True)  # no such flag: left alone


# ----------------------------------------------------------------------------- the search


def _searcher(compile, channels_last="auto", capturable=True):
    cfg = search_config("itnas", 3, 4, 8, "cpu", False, channels_last, compile)
    cfg["epochs"] = 2
    dev.seed_everything(0)
    searcher = Searcher(cfg, 10, 3)
    make_capturable(searcher.a_opt, capturable)  # the same Adam arithmetic for both runs
    return searcher


def _search(searcher, epochs=2, steps=4):
    """run_search's loop in miniature: per epoch the temperature and learning rate change,
    arch and weight steps alternate, and the validation ends with a shorter batch."""
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g))
            for _ in range(2 * steps)]
    val = [(torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)) for n in (8, 8, 8, 5)]
    losses = []
    dev.seed_everything(2)  # the Gumbel draws
    for epoch in range(epochs):
        searcher.policy.set_temperature(5.0 - 2.0 * epoch)
        for k in range(steps):
            x_val, y_val = searcher.prepare(*data[2 * k])
            x_tr, y_tr = searcher.prepare(*data[2 * k + 1])
            losses.append(searcher.arch_step(x_val, y_val, x_tr, y_tr))
            losses.append(searcher.weight_step(x_tr, y_tr))
        searcher.scheduler.step()
        losses.append(searcher.evaluate(val))
    return losses


def test_a_recorded_search_ends_bit_identical_to_the_eager_one(tape):
    eager, recorded = _searcher(False), _searcher(dev.STEP_GRAPHS)
    assert recorded.graphs is not None and recorded.graphs["weight"].backend == "tape"
    assert recorded.rt.channels_last  # the CPU default: the phase and block-wise paths are recorded too
    assert _search(recorded) == _search(eager)
    for name, state in (("net", "net"), ("policy", "policy")):
        for (key, a), b in zip(recorded.state()[state].items(), eager.state()[state].values()):
            assert torch.equal(a, b), f"{name} {key}"
    counts = {k: (g.captures, g.replays) for k, g in recorded.graphs.items()}
    # Per epoch a new learning rate and temperature, so each step is recorded once per epoch:
    # 4 steps in epoch 1 are 2 warm-up calls, the recording and 1 replay; in epoch 2 the
    # recording and 3 replays. The validation's three full batches likewise (epoch 1: 2 warm-up
    # calls and the recording; epoch 2: the recording and 2 replays); its shorter one is eager.
    assert counts == {"arch": (2, 4), "weight": (2, 4), "eval": (2, 2)}, counts


def test_a_recording_that_missed_the_new_epochs_numbers_would_differ(tape, monkeypatch):
    """The stand-in can fail: with a key that never changes, epoch 2 replays epoch 1's
    learning rate and temperature, and the search no longer equals the eager one."""
    eager, recorded = _searcher(False, False), _searcher(dev.STEP_GRAPHS, False)
    monkeypatch.setattr(accel, "graph_key", lambda searcher: "frozen")
    ref, got = _search(eager), _search(recorded)
    assert got[:9] == ref[:9]  # epoch 1 (4 arch and 4 weight steps, the validation) agrees
    assert got[9] != ref[9]


class _DryTape(TapeGraph):
    """A tape that, like a CUDA capture, leaves no trace of the recording: the step's tensors
    (`state()`, set by the test) and the RNG are put back as they were, so the recording call's
    step happens only in the replay that follows (`StepGraph`'s CUDA branch)."""

    executes_on_capture = False
    state = staticmethod(lambda: [])

    @contextlib.contextmanager
    def capture(self):
        tensors = self.state()
        saved, rng = [t.detach().clone() for t in tensors], torch.get_rng_state()
        with super().capture():
            yield
        with torch.no_grad():
            for t, s in zip(tensors, saved):
                t.copy_(s)
        torch.set_rng_state(rng)


def _step_state(searcher):
    """Every tensor a search step changes in place: weights, BN buffers, architecture parameters,
    optimiser state."""
    opt_state = [t for opt in (searcher.w_opt, searcher.a_opt) for st in opt.state.values()
                 for t in st.values() if isinstance(t, torch.Tensor)]
    return [*searcher.net.state_dict().values(), *searcher.policy.parameters(), *opt_state]


@pytest.fixture
def dry_tape(tape, monkeypatch):
    monkeypatch.setitem(graphs.GRAPH_CLASSES, "tape", _DryTape)
    return _DryTape


def test_a_recording_that_runs_nothing_is_replayed_for_its_own_step(dry_tape, monkeypatch):
    """StepGraph's CUDA branch (a capture executes nothing; the recording call's step is the
    replay right after it): still bit-identical to the eager search."""
    eager, recorded = _searcher(False, False), _searcher(dev.STEP_GRAPHS, False)
    monkeypatch.setattr(dry_tape, "state", staticmethod(lambda: _step_state(recorded)))
    assert _search(recorded) == _search(eager)
    for a, b in zip(_step_state(recorded), _step_state(eager)):
        assert torch.equal(a, b)
    assert {k: g.captures for k, g in recorded.graphs.items()} == {"arch": 2, "weight": 2, "eval": 2}


def test_a_failed_recording_runs_that_step_eagerly_from_then_on(dry_tape, monkeypatch, caplog):
    """A capture that fails (here: the weight step's, at its first recording) costs nothing but
    speed: the step runs eagerly, once, and every later one too; a warning names it."""
    eager, recorded = _searcher(False, False), _searcher(dev.STEP_GRAPHS, False)
    monkeypatch.setattr(dry_tape, "state", staticmethod(lambda: _step_state(recorded)))
    body = recorded.graphs["weight"].fn

    def fails_when_recorded(*inputs):
        if any(isinstance(m, tapes._Recorder) for m in torch.utils._python_dispatch._get_current_dispatch_mode_stack()):
            raise RuntimeError("operation not permitted when stream is capturing")
        return body(*inputs)

    recorded.graphs["weight"].fn = fails_when_recorded
    with caplog.at_level(logging.WARNING, logger="itnas.accel.graphs"):
        assert _search(recorded) == _search(eager)
    assert "could not record the weight step" in caplog.text and "not permitted" in caplog.text
    assert recorded.graphs["weight"].backend == "eager" and recorded.graphs["weight"].captures == 0
    assert recorded.graphs["arch"].captures == 2


def test_step_graphs_run_eagerly_on_the_cpu_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="itnas.accel"):
        searcher = _searcher(dev.STEP_GRAPHS, False, capturable=False)
    assert "run eagerly" in caplog.text
    assert searcher.graphs["weight"].backend == "eager" and not searcher.rt.cuda_graphs
    assert not searcher.a_opt.param_groups[0]["capturable"]
    eager = _searcher(False, False, capturable=False)
    assert _search(searcher, epochs=1, steps=2) == _search(eager, epochs=1, steps=2)


def test_step_graphs_is_a_search_mode_only():
    from itnas.config import load_config
    from itnas.train.loop import load_train_config
    from tests.conftest import REPO

    cfg = load_config(REPO / "config/recipes/search.yaml", "search", ["runtime.compile=step-graphs"])
    assert cfg["runtime"]["compile"] == dev.STEP_GRAPHS
    with pytest.raises(UserError) as err:
        load_train_config(REPO / "config/recipes/train_cifar.yaml", ["runtime.compile=step-graphs"])
    assert "\n" not in str(err.value) and "key 'runtime.compile'" in str(err.value)
    assert auto.compile_mode(dev.STEP_GRAPHS, job="search") == dev.STEP_GRAPHS
    assert accel.compile_module(torch.nn.Linear(1, 1), dev.STEP_GRAPHS).__class__ is torch.nn.Linear
    with pytest.raises(UserError, match="^key 'compile': step-graphs records the search's steps only"):
        auto.compile_mode(dev.STEP_GRAPHS, job="train")
