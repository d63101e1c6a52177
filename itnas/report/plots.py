"""Figures with matplotlib only (Agg, no graphviz): searched cells and search curves.

`draw_genotype` draws a genotype's normal and reduction cells side by side as DAGs: the two
cell inputs on the left, intermediate nodes 0..3 in the middle, the concatenated output on
the right, each kept edge labelled with its operation. `plot_search_curves` draws, per epoch
and per seed, the Gumbel temperature, the entropy of the edge weights and the accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from itnas.errors import UserError
from itnas.files import atomic_open

OP_COLOURS = {
    "sep_conv_3x3": "#1f77b4",
    "sep_conv_5x5": "#17becf",
    "dil_conv_3x3": "#2ca02c",
    "dil_conv_5x5": "#8c564b",
    "avg_pool_3x3": "#ff7f0e",
    "max_pool_3x3": "#d62728",
    "skip_connect": "#7f7f7f",
}


def _figure(width: float, height: float):
    """A Figure on an Agg canvas: no pyplot state, no display needed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def figure_format(out: str | Path) -> str:
    """The format matplotlib writes `out` in, from its extension (none: png); one line naming the
    file when matplotlib cannot write that format."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fmt = Path(out).suffix.lstrip(".").lower() or "png"
    supported = FigureCanvasAgg.get_supported_filetypes()
    if fmt not in supported:
        raise UserError(f"{out}: matplotlib cannot write .{fmt} files (use one of: "
                        f"{', '.join(f'.{ext}' for ext in sorted(supported))})")
    return fmt


def _save(fig, out: str | Path) -> None:
    fmt = figure_format(out)
    with atomic_open(out, "wb") as fh:
        fig.savefig(fh, format=fmt, bbox_inches="tight")


def _node_positions() -> dict[int | str, tuple[float, float]]:
    """Inputs on the left, intermediate nodes in a zigzag left to right, the output on the right."""
    pos: dict[int | str, tuple[float, float]] = {0: (0.0, 1.7), 1: (0.0, -1.7)}
    for k, node in enumerate(range(2, 6)):
        pos[node] = (2.6 + 2.6 * k, 0.75 if k % 2 == 0 else -0.75)
    pos["out"] = (13.0, 0.0)
    return pos


def _bend(src: int, dst: int, pos: dict, repeat: int) -> float:
    """arc3 curvature of an edge: straight between neighbours, otherwise bowed away from the
    middle line (above for edges leaving the upper half) so it clears the nodes in between."""
    (x0, y0), (x1, _) = pos[src], pos[dst]
    steps = (x1 - x0) / 2.6
    if steps <= 1.01 and repeat == 0:
        return 0.0
    magnitude = 0.06 + 0.1 * steps + 0.12 * repeat
    return -magnitude if y0 > 0 else magnitude  # arc3: negative bends left-to-right edges upward


def draw_cell(ax, pairs: Sequence[Sequence[Any]], concat: Sequence[int], title: str) -> None:
    """Draw one cell (8 (op, input) pairs, two per node 2..5) on a matplotlib Axes."""
    from matplotlib.patches import FancyArrowPatch

    pos = _node_positions()
    labels = {0: "$c_{k-2}$", 1: "$c_{k-1}$", 2: "0", 3: "1", 4: "2", 5: "3", "out": "$c_{k}$"}
    fills = {0: "#c7e9c0", 1: "#c7e9c0", "out": "#fdd0a2"}
    for node, (x, y) in pos.items():
        ax.text(x, y, labels[node], ha="center", va="center", fontsize=10, zorder=5,
                bbox={"boxstyle": "round,pad=0.35", "fc": fills.get(node, "#deebf7"), "ec": "black"})
    for node in concat:
        (x0, y0), (x1, y1) = pos[int(node)], pos["out"]
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=10,
                                     lw=0.8, color="#aaaaaa", linestyle="--", shrinkA=12,
                                     shrinkB=14, zorder=1))
    seen: dict[tuple[int, int], int] = {}
    for k, (op, src) in enumerate(pairs):
        dst = 2 + k // 2
        src = int(src)
        repeat = seen.get((src, dst), 0)  # the same edge kept twice: bend the second one more
        seen[(src, dst)] = repeat + 1
        rad = _bend(src, dst, pos, repeat)
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        colour = OP_COLOURS.get(op, "black")
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), connectionstyle=f"arc3,rad={rad}",
                                     arrowstyle="-|>", mutation_scale=12, lw=1.6, color=colour,
                                     shrinkA=14, shrinkB=14, zorder=2))
        # A point of the quadratic Bezier arc3 draws (control point: the midpoint moved by rad
        # times the perpendicular); long edges get their label nearer the end, where they part.
        dx, dy = x1 - x0, y1 - y0
        cx, cy = (x0 + x1) / 2 + rad * dy, (y0 + y1) / 2 - rad * dx
        t = 0.5 if dx <= 2.7 else 0.62
        mx = (1 - t) ** 2 * x0 + 2 * t * (1 - t) * cx + t ** 2 * x1
        my = (1 - t) ** 2 * y0 + 2 * t * (1 - t) * cy + t ** 2 * y1
        ax.text(mx, my, op, fontsize=7, color=colour, ha="center", va="center", zorder=4,
                bbox={"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.85})
    ax.set_xlim(-1.0, 14.0)
    ax.set_ylim(-4.4, 4.4)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=11)


def draw_genotype(genotype, out: str | Path, title: str | None = None) -> Path:
    """Normal and reduction cell of a Genotype (or its JSON dict) in one PNG/PDF/SVG."""
    data = genotype.to_json() if hasattr(genotype, "to_json") else dict(genotype)
    fig = _figure(11, 9.6)
    top, bottom = fig.subplots(2, 1)
    draw_cell(top, data["normal"], data.get("normal_concat", [2, 3, 4, 5]), "normal cell")
    draw_cell(bottom, data["reduce"], data.get("reduce_concat", [2, 3, 4, 5]), "reduction cell")
    if title:
        fig.suptitle(title, fontsize=12)
    _save(fig, out)
    return Path(out)


def _series(records: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for k, rec in enumerate(records):
        value = rec.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            xs.append(float(rec.get("epoch", k + 1)))
            ys.append(float(value))
    return xs, ys


def plot_search_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]], out: str | Path,
                       title: str | None = None) -> Path:
    """Per-epoch curves of one variant's searches; `histories` maps a label (seed) to records."""
    fig = _figure(13, 3.8)
    ax_tau, ax_ent, ax_acc = fig.subplots(1, 3)
    colours = [f"C{k}" for k in range(10)]
    for k, (label, records) in enumerate(histories.items()):
        c = colours[k % len(colours)]
        xs, ys = _series(records, "tau")
        if xs:
            ax_tau.plot(xs, ys, color=c, marker=".", label=label)
        for key, style in (("entropy_normal", "-"), ("entropy_reduce", "--")):
            xs, ys = _series(records, key)
            if xs:
                ax_ent.plot(xs, ys, color=c, linestyle=style, marker=".",
                            label=f"{label} {key.split('_')[1]}")
        for key, style in (("train_acc", "--"), ("val_acc", "-")):
            xs, ys = _series(records, key)
            if xs:
                ax_acc.plot(xs, ys, color=c, linestyle=style, marker=".",
                            label=f"{label} {key.split('_')[0]}")
    from matplotlib.ticker import MaxNLocator

    for ax, name, ylabel in ((ax_tau, "Gumbel temperature", "tau"),
                             (ax_ent, "edge-weight entropy", "nats (mean over edges)"),
                             (ax_acc, "accuracy", "%")):
        ax.set_title(name, fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    _save(fig, out)
    return Path(out)
