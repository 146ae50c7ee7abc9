"""``math`` reward: 1.0 when the completion's final answer equals the reference answer, else 0.0.

Uses math-verify (Hugging Face) for extraction and comparison with its default settings: a ``\\boxed{}``
answer first; else an anchored answer ("The answer is 68."); else the last number or LaTeX expression; an
equation's right-hand side ("47 + 38 = 85" → 85); thousands separators ("1,234" is 1234).

**Strict by default.** math-verify parses "37 + 45" into an *unevaluated* sympy ``Add(37, 45)`` and then
proves it equal to 82, so with plain ``verify`` a completion that restates the question scores 1 — the
default recipe's policy learned exactly that shortcut. math-verify has no setting that says "the answer
must already be evaluated", but its parse keeps the structure of what was written, so we add one check on
top of its own extraction and comparison: when the reference is a number (sympy ``Integer``, ``Rational``
or ``Float``), the extracted answer must be a number in final form —

- a literal: ``82``, ``-5``, ``82.0``, ``1,234``, ``\\frac{3}{4}``, ``\\boxed{0.5}``, ``1\\frac{1}{2}``;
- ``a/b`` with integer ``a`` and ``b`` (how plain text writes a fraction; math-verify leaves it unevaluated);
- a percentage ``82%`` or scientific notation ``1.5 \\times 10^3`` (mantissa in [1, 10)).

Anything else — ``37 + 45``, ``\\boxed{6 \\times 7}``, ``2^3``, ``\\sqrt{4}``, two boxed answers — scores 0
against a numeric reference, whatever it evaluates to. A symbolic reference (``x^2+1``, ``\\frac{\\sqrt{3}}{2}``,
an interval, a set) keeps math-verify's symbolic equivalence (``1+x^2`` matches). ``strict=False`` (recipe
``kwargs: {strict: false}``) restores plain math-verify; it is never the default.

The reference answer is parsed as if it were boxed, so a bare ``x^2+1`` or ``68`` works. A sample whose
reference is missing (no ``answer`` column, ``None`` or empty) or unparsable gets ``None`` (no reward
signal), never 0.0.

math-verify enforces its own timeouts with ``signal.alarm``, which only works in the main thread; we
disable them (``parsing_timeout=None``, ``timeout_seconds=None``) so the reward runs in worker threads
and processes. Hangs are bounded by :class:`rewards.scorer.RewardScorer`'s process isolation instead.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from rewards.registry import register_reward

_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
# Unicode minus signs that models (and some datasets) write; math-verify finds no answer in "−5".
_MINUS = str.maketrans({"\u2212": "-", "\u2012": "-", "\u2013": "-"})


@lru_cache(maxsize=4096)
def _parse_gold(answer: str) -> tuple[Any, ...]:
    from math_verify import parse  # heavy (sympy): imported on first use

    gold = answer.strip().translate(_MINUS)
    if _THOUSANDS.fullmatch(gold):
        gold = gold.replace(",", "")  # inside \boxed{} "1,234" would read as a set of two numbers
    if "\\boxed" not in gold and "$" not in gold:
        gold = f"\\boxed{{{gold}}}"
    return tuple(parse(gold, parsing_timeout=None))


def parse_answer(completion: str) -> list[Any]:
    """math-verify's extraction of the final answer: ``[sympy_expr, extracted_text]``, or ``[]`` if none."""
    from math_verify import parse

    return parse((completion or "").translate(_MINUS), parsing_timeout=None)


def is_number(expr: Any) -> bool:
    """A plain number: sympy Integer, Rational or Float (what a numeric reference parses to)."""
    from sympy import Number

    return isinstance(expr, Number)


def is_final_number(expr: Any) -> bool:
    """Whether a parsed answer is a number as written in final form (see the module docstring)."""
    from sympy import Integer, Mul, Pow, Rational, UnevaluatedExpr

    if is_number(expr):
        return True
    if not isinstance(expr, Mul) or len(expr.args) != 2:
        return False
    a, b = expr.args
    for x, y in ((a, b), (b, a)):
        # "3/4" in plain text: Mul(3, Pow(4, -1)), left unevaluated by math-verify
        if isinstance(x, Integer) and isinstance(y, Pow) and isinstance(y.base, Integer) and y.exp == -1:
            return True
        # "82%": Mul(82, UnevaluatedExpr(1/100))
        if is_number(x) and isinstance(y, UnevaluatedExpr) and y.args[0] == Rational(1, 100):
            return True
        # "1.5 \times 10^3"
        if (
            is_number(x)
            and 1 <= abs(x) < 10
            and isinstance(y, Pow)
            and y.base == 10
            and isinstance(y.exp, Integer)
        ):
            return True
    return False


def is_equivalent(completion: str, answer: str, strict: bool = True) -> bool | None:
    """Whether ``completion``'s final answer equals ``answer``; None when ``answer`` cannot be parsed.

    ``strict``: a numeric reference is matched only by a number in final form, never by an unevaluated
    expression such as the question's own ``37 + 45``.
    """
    from math_verify import verify

    gold = _parse_gold(answer)
    if not gold:
        return None
    pred = parse_answer(completion)
    if not pred:
        return False
    if strict and is_number(gold[0]) and not is_final_number(pred[0]):
        return False
    return bool(verify(list(gold), pred, timeout_seconds=None))


@register_reward("math")
def math_reward(
    prompts: list[str],
    completions: list[str],
    answer: list[str | None] | None = None,
    strict: bool = True,
    **_: Any,
) -> list[float | None]:
    """1.0 if the final answer is right, 0.0 if wrong, None if there is no usable reference answer.

    >>> math_reward(["What is 47 + 38?"] * 4, ["47 + 38 = 85", "47 + 38", "\\\\boxed{84}", "85"],
    ...             answer=["85", "85", "85", None])
    [1.0, 0.0, 0.0, None]
    >>> math_reward(["What is 47 + 38?"], ["47 + 38"], answer=["85"], strict=False)  # lenient: restating scores
    [1.0]
    """
    if answer is None:
        return [None] * len(completions)
    out: list[float | None] = []
    for completion, ref in zip(completions, answer):
        if ref is None or not str(ref).strip():
            out.append(None)
            continue
        ok = is_equivalent(completion or "", str(ref), strict=bool(strict))
        out.append(None if ok is None else float(ok))
    return out
