"""How many runs a comparison needs: the normal approximation of a two-sided test at 5 % with
80 % power, and Student's t quantiles for the intervals the claims table prints. Torch-free and
numpy-free: the planner (itnas/plan.py) and the claims table (report/claims.py) share it.

For a difference of two means with per-run spread sigma and n runs per arm:

    n = 2 (z_0.975 + z_0.8)^2 sigma^2 / delta^2,   power(n) = Phi(delta / (sigma sqrt(2/n)) - z_0.975)

and for a general contrast sum_i w_i mean_i with n runs of each term, 2 becomes sum_i w_i^2.
A level against its margin m is the one-sample form: n = (z_0.975 + z_0.8)^2 sigma^2 / m^2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

ALPHA = 0.05
POWER = 0.80
_NORMAL = NormalDist()
Z_ALPHA = _NORMAL.inv_cdf(1 - ALPHA / 2)  # 1.96
Z_POWER = _NORMAL.inv_cdf(POWER)  # 0.84


def runs_needed(sigma: float, delta: float, weights: Sequence[float] = (1.0, -1.0)) -> int | None:
    """Runs per term for 80 % power at alpha 0.05 to tell the contrast `weights` (default: a
    difference of two means) from zero when its true value is `delta`; None when delta is 0."""
    if delta == 0:
        return None
    if sigma == 0:
        return 1
    k = sum(w * w for w in weights)
    return max(1, math.ceil(k * (Z_ALPHA + Z_POWER) ** 2 * sigma ** 2 / delta ** 2 - 1e-9))


def power(sigma: float, delta: float, n: int, weights: Sequence[float] = (1.0, -1.0)) -> float:
    """The power of the test above with n runs per term (two-sided, the far tail ignored)."""
    if n < 1:
        return 0.0
    if sigma == 0:
        return 1.0 if delta else ALPHA
    se = sigma * math.sqrt(sum(w * w for w in weights) / n)
    return _NORMAL.cdf(abs(delta) / se - Z_ALPHA)


def level_runs_needed(sigma: float, margin: float) -> int:
    """Runs for an interval of the mean to fall within +- margin of the true value with 80 %
    power (the one-sample form)."""
    if sigma == 0:
        return 1
    return max(1, math.ceil((Z_ALPHA + Z_POWER) ** 2 * sigma ** 2 / margin ** 2 - 1e-9))


def level_power(sigma: float, margin: float, n: int) -> float:
    if n < 1:
        return 0.0
    if sigma == 0:
        return 1.0
    return _NORMAL.cdf(margin / (sigma / math.sqrt(n)) - Z_ALPHA)


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile (df > 0, also fractional, as Welch's df are): Newton's method on its
    distribution function, integrated numerically; within 1e-6 of the printed tables."""
    if not 0 < p < 1 or df <= 0:
        raise ValueError("t_quantile needs 0 < p < 1 and df > 0")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    x = _NORMAL.inv_cdf(p)
    for _ in range(100):
        step = (_t_cdf(x, df) - p) / _t_density(x, df)
        x = max(x - step, x / 2)  # the distribution function is concave here: never overshoot below 0
        if abs(step) < 1e-10:
            break
    return x


def _t_density(t: float, df: float) -> float:
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_c - (df + 1) / 2 * math.log1p(t * t / df))


def _t_cdf(x: float, df: float) -> float:
    """P(T <= x) for x >= 0: 1/2 plus the density integrated from 0 to x, by Simpson's rule in
    u = atan(t), where the integrand is smooth for every df and the interval bounded."""
    steps = 1000
    h = math.atan(x) / steps
    total = 0.0
    for k in range(steps + 1):
        u = k * h
        total += _t_density(math.tan(u), df) / math.cos(u) ** 2 * (1 if k in (0, steps) else 4 if k % 2 else 2)
    return 0.5 + total * h / 3
