"""pass@k and avg@k from n sampled answers per problem, of which c are correct. Pure Python.

- ``pass_at_k(n, c, k)``: the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models
  Trained on Code", eq. 1), the probability that at least one of k answers drawn without replacement from
  the n is correct: ``1 - C(n-c, k) / C(n, k)``, computed as the product ``1 - Π_{i=n-c+1}^{n} (1 - k/i)``,
  which neither overflows nor loses precision for large n (the paper's numpy form).
- ``avg_at_k(n, c)``: the mean accuracy of the samples, ``c / n`` (with n = k: "avg@k", the unbiased pass@1).
- ``aggregate(counts, k)``: both, averaged over problems (each problem weighs the same).

>>> round(pass_at_k(4, 1, 2), 4)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
0.5
>>> aggregate([(4, 0), (4, 2), (4, 4)], k=4)
{'problems': 3, 'avg@k': 0.5, 'pass@k': 0.6666666666666666}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def _check(n: int, c: int) -> None:
    if n < 1:
        raise ValueError(f"pass@k: n = {n} samples; need at least 1")
    if not 0 <= c <= n:
        raise ValueError(f"pass@k: c = {c} correct out of n = {n} samples; need 0 <= c <= n")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``c`` correct answers among ``n`` samples (needs n >= k >= 1)."""
    _check(n, c)
    if k < 1:
        raise ValueError(f"pass@k: k = {k}; need k >= 1")
    if n < k:
        raise ValueError(
            f"pass@k: n = {n} samples is fewer than k = {k}; draw at least k samples per problem"
        )
    if n - c < k:  # every k-subset holds a correct answer
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def avg_at_k(n: int, c: int) -> float:
    """Mean accuracy of the ``n`` samples of one problem: ``c / n``."""
    _check(n, c)
    return c / n


def count(verdicts: Sequence[bool | None]) -> tuple[int, int] | None:
    """(n, c) of one problem's verdicts; None when any verdict is missing (no usable reference answer)."""
    if not verdicts or any(v is None for v in verdicts):
        return None
    return len(verdicts), sum(bool(v) for v in verdicts)


def aggregate(counts: Iterable[tuple[int, int]], k: int) -> dict[str, float]:
    """``problems``, mean ``avg@k`` and mean ``pass@k`` over problems given as (n, c) pairs (NaN for none)."""
    pairs = list(counts)
    if not pairs:
        return {"problems": 0, "avg@k": float("nan"), "pass@k": float("nan")}
    return {
        "problems": len(pairs),
        "avg@k": sum(avg_at_k(n, c) for n, c in pairs) / len(pairs),
        "pass@k": sum(pass_at_k(n, c, k) for n, c in pairs) / len(pairs),
    }
