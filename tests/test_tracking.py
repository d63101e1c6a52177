"""MLflow tracking: every concurrent job's run lands in the shared SQLite store, a dead server
costs a warning and seconds, and tracking never changes what a job does."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from itnas import tracking
from itnas.cli import main

pytest.importorskip("mlflow")

DARTS_V2 = {
    "normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1], ["sep_conv_3x3", 0], ["sep_conv_3x3", 1],
               ["sep_conv_3x3", 1], ["skip_connect", 0], ["skip_connect", 0], ["dil_conv_3x3", 2]],
    "normal_concat": [2, 3, 4, 5],
    "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1], ["skip_connect", 2], ["max_pool_3x3", 1],
               ["max_pool_3x3", 0], ["skip_connect", 2], ["skip_connect", 2], ["max_pool_3x3", 1]],
    "reduce_concat": [2, 3, 4, 5],
}

# One tiny "job": a run with nested hyperparameters, five epochs of metrics, two artifacts.
JOB = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from itnas import tracking
    seed, out = int(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({"seed": seed, "val_acc": 50.0 + seed}))
    params = {"epochs": 5, "optim": {"lr": 0.025, "momentum": 0.9}, "arch": {"gumbel": True},
              "model": {"layers": 5, "init_channels": 4}, "seed": seed}
    tags = {"dataset": "synthetic-cifar10", "variant": "itnas", "seed": str(seed)}
    with tracking.start_run("search", f"search-itnas-seed{seed}", params, tags) as run:
        for epoch in range(1, 6):
            run.log_metrics({"train_loss": 2.0 / epoch, "val_acc": 10.0 * epoch, "tau": 5.0 - epoch}, step=epoch)
        run.log_artifact(str(out / "metrics.json"))
    print("done", seed, type(run).__name__, flush=True)
""")


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "itnas-test")
    monkeypatch.setenv("ITNAS_RULE", "search")
    monkeypatch.setenv("ITNAS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ITNAS_TRACKING", raising=False)
    return uri


def _runs(uri: str, experiment: str = "itnas-test"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    return client, client.search_runs([exp.experiment_id], max_results=100)


def test_tracking_init_creates_the_store_once_and_is_idempotent(store, tmp_path):
    out = tmp_path / "init.json"
    assert main(["tracking", "init", "--out", str(out)]) == 0
    info = json.loads(out.read_text())
    assert info["enabled"] and info["experiment"] == "itnas-test"
    assert info["runs_view"] == f"http://127.0.0.1:5000/#/experiments/{info['experiment_id']}/runs"
    assert (tmp_path / "results" / "mlflow.db").exists()
    assert main(["tracking", "init", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["experiment_id"] == info["experiment_id"]
    client, _ = _runs(store)
    location = client.get_experiment(info["experiment_id"]).artifact_location
    assert location.endswith("results/mlartifacts"), "artifacts go beside the database, not ./mlruns"


def test_eight_concurrent_jobs_all_record_their_runs_params_and_metrics(store, tmp_path):
    assert main(["tracking", "init"]) == 0  # as the workflow does before jobs fan out
    env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, "-c", JOB, str(seed), str(tmp_path / f"job{seed}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for seed in range(8)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert out.split()[-1] == "Run", f"job ran untracked: {err}"
        assert "database is locked" not in err
    client, runs = _runs(store)
    assert len(runs) == 8
    assert sorted(int(r.data.tags["seed"]) for r in runs) == list(range(8))
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.params["optim.lr"] == "0.025" and run.data.params["arch.gumbel"] == "True"
        assert len(run.data.params) == 7
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2, 3, 4, 5]
        tags = run.data.tags
        assert tags["stage"] == "search" and tags["rule"] == "search" and tags["variant"] == "itnas"
        assert tags["dataset"] == "synthetic-cifar10" and tags["git_commit"]
        assert "metrics.json" in [a.path for a in client.list_artifacts(run.info.run_id)]


def test_concurrent_first_jobs_without_init_still_create_the_store_once(store, tmp_path):
    # Standalone jobs (no workflow, no `tracking init`) racing to create the SQLite schema.
    procs = [subprocess.Popen([sys.executable, "-c", JOB, str(seed), str(tmp_path / f"job{seed}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
             for seed in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and out.split()[-1] == "Run", err
    _, runs = _runs(store)
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)


def test_an_unreachable_server_degrades_to_a_quick_warning(monkeypatch, tmp_path, caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the with block ends: nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    caplog.set_level(logging.WARNING, logger="itnas.tracking")
    t0 = time.monotonic()
    trained = []
    with tracking.start_run("train", "train-x", {"lr": 0.1}, {"seed": "0"}) as run:
        for epoch in range(3):
            trained.append(epoch)
            run.log_metrics({"loss": 1.0}, step=epoch)
        run.log_artifact(str(tmp_path / "nothing.json"))
    assert trained == [0, 1, 2]
    assert isinstance(run, tracking.NullRun) and not run.active
    assert time.monotonic() - t0 < 15
    assert any("cannot start a run" in r.getMessage() for r in caplog.records)


def test_tracking_init_against_a_dead_server_warns_and_succeeds(capfd):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["tracking", "init", "--uri", f"http://127.0.0.1:{port}"]) == 0
    assert "could not be set up" in capfd.readouterr().err
    assert main(["tracking", "init", "--strict", "--uri", f"http://127.0.0.1:{port}"]) == 2


def test_tracking_is_off_without_a_tracking_uri(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    with tracking.start_run("search", "x", {"a": 1}, {}) as run:
        run.log_metrics({"a": 1.0}, step=1)
    assert not run.active
    assert list(tmp_path.iterdir()) == []  # no ./mlruns, no database


def test_itnas_tracking_off_wins_over_the_uri(store, monkeypatch):
    monkeypatch.setenv("ITNAS_TRACKING", "off")
    with tracking.start_run("search", "x", {}, {}) as run:
        pass
    assert not run.active


def test_a_failing_job_marks_its_run_failed_and_the_error_propagates(store):
    with pytest.raises(RuntimeError, match="boom"):
        with tracking.start_run("train", "train-fail", {"lr": 0.1}, {"seed": "3"}):
            raise RuntimeError("boom")
    _, runs = _runs(store)
    assert [r.info.status for r in runs] == ["FAILED"]


def test_a_logged_genotype_tags_its_hash_and_adds_the_cell_drawing(store, tmp_path):
    from itnas.space import genotype_from_json as from_json

    path = tmp_path / "genotype.json"
    path.write_text(json.dumps(DARTS_V2))
    with tracking.start_run("search", "search-g", {}, {"variant": "darts"}) as run:
        run.log_artifact(str(path))
    client, runs = _runs(store)
    assert runs[0].data.tags["genotype_hash"] == from_json(DARTS_V2).hash()
    figures = [a.path for a in client.list_artifacts(runs[0].info.run_id, "figures")]
    assert figures == ["figures/cell.png"]


def test_history_records_are_logged_in_batches(store):
    records = [{"epoch": e, "loss": 1.0 / e, "acc": float(e), "genotype": {"x": 1}, "ok": True}
               for e in range(1, 301)]
    with tracking.start_run("train", "long", {}, {}) as run:
        run.log_history(records)
    client, runs = _runs(store)
    assert len(client.get_metric_history(runs[0].info.run_id, "loss")) == 300
    assert "genotype" not in runs[0].data.metrics and "ok" not in runs[0].data.metrics


def test_flatten_gives_dotted_keys():
    assert tracking.flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == \
        {"a.b": 1, "a.c.d": [1, 2], "e": None}


def test_locked_database_errors_are_retried(monkeypatch):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert tracking._retry(flaky, "test", budget_s=10) == "ok" and len(calls) == 4
    with pytest.raises(ValueError):
        tracking._retry(lambda: (_ for _ in ()).throw(ValueError("bad")), "test")


def test_sqlite_artifacts_go_beside_the_database(tmp_path):
    root = tracking.default_artifact_root(f"sqlite:///{tmp_path}/r/mlflow.db")
    assert root == (Path(tmp_path) / "r" / "mlartifacts").as_uri()
    assert tracking.default_artifact_root("http://x:5000") is None


def test_the_workflow_label_tags_the_variant_of_a_training(store, monkeypatch):
    monkeypatch.setenv("ITNAS_RULE", "train")
    monkeypatch.setenv("ITNAS_LABEL", "itnas")  # the environment no longer carries a label
    with tracking.start_run("train", "train-g", {}, {"label": "gumbel_transition"}):
        pass
    with tracking.start_run("train", "train-d", {}, {"label": "DARTS_V2"}):
        pass
    with tracking.start_run("train", "train-n", {}, {}):
        pass
    _, runs = _runs(store)
    tags = {r.data.tags["mlflow.runName"]: r.data.tags for r in runs}
    assert tags["train-g"]["variant"] == "gumbel_transition" and tags["train-g"]["rule"] == "train"
    assert tags["train-d"]["label"] == "DARTS_V2" and "variant" not in tags["train-d"]
    assert "label" not in tags["train-n"] and "variant" not in tags["train-n"]


# ----------------------------------------------------------------------------- what a person browses


def _history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _search(out, overrides, variant="itnas", seed=0) -> int:
    args = ["search", "--config", "config/recipes/search.yaml", "--variant", variant, "--seed", str(seed), "--out", str(out)]
    for item in overrides:
        args += ["--set", item]
    return main(args)


@pytest.mark.parametrize("variant", ["itnas", "darts"])
def test_a_search_run_is_named_tagged_and_logs_results_at_its_last_step(store, tmp_path, tiny_search_overrides,
                                                                        variant):
    assert _search(tmp_path / "run", tiny_search_overrides, variant) == 0
    client, [run] = _runs(store)
    assert run.info.run_name == f"search {variant} seed0 synthetic-cifar10"
    tags = run.data.tags
    assert (tags["stage"], tags["variant"], tags["dataset"], tags["benchmark"], tags["seed"]) == \
        ("search", variant, "synthetic-cifar10", "cifar10", "0")
    assert run.data.params["seed"] == "0" and run.data.params["epochs"] == "2"
    metrics = run.data.metrics
    assert not {"seed", "epochs", "tau_final"} & set(metrics), "configuration is params, not metrics"
    for key in ("train_loss", "val_acc"):  # the names training uses too
        assert [step for step, _ in _history(client, run.info.run_id, key)] == [1, 2]
    for key in ("gpu_hours", "wall_clock_s", "weights"):  # Table 1's search cost, at the last step
        assert [step for step, _ in _history(client, run.info.run_id, key)] == [2], key
    assert ("tau" in metrics) == (variant == "itnas")  # softmax alone has no temperature
    assert json.loads((tmp_path / "run" / "genotype.json").read_text())["name"] == f"{variant}-seed0"


def test_a_training_run_is_named_by_its_cell_and_shares_the_search_metric_names(store, tmp_path):
    from itnas.genotypes import lookup
    from itnas.train.loop import train
    from tests.train.tiny import tensor_data, tiny_config

    train(tiny_config(), lookup("DARTS_V2"), "DARTS_V2", tensor_data(), tmp_path / "run", seed=1)
    client, [run] = _runs(store)
    assert run.info.run_name == "train DARTS_V2 tensors seed1"
    assert run.data.tags["label"] == "DARTS_V2" and run.data.tags["stage"] == "train"
    for key in ("train_loss", "train_acc", "test_top1_err"):
        assert [step for step, _ in _history(client, run.info.run_id, key)] == [1, 2], key
    assert [step for step, _ in _history(client, run.info.run_id, "macs")] == [2]
    assert not {"seed", "epochs", "world_size", "layers"} & set(run.data.metrics)
    assert run.data.params["world_size"] == "1" and run.data.params["seed"] == "1"


def test_a_job_killed_by_sigterm_ends_killed_and_its_rerun_continues_the_same_run(store, tmp_path,
                                                                                  tiny_search_overrides,
                                                                                  monkeypatch):
    import signal

    from itnas.run import RunDir

    original = RunDir.end_epoch

    def terminated_after_first_checkpoint(self, epoch, record, payload):
        original(self, epoch, record, payload)
        os.kill(os.getpid(), signal.SIGTERM)  # what SLURM sends at a time limit

    monkeypatch.setattr(RunDir, "end_epoch", terminated_after_first_checkpoint)
    with pytest.raises(SystemExit) as exited:
        _search(tmp_path / "run", tiny_search_overrides + ["epochs=3"])
    assert exited.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler lives as long as the run
    client, [killed] = _runs(store)
    assert killed.info.status == "KILLED"
    # Killed between the checkpoint and the logging of epoch 1: the rerun logs that epoch first.
    assert _history(client, killed.info.run_id, "train_loss") == []

    monkeypatch.setattr(RunDir, "end_epoch", original)  # (undo() would also drop the store's settings)
    assert _search(tmp_path / "run", tiny_search_overrides + ["epochs=3"]) == 0
    client, [run] = _runs(store)  # still one run: the same one, reopened
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    assert [step for step, _ in _history(client, run.info.run_id, "train_loss")] == [1, 2, 3]


def test_a_selection_is_a_parent_run_with_its_candidates_nested_and_the_winner_tagged(store, tmp_path):
    from itnas.genotypes import lookup
    from itnas.train.select import select
    from tests.train.tiny import tensor_data, tiny_config

    candidates = [(lookup("DARTS_V2"), "itnas-seed0"), (lookup("DARTS_V1"), "itnas-seed1")]
    result = select(tiny_config("selection.epochs=1"), candidates, tensor_data(), tmp_path / "sel", seed=0)
    _, runs = _runs(store)
    by_name = {r.info.run_name: r for r in runs}
    assert set(by_name) == {"select itnas tensors", "select itnas candidate-seed0", "select itnas candidate-seed1"}
    parent = by_name.pop("select itnas tensors")
    assert parent.data.tags["winner"] == result["winner"]["genotype"] and parent.info.status == "FINISHED"
    for seed, child in ((0, by_name["select itnas candidate-seed0"]), (1, by_name["select itnas candidate-seed1"])):
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["search_seed"] == str(seed) and child.data.tags["variant"] == "itnas"
        assert child.data.tags["winner"] == str(result["winner"]["genotype"] == f"itnas-seed{seed}").lower()
    assert json.loads((tmp_path / "sel" / "genotype.json").read_text())["name"] == "itnas-selected"
