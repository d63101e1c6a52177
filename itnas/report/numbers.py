"""Numbers as the tables print them: mean and sample std over runs, and table cells that
remember their number so that each column gets one format."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) >= 2 else None
    return mean, std


class Num(str):
    """A table cell's text that remembers its number: the renderers give every number of a
    column one format (the most decimals any of its cells asks for, and enough for its smallest
    magnitude to show two significant digits, so a tiny stand-in network is not "0")."""

    value: float
    std: float | None
    digits: int
    sign: bool

    def __new__(cls, value: float, digits: int = 2, std: float | None = None, sign: bool = False) -> Num:
        cell = super().__new__(cls, _number_text(value, digits, std, sign))
        cell.value, cell.std, cell.digits, cell.sign = float(value), std, digits, sign
        return cell

    def text(self, digits: int) -> str:
        return _number_text(self.value, digits, self.std, self.sign)


def _number_text(value: float, digits: int, std: float | None, sign: bool) -> str:
    text = f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
    return text if std is None else f"{text} ± {std:.{digits}f}"


MAX_DIGITS = 4


def column_digits(cells: Iterable[Any]) -> int | None:
    """The decimals of a column's numbers (None: it holds none)."""
    numbers = [c for c in cells if isinstance(c, Num)]
    if not numbers:
        return None
    digits = max(c.digits for c in numbers)
    magnitudes = [abs(c.value) for c in numbers if not c.sign and c.value != 0]
    if magnitudes:  # two significant digits for the smallest (differences keep their decimals)
        digits = max(digits, min(MAX_DIGITS, 1 - math.floor(math.log10(min(magnitudes)))))
    return digits


def fmt_num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return Num(value, digits)


def fmt_pm(values: Sequence[float] | None, digits: int = 2) -> str:
    if not values:
        return "—"
    mean, std = mean_std(values)
    return Num(mean, digits, std)


def fmt_diff(values: Sequence[float] | None, paper: float | None) -> str:
    if not values or paper is None:
        return "—"
    return Num(statistics.fmean(values) - paper, 2, sign=True)


def fmt_interval(diff: tuple[float, float, float] | None) -> str:
    if diff is None:
        return "—"
    d, lo, hi = diff
    return f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]"



def millions(values: Sequence[float] | None, scale: float = 1e6) -> float | None:
    """The mean of `values` in millions (params, MACs), or None without values."""
    return statistics.fmean(values) / scale if values else None


def fmt_spread(values: Sequence[float]) -> str:
    if not values:
        return "—"
    return f"{fmt_pm(values)} ({min(values):.2f}–{max(values):.2f}, {len(values)})"
