"""LightGCN (He et al., 2020): the Euclidean reference row of every recommendation table.

E^{l+1} = Â E^l on the symmetric-normalised user–item graph, final embedding = mean over layers 0..L, score
= dot product, BPR loss + L2 on the batch's layer-0 embeddings (as the authors' code). No departures.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LightGCN(nn.Module):
    def __init__(
        self, n_users: int, n_items: int, adj: torch.Tensor, dim: int = 64, layers: int = 3, reg: float = 1e-4
    ) -> None:
        super().__init__()
        self.n_users, self.n_items, self.layers, self.reg = n_users, n_items, layers, reg
        self.emb = nn.Embedding(n_users + n_items, dim)
        nn.init.xavier_uniform_(self.emb.weight)
        self.register_buffer("adj", adj)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.emb.weight
        out = e
        for _ in range(self.layers):
            e = torch.sparse.mm(self.adj, e)
            out = out + e
        out = out / (self.layers + 1)
        return out[: self.n_users], out[self.n_users :]

    def loss(
        self,
        reps: tuple[torch.Tensor, torch.Tensor],
        users: torch.Tensor,
        pos: torch.Tensor,
        neg: torch.Tensor,
    ) -> torch.Tensor:
        u, it = reps
        su = (u[users] * it[pos]).sum(-1)
        sn = (u[users] * it[neg]).sum(-1)
        ego = self.emb.weight
        l2 = (
            ego[users].pow(2).sum()
            + ego[self.n_users + pos].pow(2).sum()
            + ego[self.n_users + neg].pow(2).sum()
        )
        return -F.logsigmoid(su - sn).mean() + self.reg * l2 / (2 * len(users))

    def score(
        self, reps: tuple[torch.Tensor, torch.Tensor], users: torch.Tensor, items: torch.Tensor | None
    ) -> torch.Tensor:
        u, it = reps
        if items is None:
            return u[users] @ it.T
        return (u[users].unsqueeze(1) * it[items]).sum(-1)
