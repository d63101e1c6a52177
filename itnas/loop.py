"""What search and training share: the run folder, per-epoch checkpoint and resume, history,
the NaN guard and the final metrics. The loops themselves stay in `search.py` and `train.py`.

A run folder holds `config.json` (the resolved settings), `checkpoint.pt` (rewritten
atomically after every epoch), `history.json` (one record per finished epoch) and, once the
run has finished, `metrics.json`. Running the same command again resumes from the checkpoint;
a folder holding a run with other settings is refused rather than mixed.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from itnas.atomic import write_json
from itnas.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from itnas.errors import TrainingDivergedError, UserError
from itnas.formats import read_json

log = logging.getLogger(__name__)


def check_finite(loss: torch.Tensor | float, epoch: int, step: int, what: str = "loss") -> None:
    value = float(loss)
    if not math.isfinite(value):
        raise TrainingDivergedError(
            f"{what} became {value} at epoch {epoch + 1}, step {step + 1}; stopped, the last good "
            "checkpoint is kept (lower the learning rate or check the data)")


@dataclass
class RunDir:
    """The output folder of one search or training run."""

    path: Path
    identity: dict[str, Any]  # settings that must match for a resume (config, seed, variant...)
    history: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0  # wall-clock of earlier attempts, carried across resumes
    _t0: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"--out {self.path}: exists and is not a folder")
        self.path.mkdir(parents=True, exist_ok=True)

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
