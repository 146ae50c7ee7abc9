"""pass@k / avg@k against hand-computed values (Chen et al. 2021, eq. 1) and the edge cases."""

from __future__ import annotations

import doctest
import math
from fractions import Fraction

import pytest

from launch import passk
from launch.passk import aggregate, avg_at_k, count, pass_at_k


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (8, 1, 4, 0.5),  # 1 - C(7,4)/C(8,4) = 1 - 35/70
        (10, 3, 1, 0.3),  # pass@1 = c/n
        (10, 3, 5, 11 / 12),  # 1 - C(7,5)/C(10,5) = 1 - 21/252
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (5, 0, 1, 0.0),  # c = 0: never
        (5, 0, 5, 0.0),
        (5, 5, 1, 1.0),  # c = n: always
        (5, 5, 5, 1.0),
        (8, 2, 8, 1.0),  # n - c < k: every k-subset holds a correct answer
        (3, 1, 3, 1.0),  # n = k: pass@n is "any correct"
    ],
)
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_matches_exact_binomials_and_is_stable_for_large_n():
    for n in range(1, 13):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
                assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12), (n, c, k)
    # C(2000, 1000) overflows a float; the product form does not
    exact = 1 - Fraction(math.comb(1997, 1000), math.comb(2000, 1000))
    assert pass_at_k(2000, 3, 1000) == pytest.approx(float(exact), rel=1e-12)


def test_n_below_k_is_an_error_with_a_clear_message():
    with pytest.raises(ValueError, match=r"n = 2 samples is fewer than k = 4"):
        pass_at_k(2, 1, 4)
    with pytest.raises(ValueError, match=r"0 <= c <= n"):
        pass_at_k(4, 5, 2)
    with pytest.raises(ValueError, match=r"0 <= c <= n"):
        avg_at_k(4, -1)
    with pytest.raises(ValueError, match=r"k = 0"):
        pass_at_k(4, 1, 0)
    with pytest.raises(ValueError, match=r"n = 0"):
        avg_at_k(0, 0)


def test_avg_count_and_aggregate():
    assert avg_at_k(8, 3) == 0.375
    assert count([True, False, True, True]) == (4, 3)
    assert count([False, False]) == (2, 0)
    assert count([True, None]) is None and count([]) is None  # no usable reference: left out
    got = aggregate([(4, 0), (4, 1), (4, 4)], k=2)
    # avg: (0 + 1/4 + 1) / 3; pass@2: (0 + 1/2 + 1) / 3
    assert got == {"problems": 3, "avg@k": pytest.approx(5 / 12), "pass@k": pytest.approx(0.5)}
    empty = aggregate([], k=4)
    assert empty["problems"] == 0 and math.isnan(empty["pass@k"]) and math.isnan(empty["avg@k"])
    with pytest.raises(ValueError, match="fewer than k"):
        aggregate([(4, 1), (2, 1)], k=4)


def test_module_doctests():
    assert doctest.testmod(passk).failed == 0
