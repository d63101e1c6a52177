"""MLflow tracking for searches and trainings: one run per job, never at the job's expense.

Tracking is on when `MLFLOW_TRACKING_URI` is set (the workflow sets it to the SQLite store
`sqlite:///results/mlflow.db`, or passes through a server URI you exported) and off for a
standalone `itnas` command without it; `ITNAS_TRACKING=off` turns it off either way. The
experiment is `MLFLOW_EXPERIMENT_NAME` (default `itnas`).

`start_run` never raises because of tracking: any failure becomes one warning and the run goes
on untracked, because `metrics.json` files, not the tracking store, are the ground truth.
Many jobs share one SQLite file, so every call retries with backoff while the database is
locked; an HTTP server that does not answer is detected with a short probe instead of
MLflow's minutes of retries. Each run gets the tags stage, dataset, benchmark, variant, seed,
genotype hash (set when a genotype.json is logged), git commit and the workflow rule
(`ITNAS_RULE`) and cell label (`label`, given by the command: `itnas train --label`: a variant,
whose selected cell a training uses, or a published cell), all hyperparameters as flattened params, per-epoch metrics in batches,
and artifacts; a logged genotype also gets its cell drawing (`figures/cell.png`).

A run with a folder keeps its run id there (`mlflow-run.json`): the same job run again after a
kill reopens that run, so its history continues where the checkpoint resumes. While a run is
open, SIGTERM (what SLURM and Snakemake send first) ends it as KILLED before the job exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from itnas.config import flatten
from itnas.files import read_json, write_json
from itnas.report.plots import draw_genotype
from itnas.space import load_genotype
from itnas.variants import NAMES as VARIANTS

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_EXPERIMENT = "itnas"
RETRY_BUDGET_S = float(os.environ.get("ITNAS_TRACKING_RETRY_S", "120"))
PROBE_TIMEOUT_S = 3.0
MAX_PARAM_LEN = 6000
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000
RUN_FILE = "mlflow-run.json"  # in a run folder: the id of its MLflow run, to reopen on a resume
_TRANSIENT = ("database is locked", "database table is locked", "busy", "unable to open database",
              "disk i/o error")


def tracking_uri() -> str | None:
    """The store runs go to, or None when tracking is off."""
    if os.environ.get("ITNAS_TRACKING", "").lower() in ("off", "0", "false", "no"):
        return None
    return os.environ.get("MLFLOW_TRACKING_URI") or None


def experiment_name() -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


def _warn(message: str) -> None:
    log.warning("MLflow tracking: %s; the job goes on, metrics.json stays the record", message)


# ----------------------------------------------------------------------------- helpers


_BAD_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")


def _key(name: str) -> str:
    return _BAD_KEY.sub("_", str(name))[:250] or "_"


def _is_transient(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(marker in text for marker in _TRANSIENT)


def _retry(fn: Callable[[], T], what: str, budget_s: float | None = None) -> T:
    """Call fn, retrying with jittered exponential backoff while SQLite says it is locked."""
    deadline = time.monotonic() + (RETRY_BUDGET_S if budget_s is None else budget_s)
    delay = 0.05
    while True:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified below, re-raised when not transient
            if not _is_transient(exc) or time.monotonic() + delay > deadline:
                raise
            log.debug("tracking %s: %s; retrying in %.2fs", what, exc, delay)
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)


def git_commit(cwd: str | Path | None = None) -> str:
    """The commit of the code that runs: ITNAS_GIT_COMMIT, else `git rev-parse HEAD`."""
    env = os.environ.get("ITNAS_GIT_COMMIT")
    if env:
        return env
    here = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit:
        return "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                           capture_output=True, text=True, timeout=5, check=False)
    return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def figure_cache() -> Path:
    """Where drawn cells are kept between runs: $ITNAS_CACHE_DIR, else ~/.cache/itnas."""
    root = os.environ.get("ITNAS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "itnas")
    path = Path(root) / "cells"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI (relative paths stay relative to the cwd)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def default_artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store go beside the database (`mlartifacts/`), not into ./mlruns."""
    db = sqlite_path(uri)
    if db is None:
        return None
    return (db.resolve().parent / "mlartifacts").as_uri()


def _probe(uri: str) -> None:
    """Fail fast when an HTTP tracking server does not accept connections."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    with socket.create_connection((parsed.hostname or "localhost", port), timeout=PROBE_TIMEOUT_S):
        pass


def _limit_http_retries() -> None:
    # MLflow's defaults retry a dead server for minutes; a job should lose seconds at most.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


@contextlib.contextmanager
def _init_lock(uri: str) -> Iterator[None]:
    """Serialise first-time schema creation of a SQLite store between processes: whoever finds
    no database creates it under an exclusive lock; the others open it under a shared one, so
    they wait for a creation in progress but never for each other."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    exists = db.exists() and db.stat().st_size > 0
    fd = os.open(db.parent / f".{db.name}.init.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if exists else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def client(uri: str):
    """An MlflowClient for `uri`, creating the store's tables if needed (under a file lock)."""
    _limit_http_retries()
    _probe(uri)
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    with _init_lock(uri):
        c = _retry(lambda: MlflowClient(tracking_uri=uri), "connect")
        _retry(c.search_experiments, "open store")  # builds the store (and its schema) now
    return c


def get_or_create_experiment(c, name: str, uri: str) -> str:
    def get_or_create() -> str:
        exp = c.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return c.create_experiment(name, artifact_location=default_artifact_root(uri))
        except Exception as exc:  # another process created it first
            if "already exists" in str(exc).lower() or "unique constraint" in str(exc).lower():
                found = c.get_experiment_by_name(name)
                if found is not None:
                    return found.experiment_id
            raise

    return _retry(get_or_create, "experiment")


def runs_view(uri: str, experiment_id: str) -> str:
    """Where a person sees the experiment's runs: MLflow 3 opens an experiment on its GenAI
    overview, so this is the runs view itself (for a SQLite store, under `mlflow ui`'s default
    address)."""
    base = uri.rstrip("/") if urlparse(uri).scheme in ("http", "https") else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}/runs"


def init_store(uri: str | None = None, experiment: str | None = None) -> dict[str, Any]:
    """Create the store and the experiment once, before jobs fan out; returns what it made.

    Raises on failure (the caller decides whether that is a warning).
    """
    uri = uri or tracking_uri()
    if not uri:
        return {"enabled": False}
    name = experiment or experiment_name()
    c = client(uri)
    exp_id = get_or_create_experiment(c, name, uri)
    return {"enabled": True, "uri": uri, "experiment": name, "experiment_id": exp_id,
            "runs_view": runs_view(uri, exp_id)}


# ----------------------------------------------------------------------------- runs


class NullRun:
    """What a job logs to when tracking is off or broken: accepts everything, does nothing."""

    run_id: str | None = None
    active = False

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def set_tags(self, tags: dict[str, Any]) -> None:
        pass

    def log_history(self, records: list[dict[str, Any]], step_key: str = "epoch") -> None:
        pass

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        pass

    def last_step(self, key: str) -> int:
        """The last step at which metric `key` was logged (0: never)."""
        return 0


class Run(NullRun):
    """An MLflow run whose every call is retried, and whose first hard failure disables it."""

    active = True

    def __init__(self, c, run_id: str, params: dict[str, str] | None = None):
        self._client = c
        self.run_id = run_id
        self._broken = False
        self._params = dict(params or {})  # logged already (a reopened run keeps its first values)

    def _call(self, what: str, fn: Callable[[], Any]) -> None:
        if self._broken:
            return
        try:
            _retry(fn, what)
        except Exception as exc:  # noqa: BLE001 - tracking must never stop the job
            self._broken = True
            _warn(f"{what} failed ({type(exc).__name__}: {_short(exc)}); no more logging for run {self.run_id}")

    def log_params(self, params: dict[str, Any]) -> None:
        """Params not logged yet; MLflow refuses to change one, so a value that differs from the
        first attempt's (a resume on other hardware, say) keeps the first."""
        from mlflow.entities import Param

        items = []
        for k, v in sorted(flatten(params).items()):
            key, value = _key(k), _value(v)[:MAX_PARAM_LEN]
            if key in self._params:
                if self._params[key] != value:
                    log.debug("param %s stays %r in run %s (now %r)", key, self._params[key], self.run_id, value)
                continue
            self._params[key] = value
            items.append(Param(key, value))
        for i in range(0, len(items), PARAMS_PER_BATCH):
            chunk = items[i:i + PARAMS_PER_BATCH]
            self._call("log params", lambda chunk=chunk: self._client.log_batch(self.run_id, params=chunk))

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(_key(k), _value(v)[:8000]) for k, v in tags.items() if v is not None]
        for i in range(0, len(items), PARAMS_PER_BATCH):
            chunk = items[i:i + PARAMS_PER_BATCH]
            self._call("set tags", lambda chunk=chunk: self._client.log_batch(self.run_id, tags=chunk))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.log_history([{**metrics, "_step": step or 0}], step_key="_step")

    def log_history(self, records: list[dict[str, Any]], step_key: str = "epoch") -> None:
        """Per-epoch records (e.g. history.json) as metrics, one batch per 1000 values."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = []
        for k, record in enumerate(records):
            step = int(record.get(step_key, k) or 0)
            for name, value in record.items():
                if name == step_key or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                if not math.isfinite(float(value)):
                    continue
                items.append(Metric(_key(name), float(value), now, step))
        for i in range(0, len(items), METRICS_PER_BATCH):
            chunk = items[i:i + METRICS_PER_BATCH]
            self._call("log metrics", lambda chunk=chunk: self._client.log_batch(self.run_id, metrics=chunk))

    def last_step(self, key: str) -> int:
        if self._broken:
            return 0
        try:
            history = _retry(lambda: self._client.get_metric_history(self.run_id, _key(key)), "read metric")
        except Exception:  # noqa: BLE001 - at worst some epochs are logged twice
            return 0
        return max((m.step for m in history), default=0)

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        p = Path(path)
        if not p.exists():
            log.warning("MLflow tracking: artifact %s does not exist; not logged", p)
            return
        self._call(f"log artifact {p.name}",
                   lambda: self._client.log_artifact(self.run_id, str(p), artifact_path))
        if p.name == "genotype.json" and not self._broken:
            self._log_genotype_extras(p)

    def _log_genotype_extras(self, path: Path) -> None:
        """A genotype gets its hash as a tag and its cell drawing as a figure (drawn once per
        genotype and machine: the drawing is cached by hash, since many runs share a cell)."""
        try:
            genotype = load_genotype(path)
            key = genotype.hash()
            self.set_tags({"genotype_hash": key})
            png = figure_cache() / f"cell-{key}.png"
            if not png.exists():
                draw_genotype(genotype, png, title=f"genotype {key}")
            with tempfile.TemporaryDirectory() as tmp:  # logged under the name cell.png
                named = Path(tmp) / "cell.png"
                shutil.copyfile(png, named)
                self._call("log cell figure",
                           lambda: self._client.log_artifact(self.run_id, str(named), "figures"))
        except Exception as exc:  # noqa: BLE001
            _warn(f"could not draw or log the cell of {path} ({type(exc).__name__}: {_short(exc)})")

    def end(self, status: str) -> None:
        if self._broken:
            return
        self._call("end run", lambda: self._client.set_terminated(self.run_id, status))

    def reopen(self) -> None:
        """Mark a run found in its folder (killed, failed or finished) as running again."""
        self._call("reopen run", lambda: self._client.update_run(self.run_id, status="RUNNING"))


def _value(v: Any) -> str:
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, separators=(",", ":"), default=str)
    return str(v)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] + ("..." if len(text) > 200 else "")


def standard_tags(stage: str, run_name: str, tags: dict[str, Any]) -> dict[str, str]:
    out = {str(k): str(v) for k, v in tags.items() if v is not None}
    out.setdefault("stage", stage)
    out["mlflow.runName"] = run_name
    commit = git_commit()
    out.setdefault("git_commit", commit)
    out.setdefault("mlflow.source.git.commit", commit.removesuffix("-dirty"))
    out.setdefault("rule", os.environ.get("ITNAS_RULE", "standalone"))
    if out.get("label") in VARIANTS:  # a training of a variant's selected cell (`itnas train --label`)
        out.setdefault("variant", out["label"])
    out.setdefault("host", socket.gethostname())
    if os.environ.get("SLURM_JOB_ID"):
        out.setdefault("slurm_job_id", os.environ["SLURM_JOB_ID"])
    return out


def _open_run(stage: str, run_name: str, params: dict[str, Any], tags: dict[str, Any],
              folder: Path | None) -> NullRun:
    uri = tracking_uri()
    if not uri:
        return NullRun()
    try:
        c = client(uri)
        exp_id = get_or_create_experiment(c, experiment_name(), uri)
        all_tags = standard_tags(stage, run_name, tags)
        found = _previous_run(c, exp_id, folder)
        if found is None:
            created = _retry(lambda: c.create_run(exp_id, run_name=run_name, tags=all_tags), "create run")
            run = Run(c, created.info.run_id)
            if folder is not None:
                write_json(folder / RUN_FILE, {"run_id": run.run_id, "experiment_id": exp_id,
                                               "tracking_uri": uri})
        else:
            run = Run(c, found.info.run_id, found.data.params)
            run.reopen()
            run.set_tags(all_tags)  # this attempt's host, SLURM job and commit
    except Exception as exc:  # noqa: BLE001 - tracking must never stop the job
        _warn(f"cannot start a run at {uri} ({type(exc).__name__}: {_short(exc)})")
        return NullRun()
    run.log_params(params)
    log.info("MLflow run %s (%s) at %s%s", run.run_id, run_name, uri, "" if found is None else ", reopened")
    return run


def _previous_run(c, exp_id: str, folder: Path | None):
    """The run whose id the folder keeps, if it is in this store and experiment and not deleted."""
    path = folder / RUN_FILE if folder is not None else None
    if path is None or not path.is_file():
        return None
    try:
        run_id = read_json(path, "MLflow run file")["run_id"]
        found = _retry(lambda: c.get_run(run_id), "find run")
    except Exception as exc:  # noqa: BLE001 - another store, a deleted run, a damaged file
        log.info("%s: run not reopened (%s); starting a new one", path, _short(exc))
        return None
    if found.info.experiment_id != exp_id or found.info.lifecycle_stage != "active":
        return None
    return found


def tag_run_in(folder: str | Path, tags: dict[str, Any]) -> None:
    """Set tags on the (finished) run a run folder keeps, e.g. the winner of a selection."""
    uri, path = tracking_uri(), Path(folder) / RUN_FILE
    if not uri or not path.is_file():
        return
    try:
        run_id = read_json(path, "MLflow run file")["run_id"]
        Run(client(uri), run_id).set_tags(tags)
    except Exception as exc:  # noqa: BLE001
        _warn(f"cannot tag the run of {folder} ({type(exc).__name__}: {_short(exc)})")


class Terminated(SystemExit):
    """SIGTERM arrived while a run was open: unwinds the job so that its run ends as KILLED."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(128 + signum)


@contextlib.contextmanager
def _sigterm_ends_runs() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` while a run is open (main thread only; a handler someone
    else installed is left alone)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, _raise_terminated):
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def start_run(stage: str, run_name: str, params: dict[str, Any], tags: dict[str, Any],
              folder: str | Path | None = None) -> Iterator[NullRun]:
    """One tracked run around a job; yields a run whose calls never raise.

    With a `folder` (the job's run folder, which must exist) the run id is kept there and the
    same job run again reopens its run. Tags may name a parent run (`mlflow.parentRunId`). On
    normal exit the run is FINISHED; an exception marks it FAILED (KILLED for Ctrl-C and SIGTERM)
    and propagates unchanged.
    """
    run = _open_run(stage, run_name, params, tags, Path(folder) if folder is not None else None)
    if not isinstance(run, Run):
        yield run
        return
    with _sigterm_ends_runs():
        try:
            yield run
        except BaseException as exc:
            killed = isinstance(exc, (KeyboardInterrupt, Terminated))
            run.end("KILLED" if killed else "FAILED")
            if isinstance(exc, Terminated):
                log.warning("terminated (SIGTERM): MLflow run %s marked KILLED; run the same command "
                            "again to resume it", run.run_id)
            raise
        run.end("FINISHED")
