"""The 3PL fit and its inversion (SEELE's hint-rate controller)."""

import numpy as np
import pytest

from rollout.strategies.irt import ThreePL, average_points, fit_3pl, invert_3pl, with_anchors


def test_fit_recovers_known_parameters():
    true = ThreePL(k=12.0, mu=-0.55, b=0.1)
    ps = np.linspace(0.0, 1.0, 11)
    fit = fit_3pl(list(zip(ps, true(ps))))
    assert fit.k == pytest.approx(12.0, rel=1e-3)
    assert fit.mu == pytest.approx(-0.55, abs=1e-4)
    assert fit.b == pytest.approx(0.1, abs=1e-4)


def test_fit_respects_bounds_on_a_step_function():
    # A perfect step wants an infinite slope: k stays at the bound 50, b in [0, 1).
    fit = fit_3pl([(0.0, 0.0), (0.4, 0.0), (0.6, 1.0), (1.0, 1.0)])
    assert 0 < fit.k <= 50.0 and 0.0 <= fit.b < 1.0
    assert fit(0.3) < 0.2 and fit(0.7) > 0.8


@pytest.mark.parametrize("target", [0.3, 0.5, 0.8])
def test_inversion_hits_the_target(target):
    curve = ThreePL(k=8.0, mu=-0.4, b=0.05)
    p = invert_3pl(curve, target)
    assert 0.0 <= p <= 1.0
    assert float(curve(p)) == pytest.approx(target, abs=1e-9)


def test_inversion_edge_cases():
    assert invert_3pl(ThreePL(5.0, -0.5, 0.6), 0.5) == 0.0  # a* ≤ b: no hint needed
    assert invert_3pl(ThreePL(50.0, -5.0, 0.0), 0.5) == 1.0  # midpoint beyond 1: clipped
    assert invert_3pl(ThreePL(50.0, 4.0, 0.0), 0.5) == 0.0  # midpoint below 0: clipped


def test_fit_then_invert_on_noisy_memory_lands_near_the_truth():
    true = ThreePL(k=10.0, mu=-0.6, b=0.0)
    pts = with_anchors([(0.9, float(true(0.9))), (0.7, float(true(0.7))), (0.55, float(true(0.55)))])
    p = invert_3pl(fit_3pl(pts), 0.5)
    assert p == pytest.approx(0.6, abs=0.03)


def test_anchors_and_averaging():
    assert sorted(with_anchors([(0.5, 0.5)])) == [(0.0, 0.0), (0.5, 0.5), (1.0, 1.0)]
    assert sorted(with_anchors([(0.0, 0.25), (1.0, 0.75)])) == [(0.0, 0.25), (1.0, 0.75)]
    p, a = average_points([(0.5, 0.0), (0.5, 1.0), (0.2, 0.25)])
    assert p.tolist() == [0.2, 0.5] and a.tolist() == [0.25, 0.5]
