"""``copied_expression``: a reward-hacking guard for math tasks, logged every step as ``monitor/copied_expression``.

1.0 for a completion whose final answer (math-verify's extraction, the same one the ``math`` reward reads)
is, or contains, an arithmetic expression copied from the prompt; else 0.0. An expression is two or more
numbers joined by ``+ - * / × ÷ · ^`` (or ``\\times``, ``\\cdot``, ``\\div``); it counts as copied when
every number in it occurs in the prompt, so "37 + 45", "45+37" and "\\boxed{37+45}" for "What is 37 + 45?"
are flagged, while "37 + 45 = 82" (extracted answer 82) and "82" are not.

Run as a monitor (``rewards.monitors``, on by default) it never changes the reward; as a reward with a
negative weight it becomes a penalty::

    rewards:
      functions:
        - {name: math, weight: 1.0}
        - {name: copied_expression, weight: -0.5}

>>> copied_expression(["What is 37 + 45?"] * 4, ["37 + 45", "\\\\boxed{45+37}", "37 + 45 = 82", "82"])
[1.0, 1.0, 0.0, 0.0]
"""

from __future__ import annotations

import re
from typing import Any

from rewards.registry import register_reward

_NUM = r"\d+(?:\.\d+)?"
_OP = r"(?:[-+*/×÷·^]|\\times|\\cdot|\\div)"
_EXPR = re.compile(rf"{_NUM}(?:\s*{_OP}\s*{_NUM})+")
_NUMS = re.compile(_NUM)


def _numbers(text: str) -> set[str]:
    return {n.lstrip("0") or "0" for n in _NUMS.findall(text.replace(",", ""))}


def copies_prompt_expression(prompt: str, answer_text: str) -> bool:
    """Whether ``answer_text`` contains an expression whose numbers all occur in ``prompt``."""
    in_prompt = _numbers(prompt)
    for expr in _EXPR.findall(answer_text.replace(",", "")):
        nums = _numbers(expr)
        if nums and nums <= in_prompt:
            return True
    return False


@register_reward("copied_expression")
def copied_expression(prompts: list[str], completions: list[str], **_: Any) -> list[float | None]:
    """1.0 where the extracted final answer is or contains an expression copied from the prompt, else 0.0."""
    from rewards.math import parse_answer  # here, not at the top: rewards.math imports the registry

    out: list[float | None] = []
    for prompt, completion in zip(prompts, completions):
        pred = parse_answer(completion or "")
        text = str(pred[1]) if len(pred) > 1 else ""
        out.append(1.0 if text and copies_prompt_expression(prompt or "", text) else 0.0)
    return out
