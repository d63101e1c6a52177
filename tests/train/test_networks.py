"""The evaluation networks: DARTS sizes, output shapes, auxiliary head and drop-path."""

from __future__ import annotations

import pytest
import torch

from itnas.genotypes import lookup
from itnas.space import CONCAT, Genotype
from itnas.train.networks import (
    AuxiliaryHeadCIFAR,
    AuxiliaryHeadImageNet,
    EvalCell,
    NetworkCIFAR,
    NetworkImageNet,
    build_network,
    count_params,
)

DARTS_V2 = lookup("DARTS_V2")


def test_darts_v2_cifar10_network_has_exactly_3349342_params_without_aux_head():
    net = build_network(DARTS_V2, "cifar", num_classes=10, layers=20, init_channels=36, auxiliary=True)
    assert count_params(net) == 3_349_342
    assert count_params(net, with_aux=True) > 3_349_342
    no_aux = build_network(DARTS_V2, "cifar", num_classes=10, layers=20, init_channels=36, auxiliary=False)
    assert sum(p.numel() for p in no_aux.parameters()) == 3_349_342


def test_protocol_defaults_are_20_cells_c36_and_14_cells_c48():
    cifar = build_network(DARTS_V2, "cifar", 10)
    imagenet = build_network(DARTS_V2, "imagenet", 1000)
    assert len(cifar.cells) == 20 and cifar.stem[0].out_channels == 3 * 36
    assert len(imagenet.cells) == 14 and imagenet.stem0[-2].out_channels == 48
    assert [i for i, c in enumerate(cifar.cells) if c.reduction] == [6, 13]
    assert [i for i, c in enumerate(imagenet.cells) if c.reduction] == [4, 9]


@pytest.mark.parametrize("protocol,size,aux_type", [("cifar", 16, AuxiliaryHeadCIFAR),
                                                    ("imagenet", 64, AuxiliaryHeadImageNet)])
@pytest.mark.parametrize("auxiliary", [True, False])
def test_output_shapes_with_and_without_aux_head(protocol, size, aux_type, auxiliary):
    net = build_network(DARTS_V2, protocol, num_classes=7, layers=5, init_channels=4, auxiliary=auxiliary)
    assert isinstance(net.auxiliary_head, aux_type) if auxiliary else net.auxiliary_head is None
    x = torch.randn(3, 3, size, size)
    net.train()
    logits, aux = net(x)
    assert logits.shape == (3, 7)
    assert (aux.shape == (3, 7)) if auxiliary else aux is None
    net.eval()
    logits, aux = net(x)
    assert logits.shape == (3, 7) and aux is None  # the head is for training only


def test_aux_heads_see_the_darts_resolutions_8px_cifar_and_7px_imagenet():
    # At the paper's resolutions the heads pool with DARTS's 5x5 window to 2x2.
    cifar = AuxiliaryHeadCIFAR(16, 10)
    assert cifar(torch.randn(2, 16, 8, 8)).shape == (2, 10)
    imagenet = AuxiliaryHeadImageNet(16, 10)
    assert imagenet(torch.randn(2, 16, 7, 7)).shape == (2, 10)
    # ImageNet's head keeps DARTS's missing BN after the 2x2 conv; CIFAR's has it.
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in cifar.modules()) == 2
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in imagenet.modules()) == 1


def test_imagenet_stem_reduces_by_eight_before_the_cells():
    net = NetworkImageNet(DARTS_V2, 5, layers=5, init_channels=4)
    s0, s1 = net._stems(torch.randn(1, 3, 224, 224))
    assert s0.shape[-1] == 56 and s1.shape[-1] == 28


def test_eval_network_pooling_has_no_batchnorm():
    cell = EvalCell(DARTS_V2, 8, 8, 8, reduction=True, reduction_prev=False)
    for op, (name, _) in zip(cell.ops, DARTS_V2.reduce):
        if "pool" in name:
            assert isinstance(op, (torch.nn.MaxPool2d, torch.nn.AvgPool2d))


def _all(op: str) -> Genotype:
    pairs = tuple((op, i) for node in range(4) for i in (0, 1))
    return Genotype(pairs, CONCAT, pairs, CONCAT)


# The cell takes the probability as a float (ops.drop_path) or, from the networks, as a 0-d tensor.
PROBS = [lambda p: p, lambda p: torch.tensor(p)]


@pytest.mark.parametrize("prob", PROBS, ids=["float", "tensor"])
def test_drop_path_never_touches_identity_edges(prob):
    cell = EvalCell(_all("skip_connect"), 4, 4, 4, reduction=False, reduction_prev=False).train()
    s0, s1 = torch.randn(6, 4, 8, 8), torch.randn(6, 4, 8, 8)
    torch.manual_seed(0)
    reference = cell(s0, s1, drop_prob=0.0)
    torch.manual_seed(0)
    assert torch.equal(cell(s0, s1, drop_prob=prob(0.9)), reference)


@pytest.mark.parametrize("prob", PROBS, ids=["float", "tensor"])
def test_drop_path_drops_other_edges_in_training_only(prob):
    cell = EvalCell(_all("sep_conv_3x3"), 4, 4, 4, reduction=False, reduction_prev=False)
    s0, s1 = torch.randn(64, 4, 8, 8), torch.randn(64, 4, 8, 8)
    cell.train()
    torch.manual_seed(0)
    kept = cell(s0, s1, drop_prob=0.0)
    torch.manual_seed(0)
    dropped = cell(s0, s1, drop_prob=prob(0.5))
    assert not torch.allclose(dropped, kept)
    # Whole samples of an edge are zeroed: with every edge dropped, a sample's node is exactly 0.
    torch.manual_seed(0)
    out = cell(s0, s1, drop_prob=prob(0.999))
    assert (out.flatten(1).abs().sum(1) == 0).any()
    cell.eval()
    assert torch.equal(cell(s0, s1, drop_prob=prob(0.5)), cell(s0, s1, drop_prob=0.0))


def test_drop_edge_keeps_the_expected_share_and_rescales():
    from itnas.train.networks import drop_edge

    torch.manual_seed(0)
    out = drop_edge(torch.ones(20000, 1, 1, 1), torch.tensor(0.3))
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.02
    assert torch.allclose(out[kept], torch.tensor(1 / 0.7))


def test_drop_masks_draw_every_edge_of_every_cell_at_once():
    from itnas.train.networks import drop_masks

    torch.manual_seed(0)
    masks = drop_masks(5, 4000, torch.tensor(0.25), torch.float64, torch.device("cpu"))
    assert masks.shape == (5, 4000, 1, 1, 1) and masks.dtype == torch.float64
    assert set(masks.unique().tolist()) == {0.0, 1 / 0.75}
    for edge in masks:  # each edge keeps its own 3/4 of the samples
        assert abs((edge != 0).double().mean().item() - 0.75) < 0.03
    assert not torch.equal(masks[0], masks[1])


def test_network_drop_path_zeroes_whole_samples_of_non_identity_edges():
    torch.manual_seed(0)
    net = build_network(_all("sep_conv_3x3"), "cifar", 4, layers=3, init_channels=4, auxiliary=False).train()
    x = torch.randn(4, 3, 16, 16)
    net.drop_path_prob = 0.99999  # every edge of every sample dropped: the cells output zeros
    logits, _ = net(x)
    assert torch.allclose(logits, net.classifier.bias.expand_as(logits))
    net.drop_path_prob = 0.5
    torch.manual_seed(3)
    a, _ = net(x)
    torch.manual_seed(3)
    b, _ = net(x)
    assert torch.equal(a, b)  # the draw follows the seed
    skip = build_network(_all("skip_connect"), "cifar", 4, layers=3, init_channels=4, auxiliary=False).train()
    # Stride-2 skips are FactorizedReduce convs, which drop; the normal cell's identities never do.
    assert [len(cell.droppable) for cell in skip.cells] == [0, 8, 8]
    first = []
    skip.cells[0].register_forward_hook(lambda module, args, out: first.append(out))
    skip(x)
    skip.drop_path_prob = 0.99999
    skip(x)
    assert torch.equal(first[0], first[1]) and first[0].abs().sum() > 0


def test_changing_drop_path_every_epoch_does_not_recompile_a_compiled_network():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    net = build_network(DARTS_V2, "cifar", 4, layers=3, init_channels=4, auxiliary=False).train()
    compiled = torch.compile(net, backend="eager")  # graph capture only: fast on CPU
    x = torch.randn(2, 3, 8, 8)
    for epoch in range(6):
        net.drop_path_prob = 0.2 * epoch / 6
        compiled(x)
    assert counters["stats"]["unique_graphs"] <= 2  # p = 0, then p > 0


def test_network_drop_path_is_random_in_training_and_off_in_eval():
    net = build_network(DARTS_V2, "cifar", 4, layers=5, init_channels=4, auxiliary=False, drop_path=0.5)
    x = torch.randn(4, 3, 8, 8)
    net.eval()
    first = net(x)[0]
    assert torch.equal(net(x)[0], first)
    net.drop_path_prob = 0.0
    assert torch.equal(net(x)[0], first)
    net.drop_path_prob = 0.5
    net.train()
    torch.manual_seed(1)
    a = net(x)[0]
    torch.manual_seed(2)
    b = net(x)[0]
    assert not torch.allclose(a, b)


def test_network_imagenet_class_refuses_odd_channels():
    from itnas.errors import UserError

    with pytest.raises(UserError, match="even init_channels"):
        NetworkImageNet(DARTS_V2, 10, layers=5, init_channels=5)
    assert isinstance(build_network(DARTS_V2, "cifar", 10, layers=5, init_channels=5), NetworkCIFAR)


def test_build_network_takes_a_dataset_spec_for_protocol_classes_and_channels():
    from itnas.data import get_spec

    assert count_params(build_network(DARTS_V2, get_spec("cifar10"))) == 3_349_342
    net = build_network(DARTS_V2, get_spec("synthetic-imagenet"), layers=5, init_channels=4)
    assert isinstance(net, NetworkImageNet) and net.classifier.out_features == 20
