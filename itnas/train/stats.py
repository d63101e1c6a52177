"""Model statistics (`itnas stats`): of an evaluation network, parameters (without and with the
auxiliary head) and multiply-accumulates of one forward pass, counted with torch's own
FlopCounterMode; of a search supernet, its weights and architecture parameters.

As the DARTS family counts them, MACs cover convolutions and the classifier (matrix products);
pooling, BatchNorm, ReLU, additions and concatenations are not counted.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from itnas.data.registry import get_spec
from itnas.search.policies import arch_param_count, build_policy
from itnas.search.supernet import SearchNetwork
from itnas.space import Genotype, search_primitives
from itnas.train.networks import PROTOCOL_DEFAULTS, build_network, count_params
from itnas.variants import Variant

log = logging.getLogger(__name__)


def count_macs(model: nn.Module, image_size: int, in_channels: int = 3) -> int:
    """MACs of one forward pass of a single image in evaluation mode (FlopCounterMode flops / 2)."""
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    x = torch.zeros(1, in_channels, image_size, image_size, device=param.device, dtype=param.dtype)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) // 2


def network_stats(genotype: Genotype, protocol: str, num_classes: int, image_size: int,
                  layers: int | None = None, init_channels: int | None = None,
                  in_channels: int = 3) -> dict[str, int]:
    """{"params", "params_with_aux", "macs"} of the evaluation network at `image_size`."""
    default_layers, default_channels = PROTOCOL_DEFAULTS[protocol]
    net = build_network(genotype, protocol, num_classes, layers or default_layers,
                        init_channels or default_channels, auxiliary=True, in_channels=in_channels)
    return {"params": count_params(net), "params_with_aux": count_params(net, with_aux=True),
            "macs": count_macs(net, image_size, in_channels)}


def dataset_stats(genotype: Genotype, dataset: str, layers: int | None = None,
                  init_channels: int | None = None) -> dict[str, int]:
    """`network_stats` at the protocol, classes and evaluation resolution of a registered dataset."""
    spec = get_spec(dataset)
    log.info("building the evaluation network of genotype %s for %s and counting its parameters and "
             "MACs (one forward pass on the CPU: up to a minute at ImageNet's 224 px)", genotype.hash(), spec.name)
    return network_stats(genotype, spec.protocol, spec.num_classes, spec.image_size, layers,
                         init_channels, spec.channels)


def supernet_stats(variant: Variant, dataset: str, layers: int | None = None,
                   init_channels: int | None = None) -> dict[str, int]:
    """Weight and architecture-parameter counts of the search supernet (`itnas stats --supernet`)."""
    spec = get_spec(dataset)
    primitives = search_primitives(variant.none_op)
    net = SearchNetwork(spec.num_classes, layers or 8, init_channels or 16, in_channels=spec.channels,
                        primitives=primitives)
    policy = build_policy(variant.gumbel, variant.transition, len(primitives))
    return {"weights": sum(p.numel() for p in net.parameters()), "arch_params": arch_param_count(policy)}
