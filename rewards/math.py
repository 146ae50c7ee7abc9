"""``math`` reward: 1.0 when the completion's final answer equals the reference answer, else 0.0.

Uses math-verify (Hugging Face) for parsing and symbolic comparison, so ``\\boxed{\\frac{1}{2}}``, ``0.5``
and ``$1/2$`` all match a reference ``\\frac{1}{2}``. How the completion's answer is chosen (math-verify's
default extraction): a ``\\boxed{}`` answer first; else an anchored answer ("The answer is 68.");
else the last number or LaTeX expression. Thousands separators are understood ("1,234" is 1234).

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


@lru_cache(maxsize=4096)
def _parse_gold(answer: str) -> tuple[Any, ...]:
    from math_verify import parse  # heavy (sympy): imported on first use

    gold = answer.strip()
    if _THOUSANDS.fullmatch(gold):
        gold = gold.replace(",", "")  # inside \boxed{} "1,234" would read as a set of two numbers
    if "\\boxed" not in gold and "$" not in gold:
        gold = f"\\boxed{{{gold}}}"
    return tuple(parse(gold, parsing_timeout=None))


def is_equivalent(completion: str, answer: str) -> bool | None:
    """Whether ``completion``'s final answer equals ``answer``; None when ``answer`` cannot be parsed."""
    from math_verify import parse, verify

    gold = _parse_gold(answer)
    if not gold:
        return None
    pred = parse(completion, parsing_timeout=None)
    if not pred:
        return False
    return bool(verify(list(gold), pred, timeout_seconds=None))


@register_reward("math")
def math_reward(
    prompts: list[str], completions: list[str], answer: list[str | None] | None = None, **_: Any
) -> list[float | None]:
    """1.0 if the final answer is right, 0.0 if wrong, None if there is no usable reference answer.

    >>> math_reward(["What is 47 + 38?"] * 3, ["47 + 38 = 85", "\\\\boxed{84}", "85"], answer=["85", "85", None])
    [1.0, 0.0, None]
    """
    if answer is None:
        return [None] * len(completions)
    out: list[float | None] = []
    for completion, ref in zip(completions, answer):
        if ref is None or not str(ref).strip():
            out.append(None)
            continue
        ok = is_equivalent(completion or "", str(ref))
        out.append(None if ok is None else float(ok))
    return out
