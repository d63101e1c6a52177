"""torch.compile modes and the fast-path `auto` rule, on the CPU.

- `runtime.compile` (search) and `compile` (train) take false, true or a torch.compile mode;
  anything else is one UserError line naming the key.
- The mode reaches torch.compile (`true` = 'default'); CUDA-graph modes start one CUDA-graph
  generation per step and per evaluation batch.
- No step keeps an output of an earlier step: a stand-in for CUDA-graph trees invalidates every
  output and gradient of the previous generation at each step start, as a replay overwrites
  them, and the steps must still equal eager ones.
- A compiled step (backend aot_eager: Inductor's C++ build takes minutes on 2 cores) equals the
  eager one.
- `auto` for amp and channels_last: channels-last on the CPU, neither on CUDA.
"""

from __future__ import annotations

import math
import weakref

import pytest
import torch

import itnas.accel as accel
from itnas import runtime as dev
from itnas.accel import auto
from itnas.accel.bench import search_config
from itnas.config import load_config
from itnas.errors import UserError
from itnas.genotypes import lookup
from itnas.run import TIMING_KEYS
from itnas.search.loop import Searcher
from itnas.train.loop import Trainer, load_train_config
from tests.accel.conftest import assert_rel_close
from tests.conftest import REPO
from tests.train.tiny import tensor_data, tiny_config

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU
MODES = ["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", "cudagraphs"]
DARTS_V2 = lookup("DARTS_V2")


# ----------------------------------------------------------------------------- config values


@pytest.mark.parametrize("raw, value, mode", [("false", False, None), ("true", True, "default"), ("auto", "auto", None),
                                              *[(m, m, m) for m in MODES]])
def test_search_and_train_configs_take_false_true_and_every_mode(raw, value, mode):
    search = load_config(REPO / "config/recipes/search.yaml", "search", [f"runtime.compile={raw}"])
    train = load_train_config(REPO / "config/recipes/train_cifar.yaml", [f"runtime.compile={raw}"])
    assert search["runtime"]["compile"] == value and train["runtime"]["compile"] == value
    assert auto.compile_mode(value) == mode


@pytest.mark.parametrize("raw", ["fast", "1", "Default", "reduce_overhead", "[default]"])
def test_other_compile_values_are_refused_in_one_line_naming_the_key(raw):
    with pytest.raises(UserError) as search_err:
        load_config(REPO / "config/recipes/search.yaml", "search", [f"runtime.compile={raw}"])
    with pytest.raises(UserError) as train_err:
        load_train_config(REPO / "config/recipes/train_cifar.yaml", [f"runtime.compile={raw}"])
    for err, key in ((search_err, "runtime.compile"), (train_err, "runtime.compile")):
        message = str(err.value)
        assert "\n" not in message and f"key '{key}'" in message, message
        assert "reduce-overhead" in message and "max-autotune-no-cudagraphs" in message, message


def test_compile_mode_refuses_what_the_schema_would():
    with pytest.raises(UserError, match="key 'compile'.*reduce-overhead"):
        auto.compile_mode("fast")


@pytest.mark.parametrize("name, kind, compile", [("search.yaml", "search", "auto"), ("train_cifar.yaml", "train", "auto"),
                                                 ("train_imagenet.yaml", "train", False)])
def test_the_shipped_configs_stay_valid(name, kind, compile):
    cfg = load_config(REPO / "config" / "recipes" / name, kind)
    flags = cfg["runtime"]
    assert flags["compile"] == compile and flags["amp"] == "auto" and flags["channels_last"] == "auto"


@pytest.mark.parametrize("job, cuda_mode", [("train", "reduce-overhead"), ("search", "step-graphs")])
def test_auto_compile_is_the_measured_mode_on_one_cuda_device_and_eager_elsewhere(job, cuda_mode):
    assert auto.compile_mode("auto", device=CUDA, job=job) == cuda_mode
    assert auto.compile_mode("auto", device=CPU, job=job) is None
    assert auto.compile_mode("auto", device=torch.device("meta"), job=job) is None
    assert auto.compile_mode("auto", device=CUDA, job=job, distributed=True) is None  # DDP: untested
    assert auto.compile_mode("auto", job=job) is None  # no device named


def test_auto_compile_leaves_cpu_search_and_training_eager(compile_calls):
    """The shipped configs say `compile: auto`: on the CPU (the smoke run, CI) nothing compiles."""
    searcher, trainer = _searcher("auto"), _trainer("auto")
    assert compile_calls == [] and searcher.rt.compile is None and trainer.rt.compile is None
    assert not searcher.rt.cuda_graphs and not trainer.rt.cuda_graphs


# ----------------------------------------------------------------------------- auto


def test_auto_means_channels_last_on_the_cpu_and_no_fast_path_on_cuda():
    assert auto.resolve_flag("auto", CPU, "channels_last") is True
    assert auto.resolve_flag("auto", CPU, "amp") is False
    assert auto.resolve_flag("auto", CUDA, "channels_last") is False
    assert auto.resolve_flag("auto", CUDA, "amp") is False
    assert auto.resolve_flag("auto", torch.device("meta"), "channels_last") is False  # unmeasured: off


@pytest.mark.parametrize("device", [CPU, CUDA], ids=["cpu", "cuda"])
@pytest.mark.parametrize("flag", ["amp", "channels_last"])
def test_explicit_true_and_false_win_on_every_device(device, flag):
    assert auto.resolve_flag(True, device, flag) is True
    assert auto.resolve_flag(False, device, flag) is False


def test_an_unknown_flag_name_is_a_programming_error():
    with pytest.raises(ValueError, match="channels_last"):
        auto.resolve_flag("auto", CPU, "channel_last")


def test_default_search_and_training_on_the_cpu_run_channels_last_in_float32():
    searcher = _searcher(False)
    assert searcher.rt.channels_last is True and searcher.rt.amp is False
    conv = next(m for m in searcher.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    trainer = _trainer(False)
    assert trainer.rt.channels_last is True and trainer.rt.amp is False


# ----------------------------------------------------------------------------- the mode reaches torch.compile


@pytest.fixture
def compile_calls(monkeypatch):
    """torch.compile replaced by a recorder that leaves the module eager."""
    calls: list[str | None] = []

    def record(model, **kwargs):
        assert kwargs.get("dynamic") is False  # static shapes: see accel.compile.compile_module
        # An Inductor mode, or the 'cudagraphs' backend (which takes no mode).
        calls.append(kwargs["mode"] if "mode" in kwargs else f"backend={kwargs['backend']}")
        return model

    monkeypatch.setattr(torch, "compile", record)
    return calls


@pytest.fixture
def marks(monkeypatch):
    """Counts cudagraph_mark_step_begin calls (the real one only moves a counter)."""
    count = [0]

    def mark():
        count[0] += 1

    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", mark)
    return count


def _searcher(compile, layers: int = 3, seed: int = 0, order: str = "first") -> Searcher:
    cfg = search_config("darts", layers, 4, 4, "cpu", "auto", "auto", compile)
    # The transition policy without the Gumbel draw: no randomness, so two runs can be compared.
    cfg["arch"].update(gumbel=False, transition=True, tiep=False)
    cfg["arch_optim"]["order"] = order
    dev.seed_everything(seed)
    return Searcher(cfg, 10, 3)


def _trainer(compile, *overrides: str, data=None) -> Trainer:
    cfg = tiny_config("model.layers=3", f"runtime.compile={str(compile).lower()}", *overrides)
    return Trainer(cfg, DARTS_V2, data or tensor_data(n_train=16, n_eval=6), 0)


@pytest.mark.parametrize("value, mode", [(True, "default"), ("reduce-overhead", "reduce-overhead"),
                                         ("max-autotune-no-cudagraphs", "max-autotune-no-cudagraphs"),
                                         ("cudagraphs", "backend=cudagraphs")])
def test_the_mode_reaches_torch_compile_in_search_and_training(compile_calls, value, mode):
    searcher = _searcher(value)
    trainer = _trainer(value)
    assert compile_calls == [mode, mode]
    cuda_graphs = mode in ("reduce-overhead", "max-autotune", "backend=cudagraphs")
    assert searcher.rt.cuda_graphs is cuda_graphs and trainer.rt.cuda_graphs is cuda_graphs


def test_eager_runs_do_not_call_torch_compile(compile_calls):
    assert _searcher(False).forward_net is not None and _trainer(False).net is not None
    assert compile_calls == []


def _search_batches(n: int, size: int = 16, batch: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(7)
    return [(torch.randn(batch, 3, size, size, generator=g), torch.randint(10, (batch,), generator=g))
            for _ in range(n)]


def _search_steps(searcher: Searcher, batches) -> list[float]:
    """Two search steps (arch then weight, as run_search) and an evaluation with a short batch."""
    losses = []
    for k in range(2):
        (x_val, y_val), (x_tr, y_tr) = (searcher.prepare(*b) for b in batches[2 * k:2 * k + 2])
        losses.append(searcher.arch_step(x_val, y_val, x_tr, y_tr))
        losses.extend(searcher.weight_step(x_tr, y_tr))
    x, y = batches[4]
    losses.extend(searcher.evaluate([(x, y), (x[:3], y[:3])]))
    return losses


@pytest.mark.parametrize("mode, per_step", [("reduce-overhead", 1), ("cudagraphs", 1), ("default", 0)])
def test_cuda_graph_modes_mark_every_search_step_and_evaluation_batch(compile_calls, marks, mode, per_step):
    _search_steps(_searcher(mode), _search_batches(5))
    assert marks[0] == per_step * (2 + 2 + 2)  # 2 arch steps, 2 weight steps, 2 evaluation batches


@pytest.mark.parametrize("mode, per_step", [("reduce-overhead", 1), ("cudagraphs", 1),
                                            ("max-autotune-no-cudagraphs", 0)])
def test_cuda_graph_modes_mark_every_training_step_and_evaluation_batch(compile_calls, marks, mode, per_step):
    trainer = _trainer(mode, "runtime.max_batch_per_process=4")  # 2 micro-batches per step: still one mark
    assert trainer.plan.accumulation == 2
    trainer.train_epoch(0)
    trainer.evaluate()
    assert marks[0] == per_step * (2 + 2)  # 16 images / 8 per step; 6 test images in batches of 4


# ----------------------------------------------------------------------------- a stand-in for CUDA graphs


class CudaGraphStandIn:
    """What CUDA-graph trees do to a step's results, on the CPU: `compile` returns the module
    itself (eager), but at every cudagraph_mark_step_begin the outputs of the previous generation
    and the gradients of the compiled module's parameters are filled with NaN and made to raise
    on any write, as a replay into the same memory would leave them. A step that reads or adds
    into an earlier step's outputs or gradients then yields NaN or raises."""

    def __init__(self) -> None:
        self.outputs: list[weakref.ref] = []
        self.modules: list[torch.nn.Module] = []
        self.invalid: dict[int, weakref.ref] = {}  # by id: tensors compare by value

    def compile(self, model, **kwargs):
        self.modules.append(model)
        model.register_forward_hook(self._keep_outputs)
        return model

    def _keep_outputs(self, module, args, output):
        for t in output if isinstance(output, tuple) else (output,):
            if isinstance(t, torch.Tensor):
                self.outputs.append(weakref.ref(t))

    def mark_step_begin(self) -> None:
        stale = [r() for r in self.outputs]
        stale += [p.grad for m in self.modules for p in m.parameters()]
        for t in stale:
            if t is not None and not self._invalid(t):
                with torch.no_grad():
                    t.detach().fill_(math.nan)
                torch._C._set_storage_access_error_msg(t, "written by a later CUDA-graph replay")
                self.invalid[id(t)] = weakref.ref(t)
        self.outputs = []

    def _invalid(self, t: torch.Tensor) -> bool:
        ref = self.invalid.get(id(t))
        return ref is not None and ref() is t


@pytest.fixture
def stand_in(monkeypatch):
    graphs = CudaGraphStandIn()
    monkeypatch.setattr(torch, "compile", graphs.compile)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", graphs.mark_step_begin)
    return graphs


def test_the_stand_in_catches_a_result_kept_across_steps(stand_in):
    """The stand-in's own check: logits kept from one step read as NaN after the next begins,
    and a backward adding into an earlier step's gradient raises."""
    searcher = _searcher("reduce-overhead")
    (x, y), = (searcher.prepare(*b) for b in _search_batches(1))
    accel.cuda_graph_step_begin()
    loss, logits = searcher.loss(x, y)
    loss.backward()
    accel.cuda_graph_step_begin()
    try:  # some kernels read the poisoned storage (NaN), others check it and raise
        assert torch.isnan(logits).all()
    except RuntimeError as exc:
        assert "later CUDA-graph replay" in str(exc)
    with pytest.raises(RuntimeError, match="later CUDA-graph replay"):
        searcher.loss(x, y)[0].backward()


@pytest.mark.parametrize("order", ["first", "second"])
def test_search_steps_keep_no_result_across_cuda_graph_steps(stand_in, order):
    """Second order included: its unrolled step runs the network four times in one step."""
    batches = _search_batches(5)
    graphed = _search_steps(_searcher("reduce-overhead", order=order), batches)
    eager = _search_steps(_searcher(False, order=order), batches)
    assert all(math.isfinite(v) for v in graphed)
    assert graphed == eager


def test_training_keeps_no_result_across_cuda_graph_steps(stand_in):
    """Gradient accumulation (two micro-batches per step) included: they share one generation."""
    data = tensor_data(n_train=16, n_eval=6)
    graphed = _trainer("reduce-overhead", "runtime.max_batch_per_process=4", data=data)
    eager = _trainer(False, "runtime.max_batch_per_process=4", data=data)
    results = [({k: v for k, v in t.train_epoch(0).items() if k not in TIMING_KEYS}, t.evaluate())
               for t in (graphed, eager)]
    assert all(math.isfinite(v) for part in results[0] for v in part.values())
    assert results[0] == results[1]
    for a, b in zip(graphed.model.parameters(), eager.model.parameters()):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------- compiled = eager


@pytest.fixture
def aot_eager(monkeypatch):
    """torch.compile with the requested mode recorded and the backend swapped for aot_eager
    (dynamo + AOTAutograd, eager kernels): the graphs Inductor would get, run on the CPU."""
    real = torch.compile
    modes: list[str | None] = []

    def compile_aot_eager(model, mode=None, dynamic=None, **kwargs):
        modes.append(mode)
        return real(model, backend="aot_eager", dynamic=dynamic)

    monkeypatch.setattr(torch, "compile", compile_aot_eager)
    yield modes
    torch._dynamo.reset()


def test_a_compiled_training_step_equals_the_eager_one(aot_eager):
    """The DARTS_V2 network with its auxiliary head and drop-path (the probability is a tensor,
    so the graph does not change per epoch), two epochs and the evaluation, compiled vs eager."""
    data = tensor_data(n_train=16, n_eval=6)
    compiled = _trainer("reduce-overhead", data=data)
    eager = _trainer(False, data=data)
    assert aot_eager == ["reduce-overhead"]
    _assert_two_epochs_agree(compiled, eager)


def _assert_two_epochs_agree(compiled: Trainer, eager: Trainer) -> None:
    """Two epochs and evaluations of each trainer in turn: losses and weights equal to 1e-5."""
    for epoch in range(2):
        (train_c, eval_c), (train_e, eval_e) = [(t.train_epoch(epoch), t.evaluate()) for t in (compiled, eager)]
        assert train_c["train_loss"] == pytest.approx(train_e["train_loss"], rel=1e-5)
        assert eval_c["loss"] == pytest.approx(eval_e["loss"], rel=1e-5)
    for a, b in zip(compiled.model.parameters(), eager.model.parameters()):
        assert_rel_close(a, b, 1e-5)


def test_the_cudagraphs_mode_compiles_with_torchs_backend_and_equals_eager_on_the_cpu():
    """No stand-in: torch's 'cudagraphs' backend itself. On the CPU it records no CUDA graph
    (it warns and runs the captured graphs through AOTAutograd eagerly), so its training step,
    drop-path draws and evaluation equal the eager ones; on a GPU the `gpu`-marked tests of
    tests/accel compare the replayed graphs."""
    data = tensor_data(n_train=16, n_eval=6)
    compiled, eager = _trainer("cudagraphs", data=data), _trainer(False, data=data)
    assert compiled.rt.cuda_graphs and compiled.net is not compiled.model
    try:
        _assert_two_epochs_agree(compiled, eager)
    finally:
        torch._dynamo.reset()


@pytest.mark.slow
def test_a_compiled_search_step_equals_the_eager_one(aot_eager):
    """Arch step then weight step of the whole 3-cell supernet through dynamo and AOTAutograd
    (about 45 s on 2 cores: the supernet's graph has thousands of nodes)."""
    batches = _search_batches(2)
    compiled, eager = _searcher("reduce-overhead"), _searcher(False)
    assert aot_eager == ["reduce-overhead"]
    losses = []
    for searcher in (compiled, eager):
        (x_val, y_val), (x_tr, y_tr) = (searcher.prepare(*b) for b in batches)
        losses.append([searcher.arch_step(x_val, y_val, x_tr, y_tr), *searcher.weight_step(x_tr, y_tr)])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for a, b in zip(compiled.policy.parameters(), eager.policy.parameters()):
        assert_rel_close(a, b, 1e-5)
    for a, b in zip(compiled.net.parameters(), eager.net.parameters()):
        assert_rel_close(a.grad, b.grad, 1e-4)


def test_determinism_reaches_inductor_when_a_module_is_compiled_after_it_was_set():
    """runtime.deterministic_algorithms sets torch's flag without loading Inductor; compiling
    copies it into Inductor's config, as torch.use_deterministic_algorithms would have."""
    import torch._inductor.config as inductor_config

    from itnas.accel.compile import compile_module

    try:
        dev.set_deterministic(True)
        inductor_config.deterministic = False  # as if Inductor had been loaded before
        compile_module(torch.nn.Linear(2, 2), "default")  # lazy: nothing compiles until called
        assert torch.are_deterministic_algorithms_enabled() and inductor_config.deterministic
        dev.set_deterministic(False)  # Inductor loaded now: both flags go back together
        assert not torch.are_deterministic_algorithms_enabled() and not inductor_config.deterministic
    finally:
        dev.set_deterministic(False)
