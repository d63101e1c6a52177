"""`itnas stats`: parameter counts and MACs of evaluation networks, and the supernet branch."""

from __future__ import annotations

import json

import pytest
import torch

from itnas.cli import main
from itnas.genotypes import lookup
from itnas.train.networks import build_network
from itnas.train.stats import count_macs, network_stats


def _stats(capsys, *args):
    assert main(["stats", *args]) == 0
    return capsys.readouterr().out


def test_stats_json_has_the_contracted_keys_and_counts_match_the_network(capsys):
    out = json.loads(_stats(capsys, "--genotype", "DARTS_V1", "--dataset", "synthetic-cifar10",
                            "--layers", "5", "--init-channels", "4", "--json"))
    assert set(out) == {"params", "params_with_aux", "macs"}
    net = build_network(lookup("DARTS_V1"), "cifar", 10, 5, 4, auxiliary=True)
    head = sum(p.numel() for p in net.auxiliary_head.parameters())
    assert out["params_with_aux"] == sum(p.numel() for p in net.parameters())
    assert out["params"] == out["params_with_aux"] - head
    assert out["macs"] == count_macs(net, 32)


def test_stats_defaults_are_the_cifar_protocol_and_darts_v2_has_3349342_params(capsys):
    out = json.loads(_stats(capsys, "--genotype", "DARTS_V2", "--dataset", "cifar10", "--json"))
    assert out["params"] == 3_349_342
    assert 500e6 < out["macs"] < 560e6  # DARTS-family CIFAR cells: about half a GMAC


def test_stats_without_json_prints_one_readable_line(capsys):
    out = _stats(capsys, "--genotype", "DARTS_V2", "--dataset", "synthetic-cifar10", "--layers", "5",
                 "--init-channels", "4")
    assert out.count("\n") == 1 and "params" in out and "MACs" in out and not out.startswith("{")


def test_imagenet_macs_are_counted_at_224_px():
    genotype = lookup("DARTS_V2")
    small = network_stats(genotype, "imagenet", 1000, 112, layers=5, init_channels=8)
    full = network_stats(genotype, "imagenet", 1000, 224, layers=5, init_channels=8)
    assert small["params"] == full["params"]
    # Convolutions scale with the pixel count; only the classifier does not.
    assert 3.5 * small["macs"] < full["macs"] < 4.1 * small["macs"]


def test_macs_count_convolutions_and_the_classifier_only():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8),
                              torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 4 * 4, 10))
    assert count_macs(net, 8) == 8 * 8 * 8 * 3 * 9 + 8 * 4 * 4 * 10


def test_count_macs_leaves_training_mode_and_statistics_alone():
    net = build_network(lookup("DARTS_V2"), "cifar", 10, 5, 4).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    count_macs(net, 16)
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_supernet_branch_calls_the_search_network_counter(capsys, monkeypatch):
    import itnas.train.stats

    seen = {}

    def fake(variant, dataset, layers, init_channels):
        seen.update(variant=variant.name, dataset=dataset, layers=layers, init_channels=init_channels)
        return {"weights": 10, "arch_params": 2}

    monkeypatch.setattr(itnas.train.stats, "supernet_stats", fake)
    out = json.loads(_stats(capsys, "--supernet", "--variant", "itnas", "--dataset", "cifar10",
                            "--layers", "5", "--json"))
    assert out == {"weights": 10, "arch_params": 2}
    assert seen == {"variant": "itnas", "dataset": "cifar10", "layers": 5, "init_channels": None}


@pytest.mark.parametrize("args,needle", [
    (["--supernet", "--dataset", "cifar10"], "needs --variant"),
    (["--genotype", "DARTS_V2", "--variant", "itnas", "--dataset", "cifar10"], "goes with --supernet"),
    (["--genotype", "DARTS_V2", "--dataset", "cifar10", "--layers", "2"], "--layers 2"),
    (["--genotype", "DARTS_V2", "--dataset", "nope"], "unknown dataset 'nope'"),
])
def test_stats_misuse_is_a_one_line_error(capsys, args, needle):
    assert main(["stats", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err


def test_stats_says_what_it_does_before_the_long_part(capsys):
    assert main(["stats", "--genotype", "DARTS_V2", "--dataset", "synthetic-cifar10", "--layers", "5",
                 "--init-channels", "4"]) == 0
    assert "counting its parameters and MACs" in capsys.readouterr().err
