"""The 3PL item-response curve SEELE uses to pick a hint rate: fit to (hint rate, accuracy) points, invert.

    f(p) = b + (1 − b) / (1 + exp(−k (p + μ)))

``p`` is the hint rate (fraction of the reference solution shown), ``b`` the guessing floor, ``k`` the slope
and ``−μ`` the hint rate at the curve's midpoint. :func:`fit_3pl` fits it by bounded nonlinear least squares
(scipy), :func:`invert_3pl` solves ``f(p) = a*`` in closed form.

Departures from the paper (whose fit details are not spelled out): the fit starts from a few initial guesses
and keeps the lowest cost (a single start sometimes stalls on a flat plateau with four or five points); μ is
bounded to [−5, 4] (the midpoint stays within a few units of [0, 1]), and k's lower bound is 1e-3, not 0.
Pure numpy/scipy: no torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

K_MAX = 50.0  # paper: k ∈ (0, 50]
K_MIN = 1e-3
MU_BOUNDS = (-5.0, 4.0)
B_MAX = 1.0 - 1e-6  # paper: b ∈ [0, 1)


@dataclass(frozen=True)
class ThreePL:
    k: float  # slope
    mu: float  # −μ is the midpoint hint rate
    b: float  # floor: accuracy with no hint at all, asymptotically

    def __call__(self, p: float | np.ndarray) -> float | np.ndarray:
        return self.b + (1.0 - self.b) / (1.0 + np.exp(-self.k * (np.asarray(p) + self.mu)))


def average_points(points: Iterable[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Merge points with the same hint rate (rounds that reused a rate): their accuracies are averaged."""
    acc: dict[float, list[float]] = {}
    for p, a in points:
        acc.setdefault(round(float(p), 9), []).append(float(a))
    ps = sorted(acc)
    return np.array(ps, dtype=np.float64), np.array([np.mean(acc[p]) for p in ps], dtype=np.float64)


def with_anchors(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Add (0, 0) and (1, 1) unless hint rates 0 and 1 were actually tried (SEELE's memory C_x)."""
    tried = {round(float(p), 9) for p, _ in points}
    out = list(points)
    if 0.0 not in tried:
        out.append((0.0, 0.0))
    if 1.0 not in tried:
        out.append((1.0, 1.0))
    return out


def fit_3pl(points: Iterable[tuple[float, float]]) -> ThreePL:
    """Least-squares fit of the 3PL curve to (hint rate, accuracy) points, bounded k ∈ [1e-3, 50], b ∈ [0, 1)."""
    from scipy.optimize import least_squares

    p, a = average_points(points)
    if len(p) == 0:
        raise ValueError("fit_3pl needs at least one point")

    def resid(theta: np.ndarray) -> np.ndarray:
        k, mu, b = theta
        return b + (1.0 - b) / (1.0 + np.exp(np.clip(-k * (p + mu), -60, 60))) - a

    lo = [K_MIN, MU_BOUNDS[0], 0.0]
    hi = [K_MAX, MU_BOUNDS[1], B_MAX]
    # The midpoint guess: the first rate whose accuracy reaches one half (else the middle).
    above = p[a >= 0.5]
    mid = float(above[0]) if len(above) else 0.5
    starts = [(5.0, -mid, 0.0), (10.0, -0.5, 0.0), (1.0, -mid, min(float(a.min()), 0.9)), (25.0, -mid, 0.0)]
    best = None
    for x0 in starts:
        x0 = np.clip(np.array(x0, dtype=np.float64), lo, np.array(hi) - 1e-9)
        res = least_squares(resid, x0, bounds=(lo, hi), method="trf")
        if best is None or res.cost < best.cost - 1e-12:
            best = res
    k, mu, b = (float(v) for v in best.x)
    return ThreePL(k, mu, b)


def invert_3pl(curve: ThreePL, target: float) -> float:
    """The hint rate where the curve reaches ``target``, clipped to [0, 1]; 0 when ``target ≤ b``.

    f(p) = a*  ⇔  p = −μ − (1/k) · ln((1 − a*) / (a* − b)).
    """
    if target <= curve.b:
        return 0.0  # the problem is already at or above the target without any hint
    if target >= 1.0:
        return 1.0
    p = -curve.mu - math.log((1.0 - target) / (target - curve.b)) / curve.k
    return float(min(max(p, 0.0), 1.0))
