"""The run driver that search and training share: the run folder, per-epoch checkpoint and
resume, history, MLflow tracking, progress bars, the NaN guard and the final metrics. The loops
themselves are search/loop.py and train/loop.py; each drives one `Run`.

A run folder holds `config.json` (the resolved settings), `checkpoint.pt` (rewritten
atomically after every epoch), `history.json` (one record per finished epoch), when tracked
`mlflow-run.json` (the MLflow run that a resume reopens) and, once the run has finished,
`metrics.json`. Running the same command again resumes from the checkpoint; a folder holding a
run with other settings is refused rather than mixed. Of several training
processes only the first writes and tracks; all of them resume.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from itnas import tracking
from itnas.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from itnas.errors import TrainingDivergedError, UserError
from itnas.files import output_path, read_json, write_json

log = logging.getLogger(__name__)


def check_finite(loss: torch.Tensor | float, epoch: int, step: int, what: str = "loss") -> None:
    value = float(loss)
    if not math.isfinite(value):
        raise TrainingDivergedError(
            f"{what} became {value} at epoch {epoch + 1}, step {step + 1}; stopped, the last good "
            "checkpoint is kept (lower the learning rate or check the data)")


# A step's first calls warm up (torch.compile compiles, CUDA graphs run eagerly once, are
# recorded on the second call and replayed from the third; cuDNN picks its algorithms): the
# first WARMUP_STEPS steps of an epoch are timed apart from the steady ones.
WARMUP_STEPS = 3
# History keys that are wall-clock times, not results: two runs of one seed differ only in them.
TIMING_KEYS = ("epoch_s", "warmup_s", "warmup_steps", "step_s")


class StepClock:
    """Wall seconds of each step of one epoch (a step ends when its loss reaches the host, so
    GPU work is included). `record()`: `warmup_s`, the first WARMUP_STEPS steps together (in a
    process's first epoch, its compile and recording time), `warmup_steps`, and `step_s`, the
    median of the steps after them (absent when there are none)."""

    def __init__(self) -> None:
        self._last = time.monotonic()
        self._steps: list[float] = []

    def tick(self) -> None:
        now = time.monotonic()
        self._steps.append(now - self._last)
        self._last = now

    def record(self) -> dict[str, float | int]:
        warm, steady = self._steps[:WARMUP_STEPS], self._steps[WARMUP_STEPS:]
        out: dict[str, float | int] = {"warmup_s": sum(warm), "warmup_steps": len(warm)}
        if steady:
            out["step_s"] = statistics.median(steady)
        return out


@dataclass
class RunDir:
    """The output folder of one search or training run."""

    path: Path
    identity: dict[str, Any]  # settings that must match for a resume (config, seed, variant...)
    create: bool = True  # False: only read it (a training process other than the first)
    history: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0  # wall-clock of earlier attempts, carried across resumes
    _t0: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.path = output_path(self.path, "--out", folder=True, create=self.create)

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    def claim(self) -> None:
        """Record the settings, or check they match those of the run already in the folder."""
        cfg_path = self.path / "config.json"
        canonical = json.loads(json.dumps(self.identity, sort_keys=True))
        if cfg_path.exists():
            previous = read_json(cfg_path, "run settings")
            if previous != canonical:
                diff = sorted(k for k in set(previous) | set(canonical) if previous.get(k) != canonical.get(k))
                raise UserError(f"{self.path}: holds a run with other settings (differs in: "
                                f"{', '.join(diff[:5])}); use another --out or delete the folder")
        else:
            write_json(cfg_path, canonical)

    def resume(self, restore: Callable[[dict[str, Any]], None]) -> int:
        """Load the checkpoint if there is one; returns the epoch to start from."""
        if not self.checkpoint.exists():
            return 0
        state = load_checkpoint(self.checkpoint)
        if state.get("identity") != json.loads(json.dumps(self.identity, sort_keys=True)):
            raise UserError(f"{self.checkpoint}: belongs to a run with other settings; "
                            "use another --out or delete the folder")
        restore(state["payload"])
        restore_rng_state(state["rng"])
        self.history = list(state["history"])
        self.elapsed_s = float(state["elapsed_s"])
        epoch = int(state["epoch"])
        log.info("resuming %s from epoch %d", self.path, epoch)
        return epoch

    def wall_clock(self) -> float:
        return self.elapsed_s + (time.monotonic() - self._t0)

    def end_epoch(self, epoch: int, record: dict[str, Any], payload: dict[str, Any]) -> None:
        """Append the epoch's record and write history and checkpoint (atomically, in that order
        of importance: the checkpoint is the commit point)."""
        self.history.append({"epoch": epoch + 1, **record})
        save_checkpoint(self.checkpoint, {
            "identity": json.loads(json.dumps(self.identity, sort_keys=True)),
            "epoch": epoch + 1,
            "payload": payload,
            "rng": capture_rng_state(),
            "history": self.history,
            "elapsed_s": self.wall_clock(),
        })
        write_json(self.path / "history.json", self.history)

    def finish(self, metrics: dict[str, Any]) -> None:
        write_json(self.metrics, metrics)


def json_safe(obj: Any) -> Any:
    """Floats that JSON can carry (NaN/inf become None), recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


class Run:
    """One search or training run (a context manager): its `RunDir`, its MLflow run, progress
    bars and the epoch bookkeeping. With `is_main` False (a training process other than the
    first) it resumes like the others but writes and tracks nothing."""

    def __init__(self, out: str | Path, identity: dict[str, Any], stage: str, name: str,
                 params: dict[str, Any], tags: dict[str, Any], progress: bool = True, is_main: bool = True):
        self.dir = RunDir(Path(out), identity, create=is_main)
        self.path = self.dir.path
        self.stage, self.name, self.params, self.tags = stage, name, params, tags
        self.is_main = is_main
        self.show_progress = progress and is_main and sys.stderr.isatty()
        self.tracker: tracking.NullRun = tracking.NullRun()
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Run:
        if self.is_main:
            self.dir.claim()
        return self

    def track(self) -> None:
        """Open the run's MLflow run (once there is work to track; after a kill, the same run
        again); it ends with the context. Checkpointed epochs it lacks (a new run of a resumed
        job, or a kill between checkpoint and logging) are logged first."""
        if self.is_main and not self.tracker.active:
            self.tracker = self._stack.enter_context(tracking.start_run(self.stage, self.name, self.params,
                                                                        self.tags, folder=self.path))
            if self.tracker.active and self.history:
                key = next(iter(_numbers(self.history[0])))
                logged = self.tracker.last_step(key)
                self.tracker.log_history([r for r in self.history if r["epoch"] > logged])

    def __exit__(self, *exc: Any) -> bool | None:
        return self._stack.__exit__(*exc)

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.dir.history

    def resume(self, restore: Callable[[dict[str, Any]], None]) -> int:
        """Restore the last checkpoint through `restore`, if there is one; the epoch to start at."""
        return self.dir.resume(restore)

    def progress(self, total: int, desc: str) -> tqdm:
        """A progress bar on a terminal (stderr), else one that shows nothing."""
        return tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True, file=sys.stderr,
                    disable=not self.show_progress)

    def wall_clock(self) -> float:
        return self.dir.wall_clock()

    def end_epoch(self, epoch: int, record: dict[str, Any], payload: dict[str, Any]) -> None:
        """Record a finished epoch: history, checkpoint (the commit point) and tracked metrics."""
        if not self.is_main:
            return
        record = json_safe(record)
        self.dir.end_epoch(epoch, record, payload)
        self.tracker.log_metrics(_numbers(record), step=epoch + 1)

    def finish(self, metrics: dict[str, Any], artifacts: Iterable[str] = (), results: Iterable[str] = (),
               settings: Iterable[str] = ()) -> None:
        """Write metrics.json (the run is complete from here on) and track: the `results` among its
        keys as metrics at the last epoch's step (those the last record did not already track),
        the `settings` (facts of the run such as its device) as params, and the files named in
        `artifacts` (names inside the run folder)."""
        if not self.is_main:
            return
        metrics = json_safe(metrics)
        self.dir.finish(metrics)
        tracked = self.history[-1] if self.history else {}
        numbers = _numbers(metrics)
        self.tracker.log_metrics({k: numbers[k] for k in results if k in numbers and k not in tracked},
                                 step=len(self.history))
        self.tracker.log_params({k: metrics[k] for k in settings if metrics.get(k) is not None})
        for name in (*artifacts, "metrics.json", "history.json"):
            if (self.path / name).exists():
                self.tracker.log_artifact(str(self.path / name))


def _numbers(record: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
