"""``overlong`` reward: DAPO's soft overlong punishment, a length penalty that ramps up before the cap.

With ``max_len`` = L_max (set it to ``rollout.max_new_tokens``, e.g. ``${rollout.max_new_tokens}``) and
``buffer`` = L_cache, for a response of |y| generated tokens (DAPO eq. 13)::

    0                              if |y| <= L_max - L_cache
    ((L_max - L_cache) - |y|) / L_cache   if L_max - L_cache < |y| <= L_max
    -1                             if |y| > L_max

scaled by ``penalty`` (verl's ``penalty_factor``, default 1). Lengths are token counts from
``completion_ids`` (the scorer passes each sample's generated ids, as TRL does), EOS included, as in verl
(vLLM counts it toward ``max_tokens`` too). Add it to the task reward with weight 1::

    rewards:
      functions:
        - {name: math}
        - {name: overlong, kwargs: {max_len: "${rollout.max_new_tokens}", buffer: 16}}

An engine never returns more than ``max_new_tokens``, so the −1 branch only fires when ``max_len`` is set
below the engine cap.
"""

from __future__ import annotations

from typing import Any

from rewards.registry import register_reward


def overlong_penalty(length: int, max_len: int, buffer: int, penalty: float = 1.0) -> float:
    """The soft overlong penalty of one response of ``length`` tokens (0 down to −``penalty``)."""
    if buffer <= 0 or buffer > max_len:
        raise ValueError(f"overlong: buffer must be in [1, max_len={max_len}], got {buffer}")
    start = max_len - buffer
    if length <= start:
        return 0.0
    if length <= max_len:
        return penalty * (start - length) / buffer
    return -penalty


@register_reward("overlong")
def overlong_reward(
    prompts: list[str],
    completions: list[str],
    completion_ids: list[list[int]] | None = None,
    max_len: int | None = None,
    buffer: int = 16,
    penalty: float = 1.0,
    **_: Any,
) -> list[float | None]:
    """Per completion, the penalty for its token length (needs ``completion_ids`` and ``max_len``).

    >>> overlong_reward(["q"] * 3, ["a", "b", "c"], completion_ids=[[5] * 8, [5] * 14, [5] * 16], max_len=16, buffer=4)
    [0.0, -0.5, -1.0]
    """
    if completion_ids is None:
        raise ValueError(
            "overlong: needs completion_ids (token ids of each completion; the scorer passes them)"
        )
    if max_len is None:
        raise ValueError("overlong: set kwargs.max_len (normally ${rollout.max_new_tokens})")
    return [overlong_penalty(len(ids), int(max_len), int(buffer), float(penalty)) for ids in completion_ids]


def _check_kwargs(kwargs: dict[str, Any]) -> None:
    """Recipe-time check (launch/config.py calls a plugin's ``check_kwargs`` when it has one)."""
    if "max_len" not in kwargs:
        raise ValueError("overlong needs max_len (normally ${rollout.max_new_tokens})")
    max_len, buffer = int(kwargs["max_len"]), int(kwargs.get("buffer", 16))
    if not 1 <= buffer <= max_len:
        raise ValueError(f"overlong: buffer must be in [1, max_len={max_len}], got {buffer}")


overlong_reward.check_kwargs = _check_kwargs  # type: ignore[attr-defined]
