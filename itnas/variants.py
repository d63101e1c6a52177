"""The search variants: one registry that the command line, the search, the derivation, the
tables, the tracking and the workflow all read.

A variant is a set of the three flags `arch.gumbel`, `arch.transition` and `arch.tiep` of the
paper's ablation (Table 2, SPEC section 2): how the outer edges are weighted (softmax or
annealed Gumbel-softmax), whether the inner edges come from the inter-layer transition (Eq. 11),
and how the genotype is derived (TIEP, or the DARTS top-2 rule); plus the search settings a
variant fixes beyond them (`none_op`, `second_order`: DARTS in its own setting). A new variant
is one more entry here. Flag sets outside the registry still run under a stable, path-safe name.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from itnas.errors import UserError

DERIVE_METHODS = ("tiep", "darts")


@dataclass(frozen=True)
class Variant:
    name: str
    gumbel: bool
    transition: bool
    tiep: bool
    title: str  # how tables and reports name the variant's searched cell
    summary: str  # one line for --help
    none_op: bool = False  # DARTS's eighth candidate op, `none` (arch.none_op)
    second_order: bool = False  # DARTS's unrolled architecture step (arch_optim.order)

    @property
    def flags(self) -> dict[str, bool]:
        return {"gumbel": self.gumbel, "transition": self.transition, "tiep": self.tiep}

    @property
    def derive_method(self) -> str:
        return method_for(self.transition, self.tiep)

    @property
    def search_settings(self) -> tuple[bool, bool, bool, bool]:
        """Everything that makes this variant's search what it is: all but the derivation (tiep),
        which reads a cell from a finished search and never touches the search itself."""
        return (self.gumbel, self.transition, self.none_op, self.second_order)

    @property
    def setting(self) -> str:
        """The search setting in words, for tables: '1st order, 7 ops' or '2nd order, 8 ops (none)'."""
        return describe_setting(self.second_order, self.none_op)

    def overrides(self) -> list[str]:
        """The `--set` items that select this variant in a search config (its settings only where
        it fixes them, so that a user's `--set arch_optim.order=...` still applies to the others)."""
        out = [f"arch.{k}={str(v).lower()}" for k, v in self.flags.items()]
        if self.none_op:
            out.append("arch.none_op=true")
        if self.second_order:
            out.append("arch_optim.order=second")
        return out

    def matches(self, cfg: dict) -> bool:
        """Whether a search config runs exactly this variant."""
        arch = cfg["arch"]
        return ({k: arch[k] for k in self.flags} == self.flags and arch["none_op"] == self.none_op
                and (cfg["arch_optim"]["order"] == "second") == self.second_order)


def describe_setting(second_order: bool, none_op: bool) -> str:
    return f"{'2nd' if second_order else '1st'} order, {8 if none_op else 7} ops" + (" (none)" if none_op else "")


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("darts", False, False, False, "DARTS (our search)",
            "softmax on every edge, DARTS top-2 derivation"),
    Variant("gumbel", True, False, False, "Gumbel only (our search)",
            "annealed Gumbel-softmax on every edge, DARTS top-2"),
    Variant("gumbel_transition", True, True, False, "Gumbel + Transition (our search)",
            "Gumbel outer edges, transition inner edges, DARTS top-2"),
    Variant("itnas", True, True, True, "ITNAS (our search)",
            "Gumbel outer edges, transition inner edges, TIEP"),
    Variant("darts_2nd", False, False, False, "DARTS, 2nd order with none (our search)",
            "DARTS in its own setting: softmax, 8 ops with none, second order", none_op=True, second_order=True),
)}
NAMES = tuple(VARIANTS)


def get(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise UserError(f"unknown variant '{name}' (expected one of: {', '.join(NAMES)})") from None


def method_for(transition: bool, tiep: bool) -> str:
    """The derivation of a flag set: TIEP needs the transitions; everything else the DARTS rule."""
    return "tiep" if (transition and tiep) else "darts"


def variant_of(cfg: dict) -> str:
    """The registered variant a search config runs: the one it matches exactly, else the one of
    its three flags (its other settings then differ, which metrics.json records), else a stable,
    path-safe name of the flags."""
    for variant in VARIANTS.values():
        if variant.matches(cfg):
            return variant.name
    return name_for(cfg["arch"]["gumbel"], cfg["arch"]["transition"], cfg["arch"]["tiep"])


def name_for(gumbel: bool, transition: bool, tiep: bool) -> str:
    """The registered name of a flag set (the first, plain-setting variant that has it), or a
    stable, path-safe one for other combinations."""
    flags = {"gumbel": gumbel, "transition": transition, "tiep": tiep}
    for variant in VARIANTS.values():
        if variant.flags == flags:
            return variant.name
    return "_".join(n for n, on in (("softmax", not gumbel), ("gumbel", gumbel),
                                    ("transition", transition), ("tiep", tiep)) if on)


def flags_of(name: str) -> dict[str, bool] | None:
    """The three flags of a variant name: a registered variant's, or those `name_for` made the
    name from; None for any other name."""
    if name in VARIANTS:
        return dict(VARIANTS[name].flags)
    for gumbel, transition, tiep in itertools.product((False, True), repeat=3):
        if name_for(gumbel, transition, tiep) == name:
            return {"gumbel": gumbel, "transition": transition, "tiep": tiep}
    return None


def search_of(name: str) -> str:
    """The search a variant's cells are derived from: the first registered variant with the same
    search settings (`Variant.search_settings`), e.g. itnas -> gumbel_transition, which differ only
    in how a cell is derived. Variants that share a search share one run per seed; that run's
    folder and `itnas search --variant` carry this name."""
    settings = get(name).search_settings
    return next(v.name for v in VARIANTS.values() if v.search_settings == settings)


def sharing(search: str, among: Iterable[str] = NAMES) -> list[str]:
    """The variants among `among` whose cells are derived from search `search` (in registry order)."""
    chosen = set(among)
    return [v for v in NAMES if v in chosen and search_of(v) == search]


def help_text() -> str:
    """The variants as `--help` lists them."""
    width = max(map(len, NAMES))
    return "\n".join(f"  {v.name:<{width}}  {v.summary}" for v in VARIANTS.values())
