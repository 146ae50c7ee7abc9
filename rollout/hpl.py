"""HPL — hierarchical preference learning for long-horizon agents (METHODS.md §4): the pure logic.

What is here needs no model, environment or engine, so it is unit-tested on its own:

- action-group segmentation of an expert trajectory (:data:`SEGMENTERS`): ``fixed_length`` (K actions a
  group), ``fixed_count`` (N groups), ``entropy`` (a new group at every high-entropy action) and ``judge``
  (an LLM returns ``[[start, end], ...]``; :func:`parse_judge_groups` checks it);
- the pair rules of the three preference levels (:func:`trajectory_pair`, :func:`step_pair`,
  :func:`group_pair`, :func:`distinct_negatives`);
- the dual-layer curriculum's buckets (:func:`length_bucket`, :func:`gap_bucket`, :func:`active_buckets`);
- the training units written by the data stages (:func:`unit`), one JSON row each, read by the ``hpl``
  strategy (rollout/strategies/hpl.py) and the ``hpl_buckets`` curriculum (curricula/hpl.py).

A transcript is ``{"first_observation": str, "turns": [{"action": str, "observation": str}, ...]}`` (the
observation after each action). A unit row::

    {"id", "text" (the task), "kind": bc | traj | step | group, "first_observation",
     "chosen": [turns], "rejected": [turns] (pairs only), "span": [start, end) (the scored actions, pairs),
     "chosen_value", "rejected_value", "gap" (ΔR), "length" (|G|), "bucket": [length_bucket, gap_bucket]}

For ``traj`` the span is each side's whole trajectory (the sides may differ in length, so ``span`` is null
and every action is scored); for ``step`` and ``group`` both sides share the expert prefix ``[0, start)`` and
the span is ``[start, end)`` on each side (the rejected side's span has the same start; its end is its own
length). The log-ratios are summed over the span's action tokens only (METHODS.md §4, step 8).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

Span = tuple[int, int]  # [start, end) action indices
Segmenter = Callable[..., list[Span]]

SEGMENTERS: dict[str, Segmenter] = {}


def register_segmenter(name: str) -> Callable[[Segmenter], Segmenter]:
    def deco(fn: Segmenter) -> Segmenter:
        SEGMENTERS[name] = fn
        return fn

    return deco


def check_cover(spans: Sequence[Span], n: int) -> list[Span]:
    """``spans`` must be contiguous, non-empty and cover ``[0, n)`` in order; returns them as tuples."""
    out = [(int(a), int(b)) for a, b in spans]
    pos = 0
    for a, b in out:
        if a != pos or b <= a:
            raise ValueError(f"groups {out} do not cover actions 0..{n - 1} contiguously (at {pos})")
        pos = b
    if pos != n:
        raise ValueError(f"groups {out} end at {pos}, the trajectory has {n} actions")
    return out


@register_segmenter("fixed_length")
def fixed_length(n: int, k: int = 3, **_: Any) -> list[Span]:
    """Groups of ``k`` consecutive actions (the last may be shorter)."""
    if k < 1:
        raise ValueError(f"segment_k must be >= 1, got {k}")
    return [(i, min(i + k, n)) for i in range(0, n, k)]


@register_segmenter("fixed_count")
def fixed_count(n: int, count: int = 3, **_: Any) -> list[Span]:
    """``count`` groups of near-equal length (the first ``n mod count`` one longer); fewer if n < count."""
    if count < 1:
        raise ValueError(f"segment_n must be >= 1, got {count}")
    c = min(count, n)
    if c == 0:
        return []
    base, extra = divmod(n, c)
    out, pos = [], 0
    for i in range(c):
        size = base + (1 if i < extra else 0)
        out.append((pos, pos + size))
        pos += size
    return out


@register_segmenter("entropy")
def entropy_segments(
    n: int, entropies: Sequence[float] | None = None, threshold: float | None = None, **_: Any
) -> list[Span]:
    """A new group starts at every action whose mean token entropy under π_ref exceeds ``threshold``.

    High entropy marks a decision point: the group is that uncertain action and the confident actions that
    follow it. ``threshold`` None: the trajectory's own mean entropy (so every trajectory gets split where
    it is least sure, whatever its overall level). Action 0 always opens a group.
    """
    if entropies is None or len(entropies) != n:
        raise ValueError(f"entropy segmentation needs one entropy per action ({n}), got {entropies!r}")
    if n == 0:
        return []
    thr = sum(entropies) / n if threshold is None else threshold
    starts = [0] + [t for t in range(1, n) if entropies[t] > thr]
    return [(a, b) for a, b in zip(starts, [*starts[1:], n])]


@register_segmenter("judge")
def judge_segments(n: int, judge_text: str | None = None, **_: Any) -> list[Span]:
    """The judge's ``[[start, end], ...]`` (1-based, inclusive, as the prompt asks) as [start, end) spans."""
    if judge_text is None:
        raise ValueError("judge segmentation needs the judge's reply (judge_text)")
    return parse_judge_groups(judge_text, n)


_PAIRS = re.compile(r"\[\s*(\d+)\s*,\s*(\d+)\s*\]")


def parse_judge_groups(text: str, n: int) -> list[Span]:
    """Parse the last ``[[s, e], ...]`` list in ``text`` (1-based inclusive) and check it covers 1..n.

    Raises ValueError naming what is wrong; callers fall back to fixed-length groups and count it.
    """
    lists = re.findall(r"\[\s*(?:\[\s*\d+\s*,\s*\d+\s*\]\s*,?\s*)+\]", text)
    if not lists:
        raise ValueError(f"no [[start, end], ...] list in the judge's reply: {text[:200]!r}")
    pairs = [(int(a), int(b)) for a, b in _PAIRS.findall(lists[-1])]
    return check_cover([(a - 1, b) for a, b in pairs], n)


def judge_prompt(task: str, actions: Sequence[str]) -> str:
    """The judge's instruction: group the expert's actions into sub-goals (HPL's semantic segmentation)."""
    lines = "\n".join(f"{i + 1}. {a}" for i, a in enumerate(actions))
    return (
        f"Task: {task}\nAn expert solved it with these {len(actions)} actions:\n{lines}\n\n"
        "Split the actions into consecutive groups, one group per sub-goal (for example: reach a room, get an "
        "object, use it). Every action must be in exactly one group, in order. Answer with the groups as a "
        "list of [first, last] action numbers (1-based, inclusive) and nothing else, for example "
        f"[[1, 2], [3, {len(actions)}]]."
    )


def segment(name: str, n: int, **kwargs: Any) -> list[Span]:
    if name not in SEGMENTERS:
        raise ValueError(f"unknown segmentation {name!r}; registered: {sorted(SEGMENTERS)}")
    return check_cover(SEGMENTERS[name](n, **kwargs), n)


# ------------------------------------------------------------------------------------------ pair rules

# MC values are means of a few 0/1-ish rewards: 0.8 - 0.5 is 0.30000000000000004 in floats, and "a gap
# greater than 0.3" must not depend on that rounding.
EPS = 1e-9


def trajectory_pair(expert_return: float, policy_return: float, min_gap: float = 0.01) -> bool:
    """Pair the expert's trajectory (chosen) with π_ref's when the expert's final reward is higher by > min_gap.

    Departure: the paper pairs whenever the rewards differ; a π_ref trajectory that beats the expert's
    (TextWorld walkthroughs are optimal, so only a tie can happen there) is not made the chosen side here,
    so every trajectory pair teaches towards the expert.
    """
    return expert_return - policy_return > min_gap + EPS


def step_pair(expert_value: float, alt_value: float, min_gap: float = 0.3) -> bool:
    """Keep a step pair (expert action chosen) when its MC value beats the alternative's by > min_gap."""
    return expert_value - alt_value > min_gap + EPS


def group_pair(
    chosen_value: float, rejected_value: float, min_gap: float = 0.3, min_chosen: float = 0.8
) -> bool:
    """HPL's group filter: r̂_w > r̂_l + min_gap and r̂_w ≥ min_chosen."""
    return chosen_value - rejected_value > min_gap + EPS and chosen_value >= min_chosen - EPS


def normalize_action(a: str) -> str:
    return " ".join(a.lower().split())


def distinct_negatives(
    expert: Sequence[str], candidates: Sequence[Sequence[str]], k: int = 3
) -> list[list[str]]:
    """Up to ``k`` distinct candidate action groups that differ from the expert's (case/space-insensitive),
    in the order sampled."""
    seen = {tuple(normalize_action(a) for a in expert)}
    out: list[list[str]] = []
    for c in candidates:
        key = tuple(normalize_action(a) for a in c)
        if not c or key in seen:
            continue
        seen.add(key)
        out.append(list(c))
        if len(out) == k:
            break
    return out


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


# ------------------------------------------------------------------------------ dual-layer curriculum

LENGTH_EDGES = (3, 6)  # ≤3 / 4–6 / >6 actions
GAP_EDGES = (0.7, 0.4)  # ΔR ≥ 0.7 / 0.4–0.7 / < 0.4


def length_bucket(length: int) -> int:
    """0: ≤ 3 actions (easiest), 1: 4–6, 2: > 6."""
    return 0 if length <= LENGTH_EDGES[0] else 1 if length <= LENGTH_EDGES[1] else 2


def gap_bucket(gap: float) -> int:
    """0: ΔR ≥ 0.7 (easiest: the clearest preference), 1: 0.4 ≤ ΔR < 0.7, 2: ΔR < 0.4."""
    return 0 if gap >= GAP_EDGES[0] else 1 if gap >= GAP_EDGES[1] else 2


def active_buckets(phase: int) -> set[tuple[int, int]]:
    """Phase 1: the easiest bucket (short, large gap); phase 2 adds its two neighbours; phase 3: all nine."""
    if phase <= 1:
        return {(0, 0)}
    if phase == 2:
        return {(0, 0), (0, 1), (1, 0)}
    return {(i, j) for i in range(3) for j in range(3)}


# ----------------------------------------------------------------------------------------- unit rows


def turns_of(record: dict[str, Any], end: int | None = None) -> list[dict[str, str]]:
    """The first ``end`` turns of an episode record (rollout/multiturn.Episode.record) as transcript turns."""
    return [{"action": t["action"], "observation": t["observation"]} for t in record["turns"][:end]]


def unit(
    uid: str,
    kind: str,
    task: str,
    first_observation: str,
    chosen: list[dict[str, str]],
    rejected: list[dict[str, str]] | None = None,
    span: Span | None = None,
    chosen_value: float | None = None,
    rejected_value: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    if kind not in UNIT_KINDS:
        raise ValueError(f"unit kind {kind!r} is not one of {UNIT_KINDS}")
    if kind != "bc" and rejected is None:
        raise ValueError(f"a {kind} unit needs a rejected side")
    row: dict[str, Any] = {
        "id": uid,
        "text": task,
        "kind": kind,
        "first_observation": first_observation,
        "chosen": chosen,
        "rejected": rejected,
        "span": list(span) if span is not None else None,
        "chosen_value": chosen_value,
        "rejected_value": rejected_value,
    }
    if chosen_value is not None and rejected_value is not None:
        row["gap"] = chosen_value - rejected_value
    if kind == "group" and span is not None:
        row["length"] = span[1] - span[0]
        row["bucket"] = [length_bucket(row["length"]), gap_bucket(row["gap"])]
    row.update(extra)
    return row


UNIT_KINDS = ("bc", "traj", "step", "group")


def read_jsonl(path: Any) -> list[dict[str, Any]]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]
