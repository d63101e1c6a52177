"""The report's figures: cell drawings whose edge labels cover no node, and search curves that
draw a temperature only where the search had one, in the words the captions use."""

from __future__ import annotations

import pytest

from itnas.genotypes import PUBLISHED
from itnas.report.plots import ACCURACY_HALVES, _figure, draw_cell, search_curves


def _overlap(a, b) -> bool:
    return min(a.x1, b.x1) > max(a.x0, b.x0) and min(a.y1, b.y1) > max(a.y0, b.y0)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_cell_drawings_keep_edge_labels_off_the_nodes(name):
    genotype = PUBLISHED[name][0].to_json()
    fig = _figure(11, 9.6)
    for ax, cell in zip(fig.subplots(2, 1), ("normal", "reduce")):
        nodes, labels = draw_cell(ax, genotype[cell], genotype[f"{cell}_concat"], cell)
        assert sorted(t.get_text() for t in labels) == sorted(op for op, _ in genotype[cell])
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        boxes = [node.get_bbox_patch().get_window_extent(renderer) for node in nodes]
        for label in labels:
            extent = label.get_window_extent(renderer)
            assert not any(_overlap(extent, box) for box in boxes), f"{name} {cell}: {label.get_text()}"


def _history(tau: bool) -> list[dict]:
    return [{"epoch": e, "train_acc": 10.0 * e, "val_acc": 9.0 * e, "entropy_normal": 1.9 - 0.1 * e,
             "entropy_reduce": 1.8 - 0.1 * e, **({"tau": 5.0 - 2.25 * (e - 1)} if tau else {})} for e in (1, 2, 3)]


@pytest.mark.parametrize("tau", [True, False])
def test_search_curves_draw_a_temperature_only_for_searches_that_have_one(tau):
    fig = search_curves({"seed 0": _history(tau), "seed 1": _history(tau)}, "title")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == (["Gumbel temperature"] if tau else []) + ["edge-weight entropy", "accuracy"]
    accuracy = fig.axes[-1]
    legend = [t.get_text() for t in accuracy.get_legend().get_texts()]
    assert legend == ["seed 0", "seed 1", "architecture half", "weight half"]
    assert set(ACCURACY_HALVES.values()) == {"weight half", "architecture half"}
    entropy = [t.get_text() for t in fig.axes[-2].get_legend().get_texts()]
    assert entropy == ["seed 0", "seed 1", "normal cell", "reduction cell"]
