"""Evaluation networks built from a genotype: the DARTS CIFAR network (stem, 20 cells, auxiliary
head at 2/3 depth) and the DARTS ImageNet network (two-stage stem, 14 cells, auxiliary head).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from itnas.errors import UserError
from itnas.ops import Identity, make_op, preprocess
from itnas.space import Genotype, cell_plan


class EvalCell(nn.Module):
    """A discrete cell: each intermediate node sums two ops applied to earlier nodes."""

    def __init__(self, genotype: Genotype, c_prev_prev: int, c_prev: int, channels: int,
                 reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0, self.preprocess1 = preprocess(c_prev_prev, c_prev, channels, reduction_prev,
                                                        affine=True)
        pairs, concat = genotype.cell(reduction)
        self.inputs = [index for _, index in pairs]
        self.concat = list(concat)
        # Only edges leaving the two cell inputs stride in a reduction cell.
        self.ops = nn.ModuleList(
            make_op(name, channels, 2 if reduction and index < 2 else 1, affine=True)
            for name, index in pairs)
        self.multiplier = len(self.concat)
        # Dropping an identity edge would remove the cell's residual path, which DARTS (and
        # everyone since) keeps intact; these are the edges drop-path may zero.
        self.droppable = [k for k, op in enumerate(self.ops) if not isinstance(op, Identity)]
        self._mask_of = {k: i for i, k in enumerate(self.droppable)}  # edge -> its row of `masks`

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float | torch.Tensor = 0.0,
                generator: torch.Generator | None = None, masks: torch.Tensor | None = None) -> torch.Tensor:
        """`drop_prob` as a 0-d tensor is applied unconditionally in training (see `drop_edge`);
        `masks` ([len(droppable), N, 1, 1, 1], from `drop_masks`) replaces the draw."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        if self.training and masks is None and isinstance(drop_prob, torch.Tensor):
            masks = drop_masks(len(self.droppable), s0.size(0), drop_prob, s0.dtype, s0.device, generator)
        for node in range(len(self.ops) // 2):
            total = 0
            for k in (2 * node, 2 * node + 1):
                h = self.ops[k](states[self.inputs[k]])
                if self.training and k in self._mask_of:
                    if masks is not None:
                        h = h * masks[self._mask_of[k]].to(h.dtype)
                    elif drop_prob > 0:
                        h = drop_path(h, drop_prob, generator)
                total = total + h
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)


def drop_masks(count: int, batch: int, drop_prob: torch.Tensor, dtype: torch.dtype, device: torch.device,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Drop-path multipliers of `count` edges at once, [count, batch, 1, 1, 1]: 0 for a dropped
    sample (probability `drop_prob`), 1 / (1 - drop_prob) for a kept one. A uniform draw below
    1 - p keeps a sample: the law of `drop_path`'s Bernoulli(1 - p). The probability is a
    0-d tensor, with no Python branch or float on its value, so a compiled network keeps one
    graph while it grows; and one draw for all edges costs four kernels instead of six per edge."""
    keep = 1.0 - drop_prob
    # `generator=None` is passed only when set: torch.compile's fake-tensor tracing of rand with a
    # symbolic batch size fails on an explicit generator argument (torch 2.14).
    extra = {} if generator is None else {"generator": generator}
    noise = torch.rand((count, batch, 1, 1, 1), dtype=torch.float32, device=device, **extra)
    return (noise < keep).to(dtype) / keep.to(dtype)


def drop_path(x: torch.Tensor, drop_prob: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero whole samples of a path with probability `drop_prob`, rescaling the survivors."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty((x.size(0), 1, 1, 1), dtype=x.dtype, device=x.device)
    mask.bernoulli_(keep, generator=generator)
    return x * mask / keep


def drop_edge(x: torch.Tensor, drop_prob: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """`drop_path` with the probability as a 0-d tensor (one edge's `drop_masks`)."""
    return x * drop_masks(1, x.size(0), drop_prob, x.dtype, x.device, generator)[0]


def _pool_to_2x2(x: torch.Tensor, stride: int) -> torch.Tensor:
    """DARTS pools the 8x8 (CIFAR) or 7x7 (ImageNet) map with a 5x5 window down to 2x2; at other
    resolutions (tiny test inputs, larger crops) adaptive pooling gives the same 2x2 map size."""
    size = x.shape[-1]
    if size >= 5 and (size - 5) // stride + 1 == 2 and x.shape[-2] == size:
        return F.avg_pool2d(x, 5, stride=stride, padding=0, count_include_pad=False)
    return F.adaptive_avg_pool2d(x, 2)


class _AuxiliaryHead(nn.Module):
    """ReLU, pool to 2x2, 1x1 conv to 128, 2x2 conv to 768, linear classifier."""

    pool_stride = 3
    bn_after_2x2 = True

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        layers: list[nn.Module] = [
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
        ]
        if self.bn_after_2x2:
            layers.append(nn.BatchNorm2d(768))
        layers.append(nn.ReLU(inplace=True))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _pool_to_2x2(self.relu(x), self.pool_stride)
        return self.classifier(self.features(x).flatten(1))


class AuxiliaryHeadCIFAR(_AuxiliaryHead):
    """Auxiliary classifier on the 8x8 map after the second reduction cell."""

    pool_stride = 3


class AuxiliaryHeadImageNet(_AuxiliaryHead):
    """Auxiliary classifier on the 7x7 map after the second reduction cell (ImageNet).

    DARTS left out the BN after the 2x2 conv here (a typo it kept for comparability); so do we,
    so parameter counts with the head match the family's.
    """

    pool_stride = 2
    bn_after_2x2 = False


class _EvalNetwork(nn.Module):
    """Cells stacked with reductions at 1/3 and 2/3 depth; shared by both protocols."""

    aux_head_type: type[nn.Module] = AuxiliaryHeadCIFAR

    def _build_cells(self, genotype: Genotype, layers: int, c_stem_out: int, channels: int,
                     stem_reduces: bool, num_classes: int, auxiliary: bool) -> None:
        if layers < 3:
            raise UserError(f"layers must be at least 3 (two reduction cells and a normal one), got {layers}")
        self.layers = layers
        self.aux_index = 2 * layers // 3
        # The probability lives in a buffer so that changing it every epoch does not make
        # torch.compile specialise on (and recompile for) each new value.
        self.register_buffer("_drop_prob", torch.zeros(()), persistent=False)
        self._drop_on = False
        c_prev_prev, c_prev = c_stem_out, c_stem_out
        self.cells = nn.ModuleList()
        c_aux = c_prev
        for i, (c_curr, reduction, reduction_prev) in enumerate(cell_plan(layers, channels, stem_reduces)):
            cell = EvalCell(genotype, c_prev_prev, c_prev, c_curr, reduction, reduction_prev)
            self.cells.append(cell)
            c_prev_prev, c_prev = c_prev, cell.multiplier * c_curr
            if i == self.aux_index:
                c_aux = c_prev
        self._droppable_counts = [len(cell.droppable) for cell in self.cells]  # rows of each cell's masks
        self.auxiliary_head = self.aux_head_type(c_aux, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def _stems(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    @property
    def drop_path_prob(self) -> float:
        """Drop-path probability of every non-identity edge in training (0 = off)."""
        return self._drop_prob_value if hasattr(self, "_drop_prob_value") else 0.0

    @drop_path_prob.setter
    def drop_path_prob(self, value: float) -> None:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {value}")
        self._drop_prob_value = float(value)
        self._drop_prob.fill_(float(value))
        self._drop_on = value > 0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return (logits, auxiliary logits); the latter only in training mode with a head."""
        s0, s1 = self._stems(x)
        logits_aux = None
        masks = None
        if self.training and self._drop_on:
            # One draw for every droppable edge of every cell (cell by cell, edge by edge).
            counts = self._droppable_counts
            masks = drop_masks(sum(counts), x.size(0), self._drop_prob, s1.dtype, s1.device).split(counts)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, masks=masks[i] if masks is not None else None)
            if i == self.aux_index and self.auxiliary_head is not None and self.training:
                logits_aux = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits, logits_aux


class NetworkCIFAR(_EvalNetwork):
    """DARTS CIFAR network: 3x3 conv stem to 3C channels, then the cells."""

    aux_head_type = AuxiliaryHeadCIFAR

    def __init__(self, genotype: Genotype, num_classes: int, layers: int = 20, init_channels: int = 36,
                 auxiliary: bool = True, in_channels: int = 3):
        super().__init__()
        c_stem = 3 * init_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_stem),
        )
        self._build_cells(genotype, layers, c_stem, init_channels, False, num_classes, auxiliary)

    def _stems(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.stem(x)
        return s, s


class NetworkImageNet(_EvalNetwork):
    """DARTS ImageNet network: stem0 (two stride-2 convs) and stem1 (one) reduce 224 px to 28."""

    aux_head_type = AuxiliaryHeadImageNet

    def __init__(self, genotype: Genotype, num_classes: int, layers: int = 14, init_channels: int = 48,
                 auxiliary: bool = True, in_channels: int = 3):
        super().__init__()
        c = init_channels
        if c % 2:
            raise UserError(f"the ImageNet network needs an even init_channels, got {c}")
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, c // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(c // 2, c, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c),
        )
        # The first cell sees stem0 at twice stem1's resolution, hence reduction_prev=True.
        self._build_cells(genotype, layers, c, c, True, num_classes, auxiliary)

    def _stems(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0 = self.stem0(x)
        return s0, self.stem1(s0)


PROTOCOL_DEFAULTS = {"cifar": (20, 36), "imagenet": (14, 48)}


def build_network(genotype: Genotype, protocol: Any, num_classes: int | None = None,
                  layers: int | None = None, init_channels: int | None = None, auxiliary: bool = True,
                  drop_path: float = 0.0, in_channels: int | None = None) -> _EvalNetwork:
    """The evaluation network of `protocol`: 'cifar', 'imagenet', or a DatasetSpec (which also
    supplies the number of classes and input channels when they are not given).

    `layers`/`init_channels` default to the protocol's (20/36 CIFAR, 14/48 ImageNet);
    `drop_path` is the initial drop-path probability (the trainer grows it per epoch).
    """
    spec = None if isinstance(protocol, str) else protocol
    if spec is not None:
        protocol = spec.protocol
        num_classes = num_classes or spec.num_classes
        in_channels = in_channels or spec.channels
    if protocol not in PROTOCOL_DEFAULTS:
        raise UserError(f"unknown evaluation protocol '{protocol}' (expected cifar or imagenet)")
    if not num_classes:
        raise UserError("build_network needs num_classes (or a dataset spec)")
    default_layers, default_channels = PROTOCOL_DEFAULTS[protocol]
    cls = NetworkCIFAR if protocol == "cifar" else NetworkImageNet
    net = cls(genotype, num_classes, layers or default_layers, init_channels or default_channels,
              auxiliary, in_channels or 3)
    net.drop_path_prob = float(drop_path)
    return net


def count_params(module: nn.Module, with_aux: bool = False) -> int:
    """Trainable parameters; the auxiliary head is left out unless asked (as DARTS counts)."""
    return sum(p.numel() for name, p in module.named_parameters()
               if with_aux or not name.startswith("auxiliary_head."))
