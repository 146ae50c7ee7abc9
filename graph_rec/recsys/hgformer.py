"""Hgformer: hyperbolic graph transformer for collaborative filtering (Lorentz model, curvature -1/K, K = 1).

Pipeline: 64-d Xavier embeddings lifted by exp_o → LHGCN (L layers of Â-weighted Lorentz centroid
aggregation + LorentzBatchNorm, last layer out) → one hyperbolic cross-attention layer over LHGCN's output
(users over items, items over users) → tangent-space fusion exp_o(α log_o x_trm + (1-α) log_o x_gcn) → score
−d(u, i), margin loss max(0, d(u,i+) − d(u,i−) + m) with one uniform negative.

``attention_input``: ``gcn`` (default, the paper's wiring: the attention reads LHGCN's output, so local
structure and global attention compose) or ``embedding`` (the attention reads the lifted input embeddings, in
parallel with LHGCN — SGFormer-style parallel fusion, this package's first wiring, kept for comparison).
``learn_curvature``: the curvature K is a softplus-parametrised parameter (init 1) instead of fixed K = 1.

Departures: embeddings are Euclidean tangent vectors trained with Adam instead of Riemannian Adam on the
manifold, which is equivalent up to the optimiser's metric; random features are fixed per run (see
:mod:`hyp_attention`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from graph_rec.hyperbolic import LorentzBatchNorm
from graph_rec.hyperbolic import lorentz as L
from graph_rec.recsys.hyp_attention import HypCrossAttention

ATTENTION_INPUTS = ("gcn", "embedding")


class LHGCN(nn.Module):
    """Lorentz GCN: h <- BN(centroid_Â(h)) for L layers on the normalised graph (no self-loops)."""

    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()
        self.bns = nn.ModuleList(LorentzBatchNorm(dim) for _ in range(layers))

    def forward(self, x: torch.Tensor, adj: torch.Tensor, k: float | torch.Tensor) -> torch.Tensor:
        for bn in self.bns:
            x = bn(L.normalize(torch.sparse.mm(adj, x), k), k)
        return x


class Hgformer(nn.Module):
    def __init__(
        self,
        n_users: int,
        n_items: int,
        adj: torch.Tensor,
        dim: int = 64,
        layers: int = 3,
        heads: int = 2,
        tau: float = 1.0,
        alpha: float = 0.2,
        margin: float = 0.1,
        attention: str = "linear",
        n_features: int = 64,
        seed: int = 0,
        attention_input: str = "gcn",
        learn_curvature: bool = False,
    ) -> None:
        super().__init__()
        if attention_input not in ATTENTION_INPUTS:
            raise ValueError(f"attention_input {attention_input!r}: choose one of {ATTENTION_INPUTS}")
        self.n_users, self.n_items, self.alpha, self.margin = n_users, n_items, alpha, margin
        self.attention_input = attention_input
        # softplus(raw) + 1e-4 = 1 at init; frozen unless learn_curvature
        self.raw_k = nn.Parameter(
            torch.tensor(math.log(math.expm1(1.0 - 1e-4))), requires_grad=learn_curvature
        )
        self.emb = nn.Embedding(n_users + n_items, dim)
        nn.init.xavier_uniform_(self.emb.weight)
        self.register_buffer("adj", adj)
        self.gcn = LHGCN(dim, layers)
        self.user_attn = HypCrossAttention(dim, heads, tau, attention, n_features, seed)
        self.item_attn = HypCrossAttention(dim, heads, tau, attention, n_features, seed + 1)

    @property
    def k(self) -> torch.Tensor:
        return F.softplus(self.raw_k) + 1e-4

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.k
        x = L.expmap0_euclid(self.emb.weight, k)
        x_gcn = self.gcn(x, self.adj, k)
        src = x_gcn if self.attention_input == "gcn" else x
        xu, xi = src[: self.n_users], src[self.n_users :]
        x_trm = torch.cat([self.user_attn(xu, xi, k), self.item_attn(xi, xu, k)])
        fused = self.alpha * L.logmap0(x_trm, k) + (1 - self.alpha) * L.logmap0(x_gcn, k)
        out = L.expmap0(fused, k)
        return out[: self.n_users], out[self.n_users :]

    def loss(
        self,
        reps: tuple[torch.Tensor, torch.Tensor],
        users: torch.Tensor,
        pos: torch.Tensor,
        neg: torch.Tensor,
    ) -> torch.Tensor:
        u, it = reps
        d_pos = L.dist(u[users], it[pos], self.k)
        d_neg = L.dist(u[users], it[neg], self.k)
        return torch.relu(d_pos - d_neg + self.margin).mean()

    def score(
        self, reps: tuple[torch.Tensor, torch.Tensor], users: torch.Tensor, items: torch.Tensor | None
    ) -> torch.Tensor:
        # −d(u, i) is monotone in <u, i>_L, which is one matrix product.
        u, it = reps
        uf = torch.cat([-u[users, :1], u[users, 1:]], dim=-1)
        if items is None:
            return uf @ it.T
        return (uf.unsqueeze(1) * it[items]).sum(-1)
