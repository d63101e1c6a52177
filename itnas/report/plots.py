"""Figures with matplotlib only (Agg, no graphviz): searched cells and search curves.

`draw_genotype` draws a genotype's normal and reduction cells as DAGs: the two cell inputs on
the left, intermediate nodes 0..3 in the middle, the concatenated output on the right, each
kept edge labelled with its operation at a point of the edge where the label covers no node
and no other label. `plot_search_curves` draws, per epoch and per seed, the Gumbel temperature
(for searches that have one), the entropy of the edge weights of the normal and reduction
cells and the accuracy on the weight half and the architecture half of the training set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from itnas.errors import UserError
from itnas.files import atomic_open
from itnas.space import PRIMITIVES

# One colour per primitive, in the order of space.PRIMITIVES (which names them).
OP_COLOURS = dict(zip(PRIMITIVES, ("#1f77b4", "#17becf", "#2ca02c", "#8c564b", "#ff7f0e", "#d62728", "#7f7f7f"),
                      strict=True))


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


# Where along an edge (Bezier parameter t) its label may go, most preferred first.
_LABEL_T = (0.5, 0.42, 0.58, 0.34, 0.66, 0.27, 0.73, 0.2, 0.8)


def draw_cell(ax, pairs: Sequence[Sequence[Any]], concat: Sequence[int], title: str) -> tuple[list, list]:
    """Draw one cell (8 (op, input) pairs, two per node 2..5) on a matplotlib Axes; returns its
    node texts and its edge-label texts."""
    from matplotlib.patches import FancyArrowPatch

    pos = _node_positions()
    labels = {0: "$c_{k-2}$", 1: "$c_{k-1}$", 2: "0", 3: "1", 4: "2", 5: "3", "out": "$c_{k}$"}
    fills = {0: "#c7e9c0", 1: "#c7e9c0", "out": "#fdd0a2"}
    nodes = [ax.text(x, y, labels[node], ha="center", va="center", fontsize=10, zorder=5,
                     bbox={"boxstyle": "round,pad=0.35", "fc": fills.get(node, "#deebf7"), "ec": "black"})
             for node, (x, y) in pos.items()]
    for node in concat:
        (x0, y0), (x1, y1) = pos[int(node)], pos["out"]
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=10,
                                     lw=0.8, color="#aaaaaa", linestyle="--", shrinkA=12,
                                     shrinkB=14, zorder=1))
    seen: dict[tuple[int, int], int] = {}
    edges = []
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
        edges.append((op, colour, (x0, y0), (x1, y1), rad))
    ax.set_xlim(-1.0, 14.0)
    ax.set_ylim(-4.4, 4.4)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=11)
    return nodes, _label_edges(ax, edges, nodes)


def _label_edges(ax, edges: list, nodes: list) -> list:
    """Put each edge's operation on the edge, at the first point (in `_LABEL_T` order; long
    edges start nearer their end, where they part) whose label covers no node and no label
    placed before; where every point covers something, at the point that covers least."""
    ax.apply_aspect()
    renderer = ax.figure.canvas.get_renderer()
    taken = []
    for node in nodes:
        node.update_bbox_position_size(renderer)  # the box around the node's text, as drawn
        taken.append(node.get_bbox_patch().get_window_extent(renderer))
    texts = []
    for op, colour, (x0, y0), (x1, y1), rad in edges:
        # Points of the quadratic Bezier arc3 draws (control point: the midpoint moved by rad
        # times the perpendicular).
        dx, dy = x1 - x0, y1 - y0
        cx, cy = (x0 + x1) / 2 + rad * dy, (y0 + y1) / 2 - rad * dx
        order = _LABEL_T if dx <= 2.7 else sorted(_LABEL_T, key=lambda t: abs(t - 0.62))
        text = ax.text(0, 0, op, fontsize=7, color=colour, ha="center", va="center", zorder=4,
                       bbox={"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.85})
        best = None
        for t in order:
            point = ((1 - t) ** 2 * x0 + 2 * t * (1 - t) * cx + t ** 2 * x1,
                     (1 - t) ** 2 * y0 + 2 * t * (1 - t) * cy + t ** 2 * y1)
            text.set_position(point)
            box = text.get_window_extent(renderer).expanded(1.08, 1.25)
            covered = sum(_overlap(box, other) for other in taken)
            if best is None or covered < best[0]:
                best = (covered, point, box)
            if covered == 0:
                break
        text.set_position(best[1])
        taken.append(best[2])
        texts.append(text)
    return texts


def _overlap(a, b) -> float:
    """Area shared by two display-space boxes."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


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
    """Per-epoch curves of one variant's searches (`search_curves`) in a PNG, PDF or SVG."""
    _save(search_curves(histories, title), out)
    return Path(out)


def search_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]], title: str | None = None):
    """The figure of one variant's searches; `histories` maps a label (seed) to records.

    Panels: the Gumbel temperature (only when the histories record one: the softmax variant has
    none), the mean entropy of the edge weights (normal cell solid, reduction cell dashed) and
    the accuracy (architecture half solid, weight half dashed); colour tells the seeds apart."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    with_tau = any(_series(records, "tau")[0] for records in histories.values())
    panels = [("tau", "Gumbel temperature", "tau")] if with_tau else []
    panels += [("entropy", "edge-weight entropy", "nats (mean over edges)"), ("accuracy", "accuracy", "%")]
    fig = _figure(4.4 * len(panels), 3.8)
    axes = dict(zip((name for name, _, _ in panels), fig.subplots(1, len(panels))))
    styles = {"entropy": (("entropy_normal", "-", "normal cell"), ("entropy_reduce", "--", "reduction cell")),
              "accuracy": (("val_acc", "-", ACCURACY_HALVES["val_acc"]),
                           ("train_acc", "--", ACCURACY_HALVES["train_acc"]))}
    if with_tau:
        styles["tau"] = (("tau", "-", None),)
    seeds = []
    for k, (label, records) in enumerate(histories.items()):
        colour = f"C{k % 10}"
        seeds.append(Line2D([], [], color=colour, marker=".", label=label))
        for name, series in styles.items():
            for key, style, _ in series:
                xs, ys = _series(records, key)
                if xs:
                    axes[name].plot(xs, ys, color=colour, linestyle=style, marker=".")
    for name, heading, ylabel in panels:
        ax = axes[name]
        ax.set_title(heading, fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if not ax.lines:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
            continue
        kinds = [Line2D([], [], color="black", linestyle=style, label=what)
                 for _, style, what in styles[name] if what]
        ax.legend(handles=seeds + kinds, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig


# What the search's two accuracies are measured on (the words the caption uses too): the
# weight half trains the weights (train_acc, during the epoch), the architecture half trains
# the architecture and is evaluated after the epoch (val_acc).
ACCURACY_HALVES = {"train_acc": "weight half", "val_acc": "architecture half"}
