"""Ranking metrics with binary relevance (a retrieved id is relevant when it is one of the query's gold ids),
and their stratified means.

For one query with gold set G and ranking r (best first), at cut-off K:

- ``recall@K``  |G ∩ r[:K]| / |G|: the fraction of the query's gold chunks in the top K.
- ``ap@K``      (1 / |G|) Σ_{i ≤ K, r_i ∈ G} precision@i. The denominator is |G|, not min(|G|, K): this is
  trec_eval's ``map_cut_K`` (average precision of the truncated ranking), so a gold chunk missing from the
  top K counts as 0. The mean over queries is MAP@K.
- ``ndcg@K``    DCG@K / IDCG@K with DCG = Σ_{i ≤ K} rel_i / log2(i + 1) and IDCG the DCG of min(|G|, K) hits.
- ``mrr@K``     1 / rank of the first gold chunk in the top K (0 when none).

A query without gold ids has no defined score and is left out (the caller counts it). Pure Python: imports
nothing heavy, so the tests run in milliseconds.

>>> round(ndcg_at_k(["c", "a", "d", "b"], {"a", "b"}, 4), 5)
0.65092
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any


def recall_at_k(ranking: Sequence[Any], gold: set[Any], k: int) -> float:
    return len(gold.intersection(ranking[:k])) / len(gold)


def ap_at_k(ranking: Sequence[Any], gold: set[Any], k: int) -> float:
    hits, total = 0, 0.0
    for i, doc in enumerate(ranking[:k], start=1):
        if doc in gold:
            hits += 1
            total += hits / i
    return total / len(gold)


def ndcg_at_k(ranking: Sequence[Any], gold: set[Any], k: int) -> float:
    dcg = sum(1.0 / math.log2(i + 1) for i, doc in enumerate(ranking[:k], start=1) if doc in gold)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(gold), k) + 1))
    return dcg / ideal


def mrr_at_k(ranking: Sequence[Any], gold: set[Any], k: int) -> float:
    return next((1.0 / i for i, doc in enumerate(ranking[:k], start=1) if doc in gold), 0.0)


# Metric name → per-query function; a registry so a report names exactly what it computed.
METRICS: dict[str, Callable[[Sequence[Any], set[Any], int], float]] = {
    "recall": recall_at_k,
    "map": ap_at_k,
    "ndcg": ndcg_at_k,
    "mrr": mrr_at_k,
}

# What the ChronoQA reports show: Recall@1/5/10 (the paper reports Recall@5), MAP@10, NDCG@5/10.
DEFAULT_CUTS: tuple[tuple[str, int], ...] = (
    ("recall", 1),
    ("recall", 5),
    ("recall", 10),
    ("map", 10),
    ("ndcg", 5),
    ("ndcg", 10),
    ("mrr", 10),
)


def query_scores(
    ranking: Sequence[Any], gold: Iterable[Any], cuts: Sequence[tuple[str, int]] = DEFAULT_CUTS
) -> dict[str, float] | None:
    """``{"recall@5": ..., ...}`` for one query; None when it has no gold ids (no defined score)."""
    g = set(gold)
    if not g:
        return None
    return {f"{name}@{k}": METRICS[name](ranking, g, k) for name, k in cuts}


def mean_scores(per_query: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Metric-wise mean over queries, plus ``n`` (the number of queries averaged)."""
    out: dict[str, float] = {"n": len(per_query)}
    if per_query:
        for key in per_query[0]:
            out[key] = sum(q[key] for q in per_query) / len(per_query)
    return out


def stratified(
    per_query: Sequence[Mapping[str, float]], labels: Sequence[Mapping[str, Any]], fields: Sequence[str]
) -> dict[str, Any]:
    """``{"overall": means, field: {value: means}}``: the means over all queries and within each value of
    each label field (``labels[i]`` belongs to ``per_query[i]``; values sorted for a stable report)."""
    if len(per_query) != len(labels):
        raise ValueError(f"{len(per_query)} score rows but {len(labels)} label rows")
    out: dict[str, Any] = {"overall": mean_scores(per_query)}
    for f in fields:
        groups: dict[str, list[Mapping[str, float]]] = {}
        for scores, lab in zip(per_query, labels):
            groups.setdefault(str(lab.get(f)), []).append(scores)
        out[f] = {v: mean_scores(groups[v]) for v in sorted(groups)}
    return out
