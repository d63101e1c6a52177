"""The search variants of the paper's ablation (Table 2): one registry that the command line,
the search, the derivation, the tables, the tracking and the workflow all read.

A variant is a set of the three flags `arch.gumbel`, `arch.transition` and `arch.tiep`
(SPEC section 2): how the outer edges are weighted (softmax or annealed Gumbel-softmax),
whether the inner edges come from the inter-layer transition (Eq. 11), and how the genotype
is derived (TIEP, or the DARTS top-2 rule). A new variant is one more entry here; its
`settings` are extra `--set` overrides that `itnas search --variant NAME` adds (the config
keys a variant needs beyond the three flags). Flag sets outside the registry still run under
a stable, path-safe name (`name_for`).
"""

from __future__ import annotations

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
    settings: tuple[str, ...] = ()

    @property
    def flags(self) -> dict[str, bool]:
        return {"gumbel": self.gumbel, "transition": self.transition, "tiep": self.tiep}

    @property
    def derive_method(self) -> str:
        return method_for(self.transition, self.tiep)

    def overrides(self) -> list[str]:
        """The `--set` items that select this variant in a search config."""
        return [f"arch.{k}={str(v).lower()}" for k, v in self.flags.items()] + list(self.settings)


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("darts", False, False, False, "DARTS (our search)",
            "softmax on every edge, DARTS top-2 derivation"),
    Variant("gumbel", True, False, False, "Gumbel only (our search)",
            "annealed Gumbel-softmax on every edge, DARTS top-2"),
    Variant("gumbel_transition", True, True, False, "Gumbel + Transition (our search)",
            "Gumbel outer edges, transition inner edges, DARTS top-2"),
    Variant("itnas", True, True, True, "ITNAS (our search)",
            "Gumbel outer edges, transition inner edges, TIEP"),
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


def name_for(gumbel: bool, transition: bool, tiep: bool) -> str:
    """The registered name of a flag set, or a stable, path-safe one for other combinations."""
    flags = {"gumbel": gumbel, "transition": transition, "tiep": tiep}
    for variant in VARIANTS.values():
        if variant.flags == flags:
            return variant.name
    return "_".join(n for n, on in (("softmax", not gumbel), ("gumbel", gumbel),
                                    ("transition", transition), ("tiep", tiep)) if on)


def help_text() -> str:
    """The variants as `--help` lists them."""
    width = max(map(len, NAMES))
    return "\n".join(f"  {v.name:<{width}}  {v.summary}" for v in VARIANTS.values())
