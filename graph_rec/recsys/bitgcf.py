"""BiTGCF-style Euclidean transfer baseline (Liu et al., CIKM 2020) for two domains with shared users.

Each domain runs LightGCN propagation on its own graph; after every layer the shared users' representations
are exchanged with the Laplacian (degree) weighting of BiTGCF, λ_u = n_u^A / (n_u^A + n_u^B):
u_A ← λ_u h_A + (1 − λ_u) h_B + W_A (h_A ⊙ h_B), and symmetrically for B (λ_u ↔ 1 − λ_u, W_B). The degree
term alone is the same vector in both domains; the per-domain element-wise-product term (BiTGCF's
"element-wise product" feature, W zero-initialised) lets them differ. Readout: mean over layers; score: dot
product; loss: BPR per domain + L2. Departure: BiTGCF concatenates its sum/Laplacian/product terms before one
linear layer per domain; we add them, with the Laplacian term unweighted.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from graph_rec.recsys.cross_train import Triples


class BiTGCF(nn.Module):
    def __init__(
        self,
        n_users: int,
        n_items: tuple[int, int],
        adjs: tuple[torch.Tensor, torch.Tensor],
        trains: tuple[sp.csr_matrix, sp.csr_matrix],
        dim: int = 64,
        layers: int = 3,
        reg: float = 1e-4,
    ) -> None:
        super().__init__()
        self.n_users, self.layers, self.reg = n_users, layers, reg
        self.emb = nn.ModuleDict({d: nn.Embedding(n_users + n, dim) for d, n in zip("ab", n_items)})
        for e in self.emb.values():
            nn.init.xavier_uniform_(e.weight)
        self.register_buffer("adj_a", adjs[0])
        self.register_buffer("adj_b", adjs[1])
        deg_a = np.asarray(trains[0].sum(1)).ravel()
        deg_b = np.asarray(trains[1].sum(1)).ravel()
        lam = deg_a / np.maximum(deg_a + deg_b, 1)
        self.register_buffer("lam_a", torch.tensor(lam, dtype=torch.float32).unsqueeze(1))
        self.prod = nn.ModuleDict({d: nn.Linear(dim, dim, bias=False) for d in "ab"})
        for lin in self.prod.values():
            nn.init.zeros_(lin.weight)

    def propagate(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        n = self.n_users
        ea, eb = self.emb["a"].weight, self.emb["b"].weight
        sa, sb = ea, eb
        for _ in range(self.layers):
            ha, hb = torch.sparse.mm(self.adj_a, ea), torch.sparse.mm(self.adj_b, eb)
            shared = self.lam_a * ha[:n] + (1 - self.lam_a) * hb[:n]
            prod = ha[:n] * hb[:n]
            ea = torch.cat([shared + self.prod["a"](prod), ha[n:]])
            eb = torch.cat([shared + self.prod["b"](prod), hb[n:]])
            sa, sb = sa + ea, sb + eb
        sa, sb = sa / (self.layers + 1), sb / (self.layers + 1)
        return {"a": (sa[:n], sa[n:]), "b": (sb[:n], sb[n:])}

    def loss(self, reps: dict, batch: dict[str, Triples]) -> torch.Tensor:
        total = torch.zeros((), device=self.lam_a.device)
        for d in "ab":
            u, it = reps[d]
            b = batch[d]
            su = (u[b.users] * it[b.pos]).sum(-1)
            sn = (u[b.users] * it[b.neg]).sum(-1)
            ego = self.emb[d].weight
            l2 = ego[b.users].pow(2).sum() + ego[self.n_users + b.pos].pow(2).sum()
            l2 = l2 + ego[self.n_users + b.neg].pow(2).sum()
            total = total - F.logsigmoid(su - sn).mean() + self.reg * l2 / (2 * len(b.users))
        return total

    def score(self, reps: dict, domain: str, users: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        u, it = reps[domain]
        if items is None:
            return u[users] @ it.T
        return (u[users].unsqueeze(1) * it[items]).sum(-1)
