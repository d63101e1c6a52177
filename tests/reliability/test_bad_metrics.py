"""`itnas tables` accepts nothing impossible: metrics that cannot be right, a metrics file whose
own dataset, seed or label disagrees with the folder it sits in, arguments it does not know.
Each ends in one line naming the file or argument, and no table is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from itnas.cli import main
from tests.reliability.errors import one_line_error

REPO = Path(__file__).resolve().parents[2]


def _write(path: Path, obj: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return str(path)


def _runs(root: Path, search: dict | None = None, train: dict | None = None) -> list[str]:
    """One search of `itnas` and one training of its cell on CIFAR-10, as the workflow lays them
    out, with `search` / `train` changing their metrics."""
    s = root / "search" / "cifar10" / "itnas" / "seed0" / "metrics.json"
    t = root / "train" / "cifar10" / "itnas" / "seed0" / "metrics.json"
    search_metrics = {"variant": "itnas", "seed": 0, "dataset": "cifar10", "gpu_hours": 7.0,
                      "val_acc": 88.0, "train_acc": 90.0, "weights": 1_900_000, "arch_params": 2_000}
    train_metrics = {"test_top1_err": 2.5, "test_top5_err": 0.1, "params": 3_300_000, "macs": 528_000_000,
                     "dataset": "cifar10", "seed": 0, "gpu_hours": 30.0,
                     "label": "itnas", "genotype": "itnas-selected"}
    return ["--search", _write(s, {**search_metrics, **(search or {})}),
            "--train", _write(t, {**train_metrics, **(train or {})})]


def _tables(tmp_path: Path, *args: str) -> list[str]:
    return ["tables", "--published", str(REPO / "config/paper/published.yaml"), "--out-dir",
            str(tmp_path / "tables"), *args]


def test_sound_metrics_make_tables(tmp_path):
    assert main(_tables(tmp_path, *_runs(tmp_path / "results"))) == 0
    assert (tmp_path / "tables" / "table1.md").exists()


IMPOSSIBLE = {
    "error above 100 %": ({}, {"test_top1_err": 250.0}, "'test_top1_err' is 250.0, not a percentage (0 to 100)"),
    "negative error": ({}, {"test_top5_err": -1}, "'test_top5_err' is -1, not a percentage"),
    "accuracy above 100 %": ({"val_acc": 100.5}, {}, "'val_acc' is 100.5, not a percentage"),
    "negative parameter count": ({}, {"params": -3_300_000}, "'params' is -3300000; it cannot be negative"),
    "negative MACs": ({}, {"macs": -1}, "'macs' is -1; it cannot be negative"),
    "negative search cost": ({"gpu_hours": -7.0}, {}, "'gpu_hours' is -7.0; it cannot be negative"),
    "NaN error": ({}, {"test_top1_err": float("nan")}, "not valid JSON (NaN is not allowed)"),
    "infinite cost": ({"gpu_hours": float("inf")}, {}, "not valid JSON (Infinity is not allowed)"),
    "error missing": ({}, {"test_top1_err": None}, "'test_top1_err' missing or not a finite number"),
    "error as text": ({}, {"test_top1_err": "2.5"}, "'test_top1_err' missing or not a finite number"),
    "search of another dataset": ({"dataset": "cifar100"}, {}, "records dataset 'cifar100' but sits in the folder"),
    "search of another seed": ({"seed": 3}, {}, "records seed 3 but sits in the folder of search cifar10/itnas/seed0"),
    "search of another variant": ({"variant": "darts"}, {}, "records variant 'darts'"),
    "training of another dataset": ({}, {"dataset": "svhn"}, "records dataset 'svhn'"),
    "training of another seed": ({}, {"seed": 1}, "records seed 1"),
    "training of another cell": ({}, {"label": "DARTS_V2"}, "records label 'DARTS_V2'"),
    "training of another variant's cell": ({}, {"label": "darts"}, "records label 'darts'"),
    # one form per record: the label a training was filed under, never its cell's name in its place
    "training labelled by its cell's name": ({}, {"label": "itnas-selected"}, "records label 'itnas-selected'"),
}


@pytest.mark.parametrize("case", list(IMPOSSIBLE))
def test_metrics_that_cannot_be_right_are_refused_naming_the_file(tmp_path, capsys, case):
    search, train, needle = IMPOSSIBLE[case]
    args = _runs(tmp_path / "results", search, train)
    err = one_line_error(capsys, main(_tables(tmp_path, *args)))
    bad = args[1] if search else args[3]
    assert f"{bad}: " in err and needle in err, err
    assert not (tmp_path / "tables").exists()


@pytest.mark.parametrize("args,needle", [
    (["--benchmark", "foo=bar"], "--benchmark 'foo=bar': unknown benchmark 'foo' (expected one of: cifar10"),
    (["--benchmark", "cifar10=mnist"], "--benchmark 'cifar10=mnist': unknown dataset 'mnist'"),
    (["--benchmark", "cifar10"], "--benchmark 'cifar10': expected BENCH=DATASET"),
    (["--benchmark", "cifar10=cifar10", "--benchmark", "cifar10=synthetic-cifar10"],
     "cifar10 is already played by cifar10"),
    (["--tables", "table9"], "unknown table 'table9'"),
])
def test_arguments_tables_does_not_know_are_refused(tmp_path, capsys, args, needle):
    err = one_line_error(capsys, main(_tables(tmp_path, *_runs(tmp_path / "results"), *args)))
    assert needle in err, err
    assert not (tmp_path / "tables").exists()
