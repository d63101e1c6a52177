"""`itnas train` end to end on the CIFAR-10 stand-in: outputs, resume, one-line refusals, --help."""

from __future__ import annotations

import json

import pytest
import torch

from itnas.checkpoint import load_checkpoint, load_weights
from itnas.cli import build_parser, main
from tests.train.tiny import kill_at_epoch

TINY = ["--set", "epochs=1", "--set", "data.batch_size=16", "--set", "model.layers=5", "--set", "model.init_channels=4",
        "--set", "data.max_train_samples=32", "--set", "data.max_test_samples=16", "--set", "runtime.workers=0"]


def _train(out, root, *extra, genotype="DARTS_V2", dataset="synthetic-cifar10", config="config/recipes/train_cifar.yaml"):
    return main(["-q", "train", "--config", config, "--genotype", genotype, "--dataset", dataset,
                 "--seed", "0", "--out", str(out), "--data-root", str(root), *TINY, *extra])


def test_train_cli_leaves_the_contracted_files_and_resumes(tmp_path, standin_root, capsys):
    assert _train(tmp_path / "run", standin_root, "--json") == 0
    printed = json.loads(capsys.readouterr().out)
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert printed == metrics
    assert metrics["dataset"] == "synthetic-cifar10" and metrics["standin"] is True
    assert metrics["train_size"] == 32 and metrics["test_size"] == 16
    assert {"checkpoint.pt", "history.json", "model.pt", "metrics.json", "genotype.json"} <= \
        {p.name for p in run.iterdir()}
    before = load_weights(run / "model.pt")
    # Running the finished command again resumes at the end: nothing retrained, same results.
    assert _train(run, standin_root) == 0
    after = load_weights(run / "model.pt")
    assert all((before[k] == after[k]).all() for k in before)
    assert json.loads((run / "metrics.json").read_text())["test_top1_err"] == metrics["test_top1_err"]
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 1


def _bad_genotype(tmp_path, case):
    pairs = [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]] * 4
    if case == "unknown op":
        pairs[3] = ["conv_9x9", 1]
    elif case == "wrong arity":
        pairs[5] = ["sep_conv_3x3", 1, 2]
    elif case == "input out of range":
        pairs[2] = ["sep_conv_3x3", 3]  # node 3 may read nodes 0..2 only
    elif case == "seven pairs":
        pairs = pairs[:7]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"normal": pairs, "reduce": [["max_pool_3x3", 0]] * 8}))
    return path


@pytest.mark.parametrize("case,needle", [("unknown op", "unknown op 'conv_9x9'"),
                                         ("wrong arity", "[op, input] pair"),
                                         ("input out of range", "input 3 out of range"),
                                         ("seven pairs", "must list 8")])
@pytest.mark.parametrize("command", ["train", "stats"])
def test_bad_genotypes_are_refused_in_one_line(tmp_path, capsys, case, needle, command):
    path = _bad_genotype(tmp_path, case)
    if command == "train":
        rc = _train(tmp_path / "run", tmp_path, genotype=str(path))
    else:
        rc = main(["stats", "--genotype", str(path), "--dataset", "cifar10", "--json"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and needle in err and str(path) in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("extra,needle", [
    (["--set", "epochz=3"], "key 'epochz': unknown key"),
    (["--set", "optim.lr_schedule=step"], "key 'optim.lr_schedule': expected one of cosine, linear"),
    (["--set", "data.batch_size=0"], "key 'data.batch_size'"),
    (["--set", "optim.warmup_epochs=5"], "key 'optim.warmup_epochs'"),
    (["--nproc", "3"], "not divisible by the 3 processes"),
    (["--set", "protocol=imagenet"], "follows the cifar protocol"),
    (["--set", "runtime.pipeline=gpu"], "key 'runtime.pipeline': expected one of auto, loader, device"),
])
def test_bad_settings_end_in_one_line_naming_the_file_and_key(tmp_path, capsys, extra, needle):
    rc = _train(tmp_path / "run", tmp_path, *extra)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and needle in err and "train_cifar.yaml" in err, err


def test_unknown_dataset_and_genotype_are_one_line_errors(tmp_path, capsys):
    assert _train(tmp_path / "a", tmp_path, dataset="mnist") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown dataset 'mnist'" in err
    assert _train(tmp_path / "b", tmp_path, genotype="NO_SUCH_CELL") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown genotype 'NO_SUCH_CELL'" in err


def test_missing_data_is_a_one_line_error(tmp_path, capsys):
    assert _train(tmp_path / "run", tmp_path / "empty") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "synthetic-cifar10" in err


@pytest.mark.parametrize("command,flags", [
    ("train", ["--config", "--set", "--genotype", "--dataset", "--seed", "--out", "--data-root",
               "--device", "--nproc", "--json"]),
    ("select", ["--config", "--set", "--genotypes", "--dataset", "--seed", "--out", "--data-root",
                "--device", "--nproc", "--json"]),
    ("stats", ["--genotype", "--supernet", "--variant", "--dataset", "--layers", "--init-channels", "--json"]),
])
def test_help_explains_every_flag(command, flags):
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    text = sub.format_help()
    for flag in flags:
        assert flag in text, flag
    documented = [a for a in sub._actions if a.option_strings and a.dest != "help"]
    assert all(a.help for a in documented)


def test_cli_resume_after_a_kill_is_bit_identical_with_augmentation_and_drop_path(tmp_path, standin_root,
                                                                                   monkeypatch):
    # Cutout 16, crops, flips and drop-path all on; two epochs.
    two = ["--set", "epochs=2", "--set", "model.drop_path_prob=0.3"]
    assert _train(tmp_path / "straight", standin_root, *two) == 0

    kill_at_epoch(monkeypatch, 1)
    assert _train(tmp_path / "resumed", standin_root, *two) == 130
    monkeypatch.undo()
    # The resumed half even uses worker processes: augmentation depends on (seed, epoch, image) only.
    assert _train(tmp_path / "resumed", standin_root, *two, "--set", "runtime.workers=2") == 0
    a = load_weights(tmp_path / "straight" / "model.pt")
    b = load_weights(tmp_path / "resumed" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ma, mb = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("straight", "resumed"))
    assert (ma["test_top1_err"], ma["test_loss"], ma["train_loss"]) == (mb["test_top1_err"], mb["test_loss"],
                                                                       mb["train_loss"])


def test_amp_channels_last_and_deterministic_run_on_cpu_when_asked(tmp_path, standin_root):
    import torch

    try:
        assert _train(tmp_path / "run", standin_root, "--set", "runtime.amp=true", "--set", "runtime.channels_last=true",
                      "--set", "runtime.deterministic=true") == 0
    finally:
        torch.use_deterministic_algorithms(False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["amp"] is True and metrics["channels_last"] is True
    assert metrics["test_top1_err"] is not None


def test_device_pipeline_trains_and_resumes_identically_on_cpu_too(tmp_path, standin_root, monkeypatch):
    two = ["--set", "epochs=2", "--set", "runtime.pipeline=device", "--set", "runtime.max_batch_per_process=8"]
    assert _train(tmp_path / "straight", standin_root, *two) == 0
    kill_at_epoch(monkeypatch, 1)
    assert _train(tmp_path / "resumed", standin_root, *two) == 130
    monkeypatch.undo()
    assert _train(tmp_path / "resumed", standin_root, *two) == 0
    a = load_weights(tmp_path / "straight" / "model.pt")
    b = load_weights(tmp_path / "resumed" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    metrics = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert metrics["train_size"] == 32 and metrics["accumulation"] == 2


def test_device_pipeline_is_refused_for_imagenet_in_one_line(tmp_path, capsys):
    rc = _train(tmp_path / "run", tmp_path, "--set", "runtime.pipeline=device", "--set", "optim.warmup_epochs=0",
                dataset="synthetic-imagenet", config="config/recipes/train_imagenet.yaml")
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "key 'runtime.pipeline'" in err and "train_imagenet.yaml" in err
