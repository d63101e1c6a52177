"""`itnas bench supernet|train` print one JSON line with the step figures and the settings;
`count_dispatches` counts the aten ops of a call."""

from __future__ import annotations

import json

import pytest
import torch

from itnas.accel.bench import count_dispatches
from itnas.cli import main

TINY_SUPERNET = ["--layers", "3", "--init-channels", "4", "--batch-size", "2", "--image-size", "16",
                 "--steps", "2", "--warmup", "1", "--device", "cpu", "--threads", "1", "--json"]


def _json(capsys) -> dict:
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 1
    return json.loads(lines[0])


@pytest.mark.parametrize("variant", ["darts", "itnas"])
def test_bench_supernet_prints_the_step_figures(capsys, variant):
    assert main(["bench", "supernet", "--variant", variant, *TINY_SUPERNET]) == 0
    out = _json(capsys)
    for key in ("step_s_median", "images_per_s", "arch_step_s_median", "search_step_s_median",
                "peak_memory_bytes", "step_cpu_s_median", "dispatches_per_step", "arch_dispatches_per_step",
                "warmup_s", "eval_step_s_median"):
        assert out[key] > 0, key
    assert out["eval_batch_size"] == 250  # the shipped search config's validation batch
    assert isinstance(out["dispatches_per_step"], int) and isinstance(out["arch_dispatches_per_step"], int)
    assert out["variant"] == variant and out["layers"] == 3 and out["batch_size"] == 2
    # auto on the CPU: channels-last (measured faster there), no bf16
    assert out["amp"] is False and out["channels_last"] is True and out["compile"] is False
    assert out["images_per_s"] == pytest.approx(2 / out["step_s_median"])


def test_bench_supernet_runs_on_the_device_pipeline(capsys):
    assert main(["bench", "supernet", "--data", "device", "--channels-last", "true", "--eval-batch-size", "0",
                 *TINY_SUPERNET]) == 0
    out = _json(capsys)
    assert out["data"] == "device" and out["channels_last"] is True
    assert out["eval_batch_size"] == 0 and "eval_step_s_median" not in out  # 0 skips the eval timing


def test_bench_train_prints_the_step_figures(capsys):
    assert main(["bench", "train", "--genotype", "DARTS_V2", "--layers", "3", "--init-channels", "4",
                 "--batch-size", "2", "--steps", "2", "--warmup", "1", "--device", "cpu",
                 "--threads", "1", "--eval-batch-size", "8", "--json"]) == 0
    out = _json(capsys)
    assert out["bench"] == "train" and out["genotype"] == "DARTS_V2" and out["params"] > 0
    assert out["eval_batch_size"] == 8 and out["eval_step_s_median"] > 0
    assert out["step_s_median"] > 0 and out["images_per_s"] > 0 and out["peak_memory_bytes"] > 0
    assert isinstance(out["dispatches_per_step"], int) and out["dispatches_per_step"] > 100
    assert "arch_dispatches_per_step" not in out and out["compile"] is False


TINY_TRAIN = ["--genotype", "DARTS_V2", "--layers", "3", "--init-channels", "4", "--batch-size", "2",
              "--steps", "1", "--warmup", "1", "--device", "cpu", "--threads", "1", "--json"]


@pytest.mark.parametrize("args, mode", [(["--compile"], "default"), (["--compile", "reduce-overhead"], "reduce-overhead"),
                                        (["--compile", "max-autotune-no-cudagraphs"], "max-autotune-no-cudagraphs"),
                                        (["--compile", "cudagraphs"], "cudagraphs")])
@pytest.mark.parametrize("bench", ["supernet", "train"])
def test_bench_compile_takes_an_optional_mode_that_reaches_torch_compile(capsys, monkeypatch, bench, args, mode):
    modes = []

    def record(model, **kwargs):
        modes.append(kwargs.get("mode") or kwargs.get("backend"))  # 'cudagraphs' is a backend
        return model  # eager: this test is about the wiring (test_compile_config compiles)

    monkeypatch.setattr(torch, "compile", record)
    # --compile last, and before another option: a bare --compile must not swallow what follows.
    tail = TINY_SUPERNET if bench == "supernet" else TINY_TRAIN
    assert main(["bench", bench, *tail, *args]) == 0
    assert main(["bench", bench, *args, *tail]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert modes == [mode, mode] and [r["compile"] for r in lines] == [mode, mode]


def test_bench_refuses_an_unknown_compile_mode(capsys):
    with pytest.raises(SystemExit) as exit_:  # argparse's usage error
        main(["bench", "train", "--compile", "fast", *TINY_TRAIN])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--compile" in err and "reduce-overhead" in err and "Traceback" not in err


def test_count_dispatches_counts_each_aten_op_once():
    x = torch.ones(3)
    assert count_dispatches(lambda: (x + 1).mul(2).sum()) == 3
    ops = count_dispatches(lambda: (x + 1).mul(2).sum(), by_op=True)
    assert ops == {"aten.add.Tensor": 1, "aten.mul.Tensor": 1, "aten.sum.default": 1}
    assert count_dispatches(lambda: None) == 0


def test_count_dispatches_sees_the_backward_and_the_optimizer():
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.1, foreach=False)

    def step():
        opt.zero_grad(set_to_none=True)
        (w * 2).sum().backward()
        opt.step()

    ops = count_dispatches(step, by_op=True)
    forward_only = count_dispatches(lambda: (w * 2).sum())
    assert forward_only == 2
    assert sum(ops.values()) > forward_only + 2  # backward ops and the update
    assert ops["aten.add_.Tensor"] >= 1  # SGD's in-place update w += -lr * grad


def test_bench_refuses_nonsense_sizes(capsys):
    assert main(["bench", "supernet", "--steps", "0", "--device", "cpu"]) == 2
    assert "--steps must be at least 1" in capsys.readouterr().err
    assert main(["bench", "train", "--eval-batch-size", "-1", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--eval-batch-size -1" in err


def test_timing_lock_makes_the_bench_wait_for_its_holder(capsys, monkeypatch, tmp_path):
    """--timing-lock FILE: the timed steps start only once no one else holds FILE's lock, and
    the JSON says how long the bench waited (a lower bound: the holder lets go 0.5 s after the
    bench asks for the lock)."""
    import fcntl
    import threading

    lock = tmp_path / "timing.lock"
    holder = open(lock, "a")
    real_flock = fcntl.flock
    real_flock(holder, fcntl.LOCK_EX)
    timers = []

    def release():
        real_flock(holder, fcntl.LOCK_UN)
        holder.close()

    def flock(handle, operation):
        if operation == fcntl.LOCK_EX and not holder.closed:
            timers.append(threading.Timer(0.5, release))
            timers[-1].start()
        return real_flock(handle, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    assert main(["bench", "train", *TINY_TRAIN, "--eval-batch-size", "0", "--timing-lock", str(lock)]) == 0
    assert len(timers) == 1 and holder.closed
    out = _json(capsys)
    assert out["lock_wait_s"] >= 0.5 and out["step_s_median"] > 0
    # A free lock: no wait worth the name; without the option the key is absent.
    assert main(["bench", "train", *TINY_TRAIN, "--eval-batch-size", "0", "--timing-lock", str(lock)]) == 0
    assert _json(capsys)["lock_wait_s"] < 0.5
    assert main(["bench", "train", *TINY_TRAIN, "--eval-batch-size", "0"]) == 0
    assert "lock_wait_s" not in _json(capsys)
