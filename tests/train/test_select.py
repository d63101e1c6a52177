"""Short-training selection: the held-out part of the training set decides, never the test set."""

from __future__ import annotations

import json

import pytest

import itnas.train.select as select_mod
from itnas.cli import main
from itnas.genotypes import lookup, resolve_genotype
from itnas.space import load_genotype
from itnas.train.loop import Trainer
from itnas.train.select import select
from tests.train.tiny import tensor_data, tiny_config

TINY = ["--set", "data.batch_size=16", "--set", "model.layers=5", "--set", "model.init_channels=4", "--set", "runtime.workers=0",
        "--set", "data.max_train_samples=40", "--set", "data.max_test_samples=8", "--set", "selection.epochs=1"]


def test_selection_picks_the_genotype_with_the_higher_held_out_accuracy(tmp_path, monkeypatch):
    scores = {"DARTS_V1": 71.0, "DARTS_V2": 64.0}

    def fake_score(cfg, genotype, label, data, out, seed, ctx, device, **tracking):
        assert cfg["epochs"] == 3  # the selection's epoch budget, not the full recipe's
        return {"valid_top1_acc": scores[label], "valid_top1_err": 100 - scores[label]}

    monkeypatch.setattr(select_mod, "score_candidate", fake_score)
    cfg = tiny_config("selection.epochs=3")
    candidates = [(lookup("DARTS_V2"), "DARTS_V2"), (lookup("DARTS_V1"), "DARTS_V1")]
    result = select(cfg, candidates, tensor_data(), tmp_path, seed=0)
    assert result["winner"]["genotype"] == "DARTS_V1" and result["epochs"] == 3
    on_disk = json.loads((tmp_path / "selection.json").read_text())
    assert on_disk["winner"]["hash"] == lookup("DARTS_V1").hash()
    assert [c["valid_top1_acc"] for c in on_disk["candidates"]] == [64.0, 71.0]
    assert load_genotype(tmp_path / "genotype.json") == lookup("DARTS_V1")
    scores.update(DARTS_V1=50.0)
    assert select(cfg, candidates, tensor_data(), tmp_path / "again", 0)["winner"]["genotype"] == "DARTS_V2"


def test_the_selection_records_its_label_and_the_winner_s_search_seed_in_one_key(tmp_path, monkeypatch):
    scores = {"itnas-seed0": 60.0, "itnas-seed3": 70.0, "random1": 80.0}
    monkeypatch.setattr(select_mod, "score_candidate",
                        lambda cfg, g, label, *a, **k: {"valid_top1_acc": scores[label],
                                                        "valid_top1_err": 100 - scores[label]})
    monkeypatch.setenv("ITNAS_LABEL", "gumbel")  # the environment carries no label any more
    cfg = tiny_config("selection.epochs=1")
    searched = [(lookup("DARTS_V2"), "itnas-seed0"), (lookup("DARTS_V1"), "itnas-seed3")]
    result = select(cfg, searched, tensor_data(), tmp_path / "a", seed=0)
    on_disk = json.loads((tmp_path / "a" / "selection.json").read_text())
    assert on_disk["winner_search_seed"] == 3 and on_disk["label"] == "itnas" == result["label"]
    assert json.loads((tmp_path / "a" / "genotype.json").read_text())["name"] == "itnas-selected"
    # random search: the label is given, and a random winner came from no search
    cells = [(lookup("DARTS_V2"), "random0"), (lookup("DARTS_V1"), "random1")]
    scores["random0"] = 10.0
    select(cfg, cells, tensor_data(), tmp_path / "r", seed=0, label="random_search")
    on_disk = json.loads((tmp_path / "r" / "selection.json").read_text())
    assert on_disk["label"] == "random_search" and on_disk["winner"]["genotype"] == "random1"
    assert on_disk["winner_search_seed"] is None
    assert json.loads((tmp_path / "r" / "genotype.json").read_text())["name"] == "random_search-selected"


def test_selection_trains_each_candidate_in_its_own_resumable_folder(tmp_path, monkeypatch):
    cfg = tiny_config("selection.epochs=1")
    candidates = [(lookup("DARTS_V2"), "DARTS_V2"), (lookup("DARTS_V1"), "DARTS_V1")]
    result = select(cfg, candidates, tensor_data(), tmp_path, seed=0)
    for row in result["candidates"]:
        run = tmp_path / "candidates" / row["hash"]
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["epochs"] == 1 and "valid_top1_err" in metrics and "test_top1_err" not in metrics
        assert row["valid_top1_acc"] == pytest.approx(100 - metrics["valid_top1_err"])
    # A rerun finds both candidates finished and trains nothing.
    monkeypatch.setattr(Trainer, "train_epoch", lambda self, epoch: pytest.fail("retrained"))
    again = select(cfg, candidates, tensor_data(), tmp_path, seed=0)
    assert again["candidates"] == result["candidates"]


def test_select_cli_scores_on_the_training_set_only(tmp_path, standin_root, monkeypatch, capsys):
    import itnas.train.select as selection

    splits = []
    real = selection.build_dataset

    def spy(name, root, split, augment, cutout=0):
        splits.append(split)
        return real(name, root, split, augment, cutout)

    monkeypatch.setattr(selection, "build_dataset", spy)
    genotype_file = tmp_path / "mine.json"
    genotype_file.write_text(json.dumps(resolve_genotype("DARTS_V1")[0].to_json()))
    rc = main(["-q", "select", "--config", "config/recipes/train_cifar.yaml", "--genotypes", "DARTS_V2",
               str(genotype_file), "--dataset", "synthetic-cifar10", "--seed", "0", "--out", str(tmp_path / "sel"),
               "--data-root", str(standin_root), *TINY, "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert set(splits) == {"train"}  # the test split is never built
    assert result["train_size"] == 32 and result["holdout_size"] == 8 and result["epochs"] == 1
    assert [c["genotype"] for c in result["candidates"]] == ["DARTS_V2", "mine"]
    assert result["winner"]["genotype"] in ("DARTS_V2", "mine")
    assert load_genotype(tmp_path / "sel" / "genotype.json").hash() == result["winner"]["hash"]


def test_selection_epochs_must_exceed_the_warmup(tmp_path, capsys):
    rc = main(["select", "--config", "config/recipes/train_cifar.yaml", "--genotypes", "DARTS_V2", "--dataset",
               "synthetic-cifar10", "--seed", "0", "--out", str(tmp_path), "--set", "optim.warmup_epochs=2",
               "--set", "selection.epochs=2"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "selection.epochs" in err
