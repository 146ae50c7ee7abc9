"""Advantage estimators, registered by name (selected by ``algorithm.advantage`` in a recipe).

Every estimator maps per-sample rewards and advantage-group ids to per-sample advantages. Samples
whose reward is ``None`` (a reward plugin failed) get advantage 0 and are left out of their group's
statistics; the strategy also masks them out of the loss. Group sizes may differ (CurES quotas,
SEELE's multi-round groups).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

AdvantageFn = Callable[[Sequence[float | None], Sequence[str]], list[float]]
ADVANTAGES: dict[str, AdvantageFn] = {}


def register_advantage(name: str) -> Callable[[AdvantageFn], AdvantageFn]:
    def deco(fn: AdvantageFn) -> AdvantageFn:
        ADVANTAGES[name] = fn
        return fn

    return deco


def get_advantage(name: str) -> AdvantageFn:
    if name not in ADVANTAGES:
        raise KeyError(f"unknown advantage estimator {name!r}; registered: {sorted(ADVANTAGES)}")
    return ADVANTAGES[name]


def _group_index(rewards: Sequence[float | None], groups: Sequence[str]) -> dict[str, list[int]]:
    idx: dict[str, list[int]] = {}
    for i, (r, g) in enumerate(zip(rewards, groups, strict=True)):
        if r is not None:
            idx.setdefault(g, []).append(i)
    return idx


def _centered(
    rewards: Sequence[float | None], groups: Sequence[str], scale_by_std: bool, eps: float = 1e-6
) -> list[float]:
    out = [0.0] * len(rewards)
    for members in _group_index(rewards, groups).values():
        r = np.array([rewards[i] for i in members], dtype=np.float64)
        if len(r) < 2:
            continue  # no baseline from a single sample: no signal
        a = r - r.mean()
        if scale_by_std:
            a = a / (r.std(ddof=0) + eps)
        for i, v in zip(members, a):
            out[i] = float(v)
    return out


@register_advantage("grpo")
def grpo_advantage(rewards: Sequence[float | None], groups: Sequence[str]) -> list[float]:
    """GRPO: ``(r - mean_g) / (std_g + eps)`` over the group (population std, as in DeepSeekMath)."""
    return _centered(rewards, groups, scale_by_std=True)


@register_advantage("dr_grpo")
def dr_grpo_advantage(rewards: Sequence[float | None], groups: Sequence[str]) -> list[float]:
    """Dr.GRPO: ``r - mean_g`` without the std division (removes the difficulty bias)."""
    return _centered(rewards, groups, scale_by_std=False)


@register_advantage("rloo")
def rloo_advantage(rewards: Sequence[float | None], groups: Sequence[str]) -> list[float]:
    """RLOO: ``r_i - mean_{j≠i} r_j`` (leave-one-out baseline)."""
    out = [0.0] * len(rewards)
    for members in _group_index(rewards, groups).values():
        r = np.array([rewards[i] for i in members], dtype=np.float64)
        k = len(r)
        if k < 2:
            continue
        a = r - (r.sum() - r) / (k - 1)
        for i, v in zip(members, a):
            out[i] = float(v)
    return out


@register_advantage("reinforce_pp")
def reinforce_pp_advantage(rewards: Sequence[float | None], groups: Sequence[str]) -> list[float]:
    """REINFORCE++ (baseline variant): subtract the group mean, then normalise by the batch std.

    Normalising over the whole batch instead of per group keeps the scale stable when groups are
    small or uneven (the reason CurES pairs with it).
    """
    centered = _centered(rewards, groups, scale_by_std=False)
    valid = [c for c, r in zip(centered, rewards) if r is not None]
    if len(valid) < 2:
        return centered
    std = float(np.std(valid)) + 1e-6
    return [c / std for c in centered]
