"""MLflow tracking (stub: the workflow issue implements it behind this API).

`start_run` never raises because of tracking: any failure becomes a warning and a no-op run,
because `metrics.json` files, not the tracking store, are the ground truth.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


class NullRun:
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, path: str) -> None:
        pass


@contextlib.contextmanager
def start_run(stage: str, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> Iterator[NullRun]:
    yield NullRun()
