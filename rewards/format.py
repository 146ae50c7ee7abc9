"""``format`` reward: 1.0 when the completion matches a regular expression, else 0.0.

Recipe kwargs: ``pattern`` (default: a non-empty ``\\boxed{...}`` answer anywhere in the completion) and
``fullmatch`` (default False: the pattern may match anywhere, as ``re.search``). Patterns are compiled
with ``re.DOTALL`` so ``.`` spans lines. Typically paired with ``math`` at a small weight::

    rewards:
      functions:
        - {name: math, weight: 1.0}
        - {name: format, weight: 0.1, kwargs: {pattern: "<answer>.+</answer>"}}
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from rewards.registry import register_reward

DEFAULT_PATTERN = r"\\boxed\{.+?\}"


@lru_cache(maxsize=64)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.DOTALL)


@register_reward("format")
def format_reward(
    prompts: list[str],
    completions: list[str],
    pattern: str = DEFAULT_PATTERN,
    fullmatch: bool = False,
    **_: Any,
) -> list[float | None]:
    """1.0 per completion that matches ``pattern``, else 0.0.

    >>> format_reward(["q", "q"], ["so \\\\boxed{5}", "5"])
    [1.0, 0.0]
    """
    rx = _compile(pattern)
    match = rx.fullmatch if fullmatch else rx.search
    return [1.0 if match(c or "") else 0.0 for c in completions]
