"""runtime.streams (itnas/accel/streams.py): the ops into each node of a search cell run side by side on
CUDA streams. A CPU has no streams, so these tests check what makes that safe and what they do
not change: no branch reads a tensor that another branch of the same fork made (the only data a
stream could read half-written, since the calling stream joins every branch before it reads their
outputs), the branches and their order, and the setting's resolution. The GPU test
(test_cuda.py, `gpu`) compares the steps themselves."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from itnas import runtime as dev
from itnas.accel import auto, supernet
from itnas.accel.streams import backward_kwargs, run_branches
from itnas.accel.supernet import FastSearchCell, use_fast_cells
from itnas.errors import UserError
from itnas.search.policies import build_policy
from itnas.search.supernet import SearchCell, SearchNetwork
from itnas.space import PRIMITIVES


class _Provenance(TorchDispatchMode):
    """Which branch of which fork made each storage, and reads of another branch's storage."""

    def __init__(self) -> None:
        super().__init__()
        self.branch: tuple[int, int] | None = None  # (fork, stream) while a branch runs
        self.made: dict[int, tuple[int, int] | None] = {}
        self.crossings: list[str] = []
        self.ops_in_branches = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat = [a for a in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        for t in flat:
            maker = self.made.get(t.untyped_storage().data_ptr())
            if self.branch is not None and maker is not None and maker[0] == self.branch[0] and maker != self.branch:
                self.crossings.append(f"{func} in branch {self.branch} reads a tensor of branch {maker}")
        out = func(*args, **kwargs)
        if self.branch is not None:
            self.ops_in_branches += 1
        read = {t.untyped_storage().data_ptr() for t in flat}
        for t in torch.utils._pytree.tree_leaves(out):
            # A view (or an in-place op) makes no new memory: its storage keeps its maker.
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in read:
                self.made[t.untyped_storage().data_ptr()] = self.branch
        return out


def _net(streams: int) -> tuple[SearchNetwork, torch.nn.Module]:
    torch.manual_seed(0)
    net = use_fast_cells(SearchNetwork(10, layers=3, init_channels=4), streams)
    return net, build_policy(gumbel=False, transition=True)


def test_no_branch_reads_a_tensor_another_branch_of_its_fork_made(monkeypatch):
    """Every cell's forward (normal and both reductions): the shared ReLU and poolings of a state
    are made before the fork, each branch uses only them and its own tensors (the backward runs
    each op on its forward op's stream, and autograd waits where gradients cross streams). A branch that computed a state's ReLU lazily, on first use, would
    hand it to the branches on other streams unsynchronised, and this test names it."""
    mode = _Provenance()
    forks = []

    def recorded(branches, device, streams):
        fork = len(forks)
        forks.append(len(branches))
        out = []
        for k, branch in enumerate(branches):
            mode.branch = (fork, k % streams)
            out.append(branch())
        mode.branch = None
        return out

    monkeypatch.setattr(supernet, "run_branches", recorded)
    net, policy = _net(4)
    x = torch.randn(2, 3, 16, 16)
    with mode:
        net(x, policy.all_weights()).sum().backward()
    assert forks == [7 * j for j in range(2, 6)] * 3  # the 2..5 edges into each node, 7 ops each
    assert mode.ops_in_branches > 0
    assert mode.crossings == []


def test_a_lazily_shared_relu_is_caught(monkeypatch):
    """The check above can fail: with the ReLU computed inside the first conv branch that needs
    it (as `SharedInput` did before streams), the other conv branches read it."""
    from itnas.ops import Identity
    from itnas.space import POOLING

    def lazy_branches(edge, inp):
        out = []
        for name, op in zip(PRIMITIVES, edge.ops):
            if name in POOLING:
                out.append(lambda op=op, name=name: op[1](inp.pooled(name, op[0])))
            elif isinstance(op, Identity):
                out.append(lambda: inp.x)
            else:
                out.append(lambda op=op: supernet.after_relu(op)(inp.relu()))
        return out

    monkeypatch.setattr(supernet, "branches", lazy_branches)
    mode = _Provenance()

    def recorded(branches, device, streams):
        out = []
        for k, branch in enumerate(branches):
            mode.branch = (id(branches), k % streams)
            out.append(branch())
        mode.branch = None
        return out

    monkeypatch.setattr(supernet, "run_branches", recorded)
    net, policy = _net(4)
    with mode:
        net(torch.randn(2, 3, 16, 16), policy.all_weights())
    # The first conv branch (sep_conv_3x3, stream 0) made the ReLU; the next conv reads it.
    assert mode.crossings and mode.crossings[0].startswith("aten.convolution.default in branch"), mode.crossings[:3]
    assert mode.crossings[0].endswith(", 0)")


def test_streams_change_nothing_on_the_cpu():
    """On the CPU the branches run in order on the calling thread: the same logits and
    gradients, bit for bit, with 1 and 4 streams set."""
    results = []
    for streams in (1, 4):
        net, policy = _net(streams)
        logits = net(torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)), policy.all_weights())
        logits.square().sum().backward()
        results.append((logits.detach(), [p.grad for p in net.parameters()]))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))


def test_run_branches_keeps_order_and_the_backward_keeps_the_graph_only_with_cuda_streams():
    order = []
    out = run_branches([lambda k=k: order.append(k) or torch.tensor(k) for k in range(5)], torch.device("cpu"), 3)
    assert order == [0, 1, 2, 3, 4] and [int(t) for t in out] == order
    assert backward_kwargs(4, torch.device("cuda")) == {"retain_graph": True}
    assert backward_kwargs(1, torch.device("cuda")) == {} == backward_kwargs(4, torch.device("cpu"))


def test_the_streams_setting_resolves_per_device_and_refuses_bad_values(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert auto.resolve_streams(4, cpu, None) == 1  # no streams off CUDA
    assert auto.resolve_streams(4, cuda, dev.STEP_GRAPHS) == 4
    assert auto.resolve_streams("auto", cuda, dev.STEP_GRAPHS) == 4  # measured (accel.auto.AUTO_STREAMS)
    monkeypatch.setattr(auto, "AUTO_STREAMS", {dev.STEP_GRAPHS: 6})
    assert auto.resolve_streams("auto", cuda, dev.STEP_GRAPHS) == 6
    assert auto.resolve_streams("auto", cuda, None) == 1 == auto.resolve_streams("auto", cpu, dev.STEP_GRAPHS)
    for bad in (0, -2, True, "4", 2.5):
        with pytest.raises(UserError, match=r"runtime.streams: expected auto or an integer >= 1"):
            auto.resolve_streams(bad, cuda, None)
    with pytest.raises(ValueError, match="streams must be >= 1"):
        use_fast_cells(SearchNetwork(10, layers=3, init_channels=4), 0)
    cells = use_fast_cells(SearchNetwork(10, layers=3, init_channels=4), 3).cells
    assert all(type(c) is FastSearchCell and c.streams == 3 for c in cells if isinstance(c, SearchCell))


@pytest.mark.parametrize("setting, order, compile, why", [
    (4, "second", False, "the second-order architecture step runs on one stream"),
    ("auto", "second", False, None),
    (4, "first", "cudagraphs", "compile cudagraphs is untested with streams"),
    (4, "first", dev.STEP_GRAPHS, None),
])
def test_second_order_and_torch_compile_searches_keep_one_stream(monkeypatch, caplog, setting, order, compile, why):
    """The second-order architecture step's autograd.grad calls free saved tensors as they go,
    which side streams could still be reading, and torch.compile is untested with streams: such
    searches run on one stream, and say so when streams were asked for explicitly. Step-graphs
    (and eager) keep them."""
    import itnas.accel as accel
    from itnas.accel.bench import search_config
    from itnas.search.loop import Searcher

    monkeypatch.setattr(auto, "resolve_streams", lambda value, device, mode: 4)  # as on CUDA
    monkeypatch.setattr(accel, "compile_module", lambda module, mode: module)  # nothing to compile here
    cfg = search_config("darts", 3, 4, 4, "cpu", False, False, compile, setting)
    cfg["arch_optim"]["order"] = order
    with caplog.at_level("WARNING", logger="itnas.accel.auto"):
        searcher = Searcher(cfg, 10, 3)
    assert searcher.rt.streams == (4 if why is None and setting == 4 else 1)
    assert all(c.streams == searcher.rt.streams for c in searcher.net.cells)
    assert ("runtime.streams" in caplog.text) == (why is not None)
    assert why is None or why in caplog.text
