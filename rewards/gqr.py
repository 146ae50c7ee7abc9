"""GQR (generative query recommendation aligned to clicks): the prompt, list parsing, list scores and rewards.

One prompt serves three tasks (``TASKS``): *suggestion* (queries a user may issue next), *completion* (full
queries for a typed prefix) and *clarification* (more specific readings of a vague query). It carries the
user query and, as side information, k queries that co-occur with it in session logs (curricula/gqr_data.py
retrieves them), and asks for ``n`` queries, one per line. ``parse_query_list`` reads the list back;
``aggregate`` turns per-query click-through rates into one list score.

Plugins (the contract of rewards/registry.py; the user query comes from the dataset column ``query``):

- ``gqr_ctr`` (reward): the list score from a frozen CTR model (rewards/ctr_model.py) that scores every
  (user query, generated query) pair of the batch in one batched forward; the model is loaded once per
  reward-worker process (cached by path). Kwargs: ``ctr_model`` (checkpoint folder), ``n`` (default 4),
  ``aggregation`` (``one_minus_prod`` default, ``mean``, ``max``, ``dcg``), ``malformed_score`` (0.0).
- ``gqr_hit`` (held-out check, ``eval.answer_check``): 1.0 when the actually clicked follow-up query
  (``answer``) is among the first ``n`` parsed queries; ``match: exact`` (after ``normalize_query``) or
  ``match: overlap`` (token Jaccard ≥ ``threshold``, 0.5).
- ``gqr_malformed``, ``gqr_short``, ``gqr_valid`` (monitors): 1.0 for a response with no usable query,
  1.0 for one with fewer than ``n``, and the number of usable queries; logged as ``monitor/<key>`` every
  step and at eval, so malformed and short lists are counted without touching the reward.

Defined scores: a list is scored over its first ``n`` usable queries; a missing slot counts as CTR 0 (so for
``one_minus_prod`` and ``max`` a short list scores what its queries score, for ``mean`` and ``dcg`` it is
pulled down by the empty slots); a response with no usable query scores ``malformed_score``.

Departures from the paper (no public code or data; everything below the list score is a [guess]):

- The list score 1 − Π(1 − CTR_i) is the method's stated default [guess: read as "the chance that at least
  one shown query is clicked" with independent clicks]; ``mean``, ``max`` and a position-discounted ``dcg``
  (Σ CTR_i / log2(i + 2), normalised by the ideal of n slots) are options.
- Parsing rules [guess]: items are split on newlines (``delimiter``); numbering ("1.", "2)", "-", "*", "•")
  and surrounding quotes are stripped; a header line ending in ":" is dropped; an item longer than
  ``max_chars`` (120) is prose, not a query, and is dropped; an item with the same words as the user query
  (after normalisation, in any order: "How to X in Java" for "[java]how to X in java") is an echo, not a
  recommendation, and is dropped; duplicates (after normalisation) count once.
- The CTR model is a hashed n-gram classifier, not the paper's (unspecified) text classifier, trained on
  CosoBe code-search sessions (rewards/ctr_model.py says what counts as a click there).
- Co-occurring queries come from session co-occurrence counts with a lexical back-off, or an n-gram
  TF-IDF nearest-neighbour retriever; the paper trains a SimCSE retriever (curricula/gqr_data.py).

>>> parse_query_list("1. java stringbuilder\\n2. Java StringBuilder\\n- java string format", n=4).queries
['java stringbuilder', 'java string format']
>>> round(aggregate([0.5, 0.5], "one_minus_prod", n=4), 4)
0.75
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rewards.registry import register_reward

TASKS = {
    "suggestion": "Suggest {n} search queries the user is likely to issue next, after the query below.",
    "completion": "The user has typed the start of a search query. Suggest {n} complete search queries "
    "that begin with it.",
    "clarification": "The query below is vague. Suggest {n} more specific search queries that say what "
    "the user may mean.",
}

PROMPT_TEMPLATE = (
    "{instruction}\n"
    "User query: {query}\n"
    "{related_block}"
    "Write exactly {n} queries, one per line, and nothing else."
)


def build_prompt(query: str, task: str = "suggestion", related: Sequence[str] = (), n: int = 4) -> str:
    """The GQR prompt: the task's instruction, the user query, the co-occurring queries (if any), the format.

    >>> print(build_prompt("java enum", related=["java enum switch"], n=2))
    Suggest 2 search queries the user is likely to issue next, after the query below.
    User query: java enum
    Queries other users searched together with it:
    - java enum switch
    Write exactly 2 queries, one per line, and nothing else.
    """
    if task not in TASKS:
        raise ValueError(f"task {task!r}: use one of {sorted(TASKS)}")
    block = ""
    if related:
        block = "Queries other users searched together with it:\n" + "".join(f"- {r}\n" for r in related)
    return PROMPT_TEMPLATE.format(instruction=TASKS[task].format(n=n), query=query, related_block=block, n=n)


# ---------------------------------------------------------------- parsing

_BULLET = re.compile(r"^\s*(?:\(?\d{1,2}[.):\]]|[-*•·]|#{1,3})\s*")
_QUOTES = "\"'`“”‘’"
_NONWORD = re.compile(r"[^0-9a-z#+]+")


def normalize_query(text: str) -> str:
    """Lower case, punctuation (but ``#`` and ``+``: c#, c++) to spaces, whitespace collapsed.

    >>> normalize_query("  [Java] How to use  StringBuilder? ")
    'java how to use stringbuilder'
    """
    return " ".join(_NONWORD.sub(" ", text.lower()).split())


def query_tokens(text: str) -> set[str]:
    return set(normalize_query(text).split())


def token_jaccard(a: str, b: str) -> float:
    ta, tb = query_tokens(a), query_tokens(b)
    return len(ta & tb) / len(ta | tb) if ta | tb else 0.0


@dataclass
class ParsedList:
    queries: list[str]  # usable queries, in order, at most n
    n: int  # how many were asked for
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count (echo, duplicate, long, header)
    extra: int = 0  # usable queries beyond the first n

    @property
    def malformed(self) -> bool:
        return not self.queries

    @property
    def short(self) -> bool:
        return len(self.queries) < self.n


def parse_query_list(
    text: str, n: int = 4, user_query: str | None = None, delimiter: str = "\n", max_chars: int = 120
) -> ParsedList:
    """The usable queries of a response (see the module header for the rules)."""
    out: list[str] = []
    seen: set[str] = set()
    dropped: dict[str, int] = {}
    echo = set(normalize_query(user_query).split()) if user_query else None
    extra = 0

    def drop(reason: str) -> None:
        dropped[reason] = dropped.get(reason, 0) + 1

    for raw in (text or "").split(delimiter):
        item = _BULLET.sub("", raw.strip()).strip().strip(_QUOTES).strip()
        if not item:
            continue
        if item.endswith(":"):
            drop("header")
            continue
        if len(item) > max_chars:
            drop("long")
            continue
        key = normalize_query(item)
        if not key:
            drop("empty")
        elif set(key.split()) == echo:
            drop("echo")
        elif key in seen:
            drop("duplicate")
        elif len(out) >= n:
            extra += 1
        else:
            seen.add(key)
            out.append(item)
    return ParsedList(out, n, dropped, extra)


# ---------------------------------------------------------------- list scores


def _one_minus_prod(ctrs: list[float], n: int) -> float:
    return 1.0 - math.prod(1.0 - c for c in ctrs)


def _mean(ctrs: list[float], n: int) -> float:
    return sum(ctrs) / n


def _max(ctrs: list[float], n: int) -> float:
    return max(ctrs, default=0.0)


def _dcg(ctrs: list[float], n: int) -> float:
    ideal = sum(1.0 / math.log2(i + 2) for i in range(n))
    return sum(c / math.log2(i + 2) for i, c in enumerate(ctrs)) / ideal


AGGREGATIONS = {"one_minus_prod": _one_minus_prod, "mean": _mean, "max": _max, "dcg": _dcg}


def aggregate(ctrs: Sequence[float], how: str = "one_minus_prod", n: int | None = None) -> float:
    """One list score from per-query CTRs (position order), over ``n`` slots (missing slots score 0).

    >>> aggregate([0.2, 0.5], "mean", n=4)
    0.175
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregation {how!r}: use one of {sorted(AGGREGATIONS)}")
    vals = [min(1.0, max(0.0, float(c))) for c in ctrs]
    n = max(n or len(vals), 1)
    return AGGREGATIONS[how](vals[:n], n)


# ---------------------------------------------------------------- plugins


def _user_queries(query: Any, prompts: list[str]) -> list[str]:
    """The ``query`` column, or the prompt's "User query:" line when a dataset has no such column."""
    if query is not None:
        return [str(q) if q is not None else "" for q in query]
    got = []
    for p in prompts:
        m = re.search(r"^User query: (.*)$", p or "", flags=re.M)
        got.append(m.group(1) if m else "")
    return got


def _parse_all(prompts, completions, query, n, delimiter) -> list[ParsedList]:
    users = _user_queries(query, prompts)
    return [parse_query_list(c, n, u, delimiter) for c, u in zip(completions, users)]


def _check_common(kwargs: dict[str, Any]) -> None:
    n = kwargs.get("n", 4)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n: {n!r} must be an integer >= 1 (queries per list)")


def gqr_ctr(
    prompts: list[str],
    completions: list[str],
    query: list[str] | None = None,
    ctr_model: str = "",
    n: int = 4,
    aggregation: str = "one_minus_prod",
    malformed_score: float = 0.0,
    delimiter: str = "\n",
    **_: Any,
) -> list[float | None]:
    """List score of each response: ``aggregate`` of the CTR model's per-query probabilities."""
    from rewards.ctr_model import load_cached

    model = load_cached(ctr_model)
    users = _user_queries(query, prompts)
    parsed = [parse_query_list(c, n, u, delimiter) for c, u in zip(completions, users)]
    pairs = [(u, q) for u, p in zip(users, parsed) for q in p.queries]
    probs = iter(model.predict(pairs)) if pairs else iter(())
    out: list[float | None] = []
    for p in parsed:
        ctrs = [next(probs) for _ in p.queries]
        out.append(float(malformed_score) if p.malformed else aggregate(ctrs, aggregation, n))
    return out


def _check_ctr(kwargs: dict[str, Any]) -> None:
    from pathlib import Path

    _check_common(kwargs)
    how = kwargs.get("aggregation", "one_minus_prod")
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregation: {how!r}; use one of {sorted(AGGREGATIONS)}")
    path = Path(str(kwargs.get("ctr_model", ""))).expanduser()
    if not (path / "ctr_config.json").is_file():
        raise ValueError(
            f"ctr_model: {str(path)!r} is not a CTR checkpoint folder (ctr_config.json); train one with "
            "python -m rewards.ctr_model train recipes/gqr_ctr_cpu.yaml"
        )


gqr_ctr.check_kwargs = _check_ctr  # type: ignore[attr-defined]
register_reward("gqr_ctr")(gqr_ctr)


@register_reward("gqr_hit")
def gqr_hit(
    prompts: list[str],
    completions: list[str],
    answer: list[str | None],
    query: list[str] | None = None,
    n: int = 4,
    match: str = "exact",
    threshold: float = 0.5,
    delimiter: str = "\n",
    **_: Any,
) -> list[float | None]:
    """hit@n: 1.0 when the clicked follow-up (``answer``) is in the list; None where a row has no answer.

    >>> gqr_hit(["p"], ["java enum\\njava Enum switch"], answer=["Java enum switch?"], n=2)
    [1.0]
    """
    out: list[float | None] = []
    for p, ref in zip(_parse_all(prompts, completions, query, n, delimiter), answer):
        if not ref:
            out.append(None)
        elif match == "exact":
            out.append(float(normalize_query(ref) in {normalize_query(q) for q in p.queries}))
        else:
            out.append(float(any(token_jaccard(ref, q) >= threshold for q in p.queries)))
    return out


def _check_hit(kwargs: dict[str, Any]) -> None:
    _check_common(kwargs)
    if kwargs.get("match", "exact") not in ("exact", "overlap"):
        raise ValueError(f"match: {kwargs.get('match')!r}; use exact or overlap")


gqr_hit.check_kwargs = _check_hit  # type: ignore[attr-defined]


@register_reward("gqr_malformed")
def gqr_malformed(prompts, completions, query=None, n: int = 4, delimiter: str = "\n", **_: Any):
    """1.0 for a response with no usable query (it gets ``malformed_score`` from ``gqr_ctr``)."""
    return [float(p.malformed) for p in _parse_all(prompts, completions, query, n, delimiter)]


@register_reward("gqr_short")
def gqr_short(prompts, completions, query=None, n: int = 4, delimiter: str = "\n", **_: Any):
    """1.0 for a response with fewer than ``n`` usable queries (malformed ones included)."""
    return [float(p.short) for p in _parse_all(prompts, completions, query, n, delimiter)]


@register_reward("gqr_valid")
def gqr_valid(prompts, completions, query=None, n: int = 4, delimiter: str = "\n", **_: Any):
    """The number of usable queries (0..n) of each response."""
    return [float(len(p.queries)) for p in _parse_all(prompts, completions, query, n, delimiter)]


for _fn in (gqr_malformed, gqr_short, gqr_valid):
    _fn.check_kwargs = _check_common  # type: ignore[attr-defined]
