"""Ranking metrics: full ranking (Recall/NDCG/HR@K over all items, training items masked) and sampled ranking
(one held-out positive against its 99 negatives: HR@K, NDCG@K).

Conventions: Recall@K = hits / |test items of the user| (LightGCN/Hgformer code; not min(K, |test|));
NDCG@K uses binary relevance with the ideal DCG over min(K, |test|) items; ties in the sampled protocol count
against the positive (a model that scores everything equal gets HR = 0, not 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from graph_rec.recsys.data import SampledTest

# (users[B], items[B, C] or None for all items) -> scores[B, C or n_items]
ScoreFn = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


@torch.no_grad()
def full_ranking(
    score: ScoreFn,
    test: sp.csr_matrix,
    exclude: Sequence[sp.csr_matrix],
    ks: Sequence[int] = (5, 10, 20, 50),
    batch_size: int = 512,
) -> dict[str, float]:
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    max_k = max(ks)
    sums = {f"{m}@{k}": 0.0 for m in ("recall", "ndcg", "hr") for k in ks}
    discounts = 1.0 / np.log2(np.arange(2, max_k + 2))
    for start in range(0, len(users), batch_size):
        ub = users[start : start + batch_size]
        s = score(torch.from_numpy(ub), None).float()
        for ex in exclude:
            rows = ex[ub].tocoo()
            s[torch.from_numpy(rows.row).long(), torch.from_numpy(rows.col).long()] = -torch.inf
        top = torch.topk(s, max_k, dim=1).indices.numpy()
        truth = test[ub]
        hit = np.take_along_axis(truth.toarray(), top, axis=1) > 0  # (B, max_k)
        n_true = np.diff(truth.indptr)
        for k in ks:
            h = hit[:, :k]
            dcg = (h * discounts[:k]).sum(1)
            idcg = np.cumsum(discounts[:k])[np.minimum(n_true, k) - 1]
            sums[f"recall@{k}"] += float((h.sum(1) / n_true).sum())
            sums[f"ndcg@{k}"] += float((dcg / idcg).sum())
            sums[f"hr@{k}"] += float(h.any(1).sum())
    return {name: v / len(users) for name, v in sums.items()}


@torch.no_grad()
def sampled_ranking(
    score: ScoreFn, test: SampledTest, ks: Sequence[int] = (5, 10, 20), batch_size: int = 2048
) -> dict[str, float]:
    ranks = []
    for start in range(0, len(test.users), batch_size):
        u = torch.from_numpy(test.users[start : start + batch_size])
        it = torch.from_numpy(test.items[start : start + batch_size])
        s = score(u, it).float()
        ranks.append((s[:, 1:] >= s[:, :1]).sum(1))
    rank = torch.cat(ranks).double()
    out: dict[str, float] = {}
    for k in ks:
        hit = rank < k
        out[f"hr@{k}"] = float(hit.double().mean())
        out[f"ndcg@{k}"] = float((hit.double() / torch.log2(rank + 2)).mean())
    out["mrr"] = float((1.0 / (rank + 1)).mean())
    return out
