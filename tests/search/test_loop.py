"""`itnas search` end to end on tiny shapes: outputs, determinism, resume, refusals."""

import json

import pytest

from itnas import variants
from itnas.cli import main
from itnas.formats import load_arch_state
from itnas.run import RunDir
from itnas.space import load_genotype
from tests.search.same_run import assert_same_search, die_after_first_checkpoint

SEARCH = ["search", "--config", "config/recipes/search.yaml"]


def _search(out, overrides, variant="itnas", seed=0, extra=()):
    args = SEARCH + ["--variant", variant, "--seed", str(seed), "--out", str(out)]
    for item in overrides:
        args += ["--set", item]
    return main(args + list(extra))


@pytest.mark.parametrize("variant", ["itnas", "darts", "darts_2nd"])
def test_search_leaves_the_contracted_files(tmp_path, tiny_search_overrides, variant):
    assert _search(tmp_path / "run", tiny_search_overrides, variant) == 0
    run = tmp_path / "run"
    state = load_arch_state(run / "arch_state.json")
    assert ("transition" in state["normal"]) == (variant == "itnas")
    load_genotype(run / "genotype.json")
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "epochs", "wall_clock_s",
                "device", "peak_memory_bytes", "genotype", "variant", "standin"):
        assert metrics[key] is not None, key
    assert metrics["standin"] is True and metrics["epochs"] == 2
    assert metrics["method"] == ("tiep" if variant == "itnas" else "darts")
    assert metrics["variant"] == variant
    none_op = variant == "darts_2nd"  # DARTS in its own setting: 8 ops with `none`, second order
    assert (state["primitives"][0] == "none") is none_op and metrics["ops"] == (8 if none_op else 7)
    assert metrics["arch_order"] == ("second" if none_op else "first")
    assert all(op != "none" for op, _ in load_genotype(run / "genotype.json").normal)
    # the genotype file records the temperature it was derived at, as the arch state does
    assert json.loads((run / "genotype.json").read_text())["derive_tau"] == state["derive_tau"] == metrics["derive_tau"]
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    if not variants.get(variant).gumbel:  # softmax alone: no temperature to record
        assert "tau" not in history[0] and metrics["tau_final"] is None
    else:
        assert history[0]["tau"] == 5.0 and history[1]["tau"] == pytest.approx(0.5)
    assert {"entropy_normal", "entropy_reduce", "genotype", "train_acc", "val_acc"} <= set(history[0])
    # each epoch's step timing: the warm-up steps inside the epoch's time
    assert 1 <= history[0]["warmup_steps"] <= 3 and 0 < history[0]["warmup_s"] <= history[0]["epoch_s"]


def test_two_runs_with_the_same_seed_give_identical_arch_states(tmp_path, tiny_search_overrides):
    for name in ("a", "b"):
        assert _search(tmp_path / name, tiny_search_overrides) == 0
    a = (tmp_path / "a" / "arch_state.json").read_text()
    assert a == (tmp_path / "b" / "arch_state.json").read_text()
    assert _search(tmp_path / "c", tiny_search_overrides, seed=1) == 0
    assert a != (tmp_path / "c" / "arch_state.json").read_text()


def test_resumed_search_is_bit_identical_to_an_uninterrupted_one(tmp_path, tiny_search_overrides, monkeypatch):
    assert _search(tmp_path / "straight", tiny_search_overrides) == 0

    original = RunDir.end_epoch
    die_after_first_checkpoint(monkeypatch)
    assert _search(tmp_path / "resumed", tiny_search_overrides) == 130
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    monkeypatch.setattr(RunDir, "end_epoch", original)
    assert _search(tmp_path / "resumed", tiny_search_overrides) == 0

    assert_same_search(tmp_path / "straight", tmp_path / "resumed")


def test_second_order_search_differs_from_first_order(tmp_path, tiny_search_overrides):
    states = {}
    for order in ("first", "second"):
        overrides = tiny_search_overrides + [f"arch_optim.order={order}", "epochs=1"]
        assert _search(tmp_path / order, overrides, variant="gumbel_transition") == 0
        states[order] = load_arch_state(tmp_path / order / "arch_state.json")
    assert states["second"]["variant"] == "gumbel_transition"
    # Same seed, same batches: only the architecture gradient differs (Hessian-vector term).
    assert states["first"]["normal"]["alpha"] != states["second"]["normal"]["alpha"]


def test_a_folder_holding_another_run_is_refused(tmp_path, tiny_search_overrides, capsys):
    overrides = tiny_search_overrides + ["epochs=1"]
    assert _search(tmp_path / "run", overrides) == 0
    capsys.readouterr()
    assert _search(tmp_path / "run", overrides, seed=5) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "other settings" in err


def test_tiep_without_transition_is_refused_before_any_work(tmp_path, tiny_search_overrides, capsys):
    args = SEARCH + ["--seed", "0", "--out", str(tmp_path / "run"), "--set", "arch.tiep=true",
                     "--set", "arch.transition=false"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "arch.tiep" in err and "config/recipes/search.yaml" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override,needle", [
    ("epochs=0", "key 'epochs'"),
    ("epochs=-3", "key 'epochs'"),
    ("epohcs=3", "key 'epohcs': unknown key"),
    ("model.layers=two", "key 'model.layers'"),
    ("dataset=mnist", "unknown dataset 'mnist'"),
    ("arch_optim.order=third", "key 'arch_optim.order'"),
    ("tau.end=9", "key 'tau.end'"),
])
def test_bad_search_settings_end_in_one_line(tmp_path, capsys, override, needle):
    args = SEARCH + ["--seed", "0", "--out", str(tmp_path / "run"), "--set", override]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("variant,arch", [("itnas", 1712), ("darts", 196)])
def test_supernet_stats_json(capsys, variant, arch):
    assert main(["stats", "--supernet", "--variant", variant, "--dataset", "cifar10", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["arch_params"] == arch
    assert 1_900_000 < stats["weights"] < 2_000_000  # the DARTS CIFAR supernet has ~1.93 M weights


def test_each_step_updates_the_architecture_on_its_half_first_then_the_weights_on_theirs(
        tmp_path, tiny_search_overrides, monkeypatch):
    """run_search's order and data (DARTS): every step first an architecture step on the batch
    of the architecture half (the second order also reads the weight batch), then a weight step
    on the batch of the weight half. The halves are marked: weight images 0, architecture 1."""
    import torch

    from itnas.search import loop
    from itnas.search.batches import search_batches as real_batches

    def marked(cfg, seed, rt):
        real = real_batches(cfg, seed, rt)

        class Marked:
            spec, steps_per_epoch = real.spec, 2

            def epoch(self, epoch):
                for _ in range(self.steps_per_epoch):
                    yield ((torch.zeros(8, 3, 32, 32), torch.zeros(8, dtype=torch.long)),
                           (torch.ones(8, 3, 32, 32), torch.ones(8, dtype=torch.long)))

            def validation(self):
                return real.validation()

        return Marked()

    calls = []
    arch_step, weight_step = loop.Searcher.arch_step, loop.Searcher.weight_step

    def spy_arch(self, x_val, y_val, x_tr, y_tr):
        calls.append(("arch", float(x_val.mean()), float(x_tr.mean())))
        return arch_step(self, x_val, y_val, x_tr, y_tr)

    def spy_weight(self, x, y):
        calls.append(("weight", float(x.mean())))
        return weight_step(self, x, y)

    monkeypatch.setattr(loop, "search_batches", marked)
    monkeypatch.setattr(loop.Searcher, "arch_step", spy_arch)
    monkeypatch.setattr(loop.Searcher, "weight_step", spy_weight)
    assert _search(tmp_path / "run", tiny_search_overrides + ["epochs=1"]) == 0
    assert calls == [("arch", 1.0, 0.0), ("weight", 0.0)] * 2


def test_the_derivation_temperature_reaches_the_searchs_genotype_and_its_stability_report(
        tmp_path, tiny_search_overrides):
    from itnas.search.derive import derive

    assert _search(tmp_path / "run", tiny_search_overrides + ["epochs=1", "derive.tau=2"]) == 0
    run = tmp_path / "run"
    state = load_arch_state(run / "arch_state.json")
    metrics = json.loads((run / "metrics.json").read_text())
    assert state["derive_tau"] == 2.0 and metrics["derive_tau"] == 2.0
    assert load_genotype(run / "genotype.json") == derive(state, "tiep", 2.0)
    assert set(metrics["genotype_stability"]) == {"0.5", "1", "2"}
    assert metrics["genotype_stability"]["2"] == {"edges": 0, "ops": 0, "genotype_hash": metrics["genotype_hash"]}
    # auto: an itnas search derives at its final temperature, tau.end
    assert _search(tmp_path / "auto", tiny_search_overrides + ["epochs=1", "tau.end=0.7", "tau.start=1"]) == 0
    assert load_arch_state(tmp_path / "auto" / "arch_state.json")["derive_tau"] == 0.7


def test_a_search_records_its_stability_under_every_rule_its_state_supports(tmp_path, tiny_search_overrides):
    """itnas derives with TIEP from gumbel_transition's searches (variants.search_of), so that
    search must report TIEP's stability too, each rule against the cell it derives itself."""
    from itnas.search.derive import derive, stability

    taus = [0.5, 1.0, 2.0]
    for variant, methods in (("gumbel_transition", {"darts", "tiep"}), ("darts", {"darts"})):
        run = tmp_path / variant
        assert _search(run, tiny_search_overrides + ["epochs=1", "derive.tau=2"], variant) == 0
        state = load_arch_state(run / "arch_state.json")
        metrics = json.loads((run / "metrics.json").read_text())
        by_method = metrics["genotype_stability_by_method"]
        assert set(by_method) == methods
        assert by_method["darts"] == metrics["genotype_stability"]  # the search's own rule
        for method in methods:
            assert by_method[method] == stability(state, method, derive(state, method, 2.0), taus)
    assert "tiep" not in by_method  # the darts search learned no transitions: no TIEP cell to report
    # TIEP's report is its own, not the top-2 rule's relabelled: at tau = 2 it is measured against
    # TIEP's own cell, so nothing changes there
    tiep = json.loads((tmp_path / "gumbel_transition" / "metrics.json").read_text())
    assert tiep["genotype_stability_by_method"]["tiep"]["2"]["edges"] == 0
    assert tiep["genotype_stability_by_method"]["tiep"]["2"]["genotype_hash"] == derive(
        load_arch_state(tmp_path / "gumbel_transition" / "arch_state.json"), "tiep", 2.0).hash()
