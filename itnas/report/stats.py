"""The statistics the tables print: mean and sample standard deviation over runs, and the
difference of a row to the random cells with a bootstrap interval.

The interval (`difference_to_random`) is a percentile bootstrap of mean(row) - mean(random):
the row's runs (its training seeds) are resampled with replacement, and the random cells
hierarchically, first the cells and then each chosen cell's seeds, since random cells differ
from each other more than one cell's seeds do. 10,000 resamples from a fixed generator, so a
table is the same every time it is made. With two seeds (the smoke run) an interval is coarse:
it can only take the few values its resamples allow.

The claims table (report/claims.py) also uses t intervals: of one cell's mean over its training
seeds, and of a contrast of cell means (a difference, or a difference of differences) with
Welch's unequal variances and the Welch-Satterthwaite degrees of freedom.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np

from itnas.power import t_quantile

RESAMPLES = 10_000
LEVEL = 0.95


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) >= 2 else None)


def difference_to_random(row: Sequence[float], cells: Sequence[Sequence[float]],
                         resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """(mean(row) - mean(all random runs), low, high): the difference and its 95 % percentile
    bootstrap interval (module docstring). `cells` holds each random cell's runs (seeds)."""
    rng = np.random.default_rng(seed)
    a = np.asarray(row, dtype=float)
    b = [np.asarray(c, dtype=float) for c in cells if len(c)]
    if not len(a) or not b:
        raise ValueError("difference_to_random needs runs on both sides")
    observed = a.mean() - np.concatenate(b).mean()
    row_means = a[rng.integers(0, len(a), (resamples, len(a)))].mean(axis=1)
    picks = rng.integers(0, len(b), (resamples, len(b)))  # cells, then seeds within each
    if len({len(c) for c in b}) == 1:  # every cell has the same seeds (the tables' rule)
        grid = np.stack(b)
        seeds = rng.integers(0, grid.shape[1], (resamples, len(b), grid.shape[1]))
        random_means = grid[picks[..., None], seeds].mean(axis=(1, 2))
    else:
        random_means = np.array([np.concatenate([b[k][rng.integers(0, len(b[k]), len(b[k]))] for k in row]).mean()
                                 for row in picks])
    low, high = np.quantile(row_means - random_means, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(observed), float(low), float(high)


def contrast_interval(terms: Sequence[tuple[float, Sequence[float]]]) -> tuple[float, float, float] | None:
    """sum_i w_i mean(x_i) and its 95 % Welch t interval for (w_i, x_i) in `terms`; None when a
    term has fewer than two runs (no spread, no interval). One term is the t interval of a mean."""
    if not terms or any(len(x) < 2 for _, x in terms):
        return None
    estimate = sum(w * statistics.fmean(x) for w, x in terms)
    parts = [w * w * statistics.variance(x) / len(x) for w, x in terms]
    var = sum(parts)
    if var == 0:
        return estimate, estimate, estimate
    df = var ** 2 / sum(p * p / (len(x) - 1) for p, (_, x) in zip(parts, terms))
    half = t_quantile((1 + LEVEL) / 2, df) * var ** 0.5
    return estimate, estimate - half, estimate + half
