"""Step-time benchmarks behind `itnas bench`: the supernet's weight and architecture steps (run
by the real `Searcher`) and one training step of an evaluation network, on synthetic batches.

Each timed step is synchronised on CUDA and reports wall and process-CPU seconds. The CPU
figure is what to compare on a shared machine: other processes stretch wall time but not the
CPU time this process spends (at one thread). `interleave` runs several candidates in turn
(A B A B ...) so that load changes hit all of them alike; `benchmarks/` builds on it.

`count_dispatches` counts the aten operators one call dispatches: a hardware-independent proxy
of a step's launch and dispatch overhead (the GPU steps here are bound by it), which a CPU-only
session can track from one change to the next.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import platform
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import TensorDataset

from itnas import config, variants
from itnas.data.gpu_pipeline import DeviceDataset
from itnas.genotypes import resolve_genotype
from itnas.runtime import (
    describe,
    peak_memory_bytes,
    reset_peak_memory,
    resolve_runtime,
    seed_everything,
    set_deterministic,
)
from itnas.search.loop import Searcher, check_search_config, search_runtime
from itnas.train.batches import DeviceBatches, TrainData
from itnas.train.distributed import DistContext, plan_batches
from itnas.train.loop import Trainer
from itnas.train.networks import PROTOCOL_DEFAULTS, count_params


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call, device work included."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


@dataclass
class Timings:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, sample: tuple[float, float]) -> None:
        self.wall.append(sample[0])
        self.cpu.append(sample[1])

    def summary(self, prefix: str) -> dict[str, float | None]:
        if not self.wall:
            return {f"{prefix}_s_median": None, f"{prefix}_cpu_s_median": None}
        return {f"{prefix}_s_median": statistics.median(self.wall),
                f"{prefix}_s_min": min(self.wall),
                f"{prefix}_s_max": max(self.wall),
                f"{prefix}_cpu_s_median": statistics.median(self.cpu)}


class DispatchCounter(TorchDispatchMode):
    """Counts every aten operator call that reaches the dispatcher while active, by overload.

    Autograd hands the mode to its worker threads, so a backward run inside counts too. A
    torch.compile'd module runs eagerly while such a mode is active (dynamo leaves frames alone
    under a user dispatch mode; with torch 2.14 a compiled step counts exactly the eager step's
    ops), so the count is always that of the eager step.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.ops.values())


def count_dispatches(fn: Callable[[], Any], by_op: bool = False) -> int | Counter[str]:
    """Aten operators dispatched by one call of `fn` (its result is dropped); with `by_op`, a
    Counter of them by overload name (e.g. 'aten.convolution.default')."""
    counter = DispatchCounter()
    with counter:
        fn()
    return counter.ops if by_op else counter.total


def interleave(candidates: dict[str, Callable[[], Any]], repeats: int, device: torch.device,
               warmup: int = 1) -> dict[str, Timings]:
    """Time each candidate `repeats` times in turns (A B A B ...) after `warmup` untimed turns."""
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    out = {name: Timings() for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            out[name].add(timed(fn, device))
    return out


def ratio(a: Timings, b: Timings, kind: str = "cpu") -> float:
    """Median of a / median of b, on `kind` ('cpu' or 'wall') seconds."""
    xa, xb = getattr(a, kind), getattr(b, kind)
    return statistics.median(xa) / statistics.median(xb)


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                            "cpu": _cpu_name()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def synthetic_batch(batch: int, channels: int, size: int, classes: int, device: torch.device,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(batch, channels, size, size, generator=generator)
    y = torch.randint(classes, (batch,), generator=generator)
    return x.to(device), y.to(device)


def device_data(channels: int, size: int, classes: int, device: torch.device, seed: int, cutout: int,
                protocol: str = "cifar", images: int = 4096) -> TrainData:
    """TrainData whose training images (random uint8) live on `device`: its batches are drawn and
    augmented there (the GPU-resident pipeline), so the data pipeline's cost is part of the step."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(256, (images, size, size, channels), generator=g, dtype=torch.uint8)
    labels = torch.randint(classes, (images,), generator=g)
    on_device = DeviceDataset(pixels, labels, [0.5] * channels, [0.25] * channels, device)
    listed = TensorDataset(labels)
    return TrainData(listed, listed, classes, protocol, channels, size, "random", device_train=on_device,
                     cutout=cutout)


def endless_device_batches(batch: int, channels: int, size: int, classes: int, device: torch.device,
                           seed: int, cutout: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`device_data`'s augmented batches (train/batches.py's DeviceBatches), epoch after epoch."""
    batches = DeviceBatches(device_data(channels, size, classes, device, seed, cutout),
                            plan_batches(batch, 1, None), seed, 0)
    return itertools.chain.from_iterable(batches.epoch(e) for e in itertools.count())


# ----------------------------------------------------------------------------- supernet


def search_config(variant: str, layers: int, init_channels: int, batch: int, device: str,
                  amp: bool | str, channels_last: bool | str, compile: bool | str,
                  streams: int | str = "auto") -> dict:
    """The search config a run with these settings would have: schema defaults plus these keys.
    Validated with jsonschema where it is installed; the bench also runs on a machine that has
    only torch, numpy and yaml (a lent GPU)."""
    cfg = config.defaults("search")
    v = variants.get(variant)
    cfg["arch"].update(v.flags, none_op=v.none_op)
    cfg["arch_optim"]["order"] = "second" if v.second_order else "first"
    cfg["model"].update(layers=layers, init_channels=init_channels)
    cfg["data"]["batch_size"] = batch
    cfg["runtime"].update(device=device, amp=amp, channels_last=channels_last, compile=compile,
                          streams=streams, progress=False, workers=0)
    _validate(cfg, "search")
    check_search_config(cfg, "<bench settings>")
    return cfg


def _validate(cfg: dict, kind: str) -> None:
    try:
        config.validate(cfg, config.load_schema(kind), "<bench settings>")
    except ImportError:  # no jsonschema here: the schema's defaults and the checks must do
        pass


class SupernetBench:
    """A `Searcher` (the search's own step code) fed with fixed random batches or the GPU pipeline."""

    def __init__(self, variant: str = "darts", layers: int = 8, init_channels: int = 16,
                 batch_size: int = 64, image_size: int = 32, device: str = "cpu",
                 amp: bool | str = "auto", channels_last: bool | str = "auto", compile: bool | str = False,
                 num_classes: int = 10, in_channels: int = 3, seed: int = 0, data: str = "synthetic",
                 eval_batch_size: int = 250, streams: int | str = "auto"):
        self.cfg = search_config(variant, layers, init_channels, batch_size, device, amp, channels_last,
                                 compile, streams)
        rt = search_runtime(self.cfg)
        self.device = rt.device
        set_deterministic(False)  # cudnn autotuning on CUDA, as run_search has it
        seed_everything(seed)
        self.searcher = Searcher(self.cfg, num_classes, in_channels, rt)
        self.searcher.policy.set_temperature(self.cfg["tau"]["start"])
        self.variant, self.batch_size, self.image_size, self.data = variant, batch_size, image_size, data
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None
        g = torch.Generator().manual_seed(seed)
        self.eval_batch_size = eval_batch_size
        self._eval = [self.searcher.prepare(*synthetic_batch(eval_batch_size, in_channels, image_size, num_classes,
                                                             self.device, g))] if eval_batch_size else []
        if data == "device":
            self._next = endless_device_batches(batch_size, in_channels, image_size, num_classes, self.device,
                                                seed, 0).__next__
        elif data == "synthetic":
            fixed = [synthetic_batch(batch_size, in_channels, image_size, num_classes, self.device, g)
                     for _ in range(2)]
            self._fixed = [self.searcher.prepare(*b) for b in fixed]
            self._turn = 0
            self._next = self._fixed_batch
        else:
            raise ValueError(f"data must be 'synthetic' or 'device', got {data!r}")

    def _fixed_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        self._turn ^= 1
        return self._fixed[self._turn]

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self._next()
        if self.data == "device":
            x, y = self.searcher.prepare(x, y)
        return x, y

    def weight_step(self) -> None:
        self._last = self._batch()
        self.searcher.weight_step(*self._last)

    def arch_step(self) -> None:
        self.searcher.arch_step(*self._arch_batches())

    def _arch_batches(self) -> tuple[torch.Tensor, ...]:
        # One batch per step each, as the search draws them; the training batch only matters to
        # the second-order step, which gets the last weight batch.
        x_val, y_val = self._batch()
        x_tr, y_tr = self._last if self._last is not None else (x_val, y_val)
        return x_val, y_val, x_tr, y_tr

    def eval_step(self) -> None:
        """One batch of the per-epoch validation pass (`Searcher.evaluate`, eval mode, no grad)."""
        self.searcher.evaluate(self._eval)

    def dispatches(self) -> dict[str, int]:
        """Aten ops of one weight step and of one architecture step, batches drawn beforehand
        (so `--data device`'s augmentation is not counted)."""
        batch = self._batch()
        weight = count_dispatches(lambda: self.searcher.weight_step(*batch))
        self._last = batch
        arch_batches = self._arch_batches()
        arch = count_dispatches(lambda: self.searcher.arch_step(*arch_batches))
        return {"dispatches_per_step": weight, "arch_dispatches_per_step": arch}

    def settings(self) -> dict[str, Any]:
        s, rt = self.searcher, self.searcher.rt
        return {"bench": "supernet", "variant": self.variant, "layers": self.cfg["model"]["layers"],
                "init_channels": self.cfg["model"]["init_channels"], "batch_size": self.batch_size,
                "image_size": self.image_size, "device": describe(self.device), "amp": rt.amp,
                "channels_last": rt.channels_last, "compile": rt.compile or False,
                "streams": rt.streams, "data": self.data, "eval_batch_size": self.eval_batch_size,
                "weights": sum(p.numel() for p in s.net.parameters()),
                "arch_params": sum(p.numel() for p in s.policy.parameters())}


@contextmanager
def timing_lock(path: str | os.PathLike | None) -> Iterator[dict[str, float]]:
    """Hold an exclusive lock on the file `path` (created if absent) while timing; yields
    {"lock_wait_s": seconds spent waiting for it}. Benches started together on one GPU then
    compile and warm up at the same time (CPU work) but time their steps one after another
    (benchmarks/gpu_check.sh). None: no lock."""
    if path is None:
        yield {}
        return
    start = time.perf_counter()
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield {"lock_wait_s": time.perf_counter() - start}
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def bench_supernet(steps: int = 10, warmup: int = 2, lock: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """One search step after another (arch step, then weight step, as `run_search` does)."""
    bench = SupernetBench(**kwargs)
    device = bench.device
    warm, warm_peak = _warm_up(lambda: (bench.arch_step(), bench.weight_step()), warmup, device, bench)
    weight, arch = Timings(), Timings()
    with timing_lock(lock) as waited:
        for _ in range(steps):
            arch.add(timed(bench.arch_step, device))
            weight.add(timed(bench.weight_step, device))
        memory = _memory(device, warm_peak)
        evaluation = _eval_timing(bench, steps)
    result = {**bench.settings(), "steps": steps, "warmup": warmup, "warmup_s": warm, **waited, **machine()}
    result.update(weight.summary("step"))
    result.update(arch.summary("arch_step"))
    result["images_per_s"] = bench.batch_size / result["step_s_median"]
    result["search_step_s_median"] = statistics.median(a + w for a, w in zip(arch.wall, weight.wall))
    result.update(memory)
    result.update(evaluation)
    if bench.searcher.graphs is not None:  # compile step-graphs: what was recorded and replayed
        result["step_graphs"] = {name: {"backend": g.backend, "captures": g.captures, "replays": g.replays}
                                 for name, g in bench.searcher.graphs.items()}
    # Counted after the timed steps and the memory figure, so neither sees the counting.
    result.update(bench.dispatches())
    return result


def _warm_up(step: Callable[[], Any], n: int, device: torch.device, bench: Any) -> tuple[float, int]:
    """Run `n` untimed steps, and three untimed evaluation batches where `bench` times them, and
    return their wall seconds (compiling and recording CUDA graphs happen here, the eval-mode
    graph's included, so this is that cost) and their peak memory; the timed steps' peak-memory
    figure starts after them (CUDA graphs take their memory pool while recording, so for them
    that figure is only what the eager rest of the step allocates)."""
    start = time.perf_counter()
    for _ in range(n):
        step()
    if bench.eval_batch_size:
        # Three: CUDA-graph trees record on the second call, step-graphs on the third.
        for _ in range(3 if n else 1):
            bench.eval_step()
    synchronize(device)
    peak = peak_memory_bytes(device)
    reset_peak_memory(device)
    return time.perf_counter() - start, peak


def _eval_timing(bench: Any, steps: int) -> dict[str, float]:
    """`eval_step_s_median`: one evaluation batch (of `bench.eval_batch_size`; none if 0); the
    warm-up ran an untimed one, which also compiled the eval-mode graph where compiling is on."""
    if not bench.eval_batch_size:
        return {}
    t = Timings()
    for _ in range(max(3, steps // 3)):
        t.add(timed(bench.eval_step, bench.device))
    return t.summary("eval_step")


def _memory(device: torch.device, warmup_peak: int) -> dict[str, Any]:
    kind = "cuda_max_allocated" if device.type == "cuda" else "process_max_rss"
    out: dict[str, Any] = {"peak_memory_bytes": peak_memory_bytes(device), "peak_memory_kind": kind,
                           "warmup_peak_memory_bytes": warmup_peak}
    if device.type == "cuda":
        out["peak_memory_reserved_bytes"] = int(torch.cuda.max_memory_reserved(device))
    return out


# ----------------------------------------------------------------------------- evaluation network


class TrainBench:
    """One training step of an evaluation network, by the training's own `Trainer` (its micro-batch
    step and update: autocast forward, loss + auxiliary_weight * auxiliary loss, backward,
    gradient clipping, SGD), on fixed random batches or the GPU-resident pipeline."""

    def __init__(self, genotype: str = "DARTS_V2", protocol: str = "cifar", layers: int | None = None,
                 init_channels: int | None = None, batch_size: int = 96, image_size: int | None = None,
                 device: str = "cpu", amp: bool | str = "auto", channels_last: bool | str = "auto",
                 compile: bool | str = False, num_classes: int = 10, in_channels: int = 3,
                 auxiliary: bool = True, auxiliary_weight: float = 0.4, drop_path: float = 0.2,
                 grad_clip: float = 5.0, seed: int = 0, data: str = "synthetic", cutout: int = 16,
                 eval_batch_size: int = 400):
        self.genotype, self.genotype_label = resolve_genotype(genotype)
        self.protocol, self.batch_size, self.data = protocol, batch_size, data
        self.image_size = image_size or (32 if protocol == "cifar" else 224)
        self.cfg = cfg = config.defaults("train")
        cfg["protocol"] = protocol
        cfg["model"].update(layers=layers or PROTOCOL_DEFAULTS[protocol][0],
                            init_channels=init_channels or PROTOCOL_DEFAULTS[protocol][1],
                            auxiliary=auxiliary, auxiliary_weight=auxiliary_weight, drop_path_prob=drop_path)
        cfg["data"].update(batch_size=batch_size, cutout=cutout)
        cfg["optim"]["grad_clip"] = grad_clip
        cfg["runtime"].update(device=device, amp=amp, channels_last=channels_last, compile=compile, workers=0,
                              eval_batch_size=eval_batch_size or None, progress=False)
        _validate(cfg, "train")
        rt = resolve_runtime(cfg["runtime"], "train")
        self.device = rt.device
        g = torch.Generator().manual_seed(seed)
        x, y = synthetic_batch(2 * batch_size, in_channels, self.image_size, num_classes, torch.device("cpu"), g)
        if data == "device":
            train = device_data(in_channels, self.image_size, num_classes, self.device, seed, cutout, protocol)
        elif data == "synthetic":
            train = TrainData(TensorDataset(x, y), TensorDataset(x, y), num_classes, protocol, in_channels,
                              self.image_size, "random")
        else:
            raise ValueError(f"data must be 'synthetic' or 'device', got {data!r}")
        self.trainer = Trainer(cfg, self.genotype, train, seed, DistContext(), rt)  # cudnn autotuning on CUDA
        self.trainer.model.drop_path_prob = drop_path
        self.trainer.model.train()
        self.eval_batch_size = eval_batch_size
        self._eval = rt.batch_to(*synthetic_batch(eval_batch_size, in_channels, self.image_size, num_classes,
                                                  self.device, g)) if eval_batch_size else None
        self._fixed = [rt.batch_to(x[:batch_size], y[:batch_size]), rt.batch_to(x[batch_size:], y[batch_size:])]
        self._turn = 0
        self._epochs = itertools.count()
        self._source: Iterator = iter(())

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.data == "device":
            batch = next(self._source, None)
            if batch is None:  # a new epoch of the pipeline
                self._source = self.trainer.batches.epoch(next(self._epochs))
                batch = next(self._source)
            return batch
        self._turn ^= 1
        return self._fixed[self._turn]

    def step(self) -> None:
        self.train_step(*self._batch())

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.trainer._step(iter([(x, y)]))
        self.trainer._apply()

    def eval_step(self) -> None:
        """One batch of the test pass, as `Trainer.evaluate` runs it (eval mode, no grad)."""
        model = self.trainer.model
        model.eval()
        self.trainer.eval_batch(*self._eval)
        model.train()

    def settings(self) -> dict[str, Any]:
        m, rt = self.cfg["model"], self.trainer.rt
        return {"bench": "train", "genotype": self.genotype_label, "protocol": self.protocol,
                "layers": m["layers"], "init_channels": m["init_channels"],
                "batch_size": self.batch_size, "image_size": self.image_size,
                "device": describe(self.device), "amp": rt.amp,
                "channels_last": rt.channels_last, "compile": rt.compile or False, "data": self.data,
                "eval_batch_size": self.eval_batch_size, "params": count_params(self.trainer.model)}


def bench_train(steps: int = 10, warmup: int = 2, lock: str | None = None, **kwargs: Any) -> dict[str, Any]:
    bench = TrainBench(**kwargs)
    device = bench.device
    warm, warm_peak = _warm_up(bench.step, warmup, device, bench)
    t = Timings()
    with timing_lock(lock) as waited:
        for _ in range(steps):
            t.add(timed(bench.step, device))
        memory = _memory(device, warm_peak)
        evaluation = _eval_timing(bench, steps)
    result = {**bench.settings(), "steps": steps, "warmup": warmup, "warmup_s": warm, **waited, **machine()}
    result.update(t.summary("step"))
    result["images_per_s"] = bench.batch_size / result["step_s_median"]
    result.update(memory)
    result.update(evaluation)
    batch = bench._batch()
    result["dispatches_per_step"] = count_dispatches(lambda: bench.train_step(*batch))
    return result
