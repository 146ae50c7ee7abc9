"""HCTS: hyperbolic contrastive transfer for cross-domain recommendation (domains A and B share users).

Per domain: tangent-space embeddings, a learnable curvature K_d (init 1), an HGCF-style hyperbolic GNN (3
layers of Â aggregation in the tangent space at the origin, dense skip sum of all layers, then exp_o^{K_d}),
a hinge loss on squared distance max(0, d²(u,i+) − d²(u,i−) + m) and score −d².
Bridging maps between the two manifolds: f_{A→B}(x) = exp^{K_B}_o(W log^{K_A}_o(x)) ⊕_{K_B} exp^{K_B}_o(b), one
for users and one for items in each direction (four maps). Contrastive transfer in each direction with logits
−d²/τ against 3 uniform negatives: user→user (same user), user→item (a positive of the user in the other
domain), item→user (the item's user in the batch), item→item (the two positives of one user).

Departures / guesses: the norm regulariser (λ = 0.1) is HRCF's origin-aware term 1 / mean‖z − z̄‖ on the
batch's tangent vectors (root-aligned) — the spec names "a norm regulariser on tangent norms" without its
form; the curvature is softplus-parametrised so it stays positive; the contrastive terms use at most
``cts_batch`` anchors per step to bound cost on CPU.
"""

from __future__ import annotations

import math

import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from graph_rec.hyperbolic import lorentz as L
from graph_rec.recsys.cross_train import Triples


def _softplus_inv(y: float) -> float:
    return math.log(math.expm1(y))


class DomainHGNN(nn.Module):
    """Embeddings + learnable curvature + tangent-space GNN with dense skip sums for one domain."""

    def __init__(self, n_users: int, n_items: int, adj: torch.Tensor, dim: int, layers: int) -> None:
        super().__init__()
        self.n_users, self.layers = n_users, layers
        self.emb = nn.Embedding(n_users + n_items, dim)
        nn.init.normal_(self.emb.weight, std=0.1)
        self.raw_k = nn.Parameter(torch.tensor(_softplus_inv(1.0)))
        self.register_buffer("adj", adj)

    @property
    def k(self) -> torch.Tensor:
        return F.softplus(self.raw_k) + 1e-4

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.emb.weight
        z = h
        for _ in range(self.layers):
            h = torch.sparse.mm(self.adj, h)
            z = z + h
        x = L.expmap0_euclid(z, self.k)
        return x[: self.n_users], x[self.n_users :]


class ManifoldBridge(nn.Module):
    """exp^{K_to}_o(W log^{K_from}_o(x)) ⊕ exp^{K_to}_o(b)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lin = nn.Linear(dim, dim, bias=False)
        nn.init.eye_(self.lin.weight)  # start as the curvature rescaling map
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor, k_from: torch.Tensor, k_to: torch.Tensor) -> torch.Tensor:
        y = L.expmap0_euclid(self.lin(L.logmap0_euclid(x, k_from)), k_to)
        b = L.expmap0_euclid(self.bias, k_to).expand_as(y)
        return L.mobius_add(y, b, k_to)


class CsrSampler(nn.Module):
    """Uniform draws of a user's positive item from a CSR matrix, in torch (no host round trip)."""

    def __init__(self, m: sp.csr_matrix) -> None:
        super().__init__()
        self.register_buffer("indptr", torch.from_numpy(m.indptr.astype("int64")))
        self.register_buffer("indices", torch.from_numpy(m.indices.astype("int64")))

    def positive(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start, deg = self.indptr[users], self.indptr[users + 1] - self.indptr[users]
        off = (torch.rand(len(users), device=users.device) * deg.clamp_min(1)).long()
        return self.indices[(start + off).clamp(max=len(self.indices) - 1)], deg > 0


def info_nce(
    anchor: torch.Tensor, pos: torch.Tensor, negs: torch.Tensor, k: torch.Tensor, tau: float
) -> torch.Tensor:
    """anchor, pos: (B, d+1); negs: (B, n, d+1); logits −d²/τ, positive at index 0."""
    cands = torch.cat([pos.unsqueeze(1), negs], dim=1)
    logits = -L.sqdist(anchor.unsqueeze(1).expand_as(cands), cands, k) / tau
    return F.cross_entropy(logits, torch.zeros(len(anchor), dtype=torch.long, device=anchor.device))


def origin_aware_norm_reg(z: torch.Tensor) -> torch.Tensor:
    """HRCF's regulariser: 1 / mean ‖z − mean(z)‖ (pushes root-aligned tangent vectors away from the origin)."""
    return 1.0 / (z - z.mean(0, keepdim=True)).norm(dim=-1).mean().clamp_min(1e-6)


class HCTS(nn.Module):
    def __init__(
        self,
        n_users: int,
        n_items: tuple[int, int],
        adjs: tuple[torch.Tensor, torch.Tensor],
        trains: tuple[sp.csr_matrix, sp.csr_matrix],
        dim: int = 64,
        layers: int = 3,
        margin: float = 0.1,
        lambda_cts: float = 0.01,
        tau: float = 0.1,
        n_neg: int = 3,
        lambda_norm: float = 0.1,
        cts_batch: int = 1024,
    ) -> None:
        super().__init__()
        self.n_users, self.n_items = n_users, dict(zip("ab", n_items))
        self.margin, self.lambda_cts, self.tau, self.n_neg = margin, lambda_cts, tau, n_neg
        self.lambda_norm, self.cts_batch = lambda_norm, cts_batch
        self.enc = nn.ModuleDict(
            {d: DomainHGNN(n_users, n, a, dim, layers) for d, n, a in zip("ab", n_items, adjs)}
        )
        self.pos = nn.ModuleDict({d: CsrSampler(m) for d, m in zip("ab", trains)})
        # four bridges: users and items, A→B and B→A
        self.bridge = nn.ModuleDict(
            {f"{e}_{s}{t}": ManifoldBridge(dim) for e in "ui" for s, t in ("ab", "ba")}
        )

    def propagate(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {d: self.enc[d]() for d in "ab"}

    def _rec_loss(self, reps: dict, d: str, b: Triples) -> torch.Tensor:
        u, it = reps[d]
        k = self.enc[d].k
        dp = L.sqdist(u[b.users], it[b.pos], k)
        dn = L.sqdist(u[b.users], it[b.neg], k)
        return torch.relu(dp - dn + self.margin).mean()

    def _transfer_loss(self, reps: dict, s: str, t: str, b: Triples) -> torch.Tensor:
        users, i_s = b.users[: self.cts_batch], b.pos[: self.cts_batch]
        i_t, ok = self.pos[t].positive(users)
        users, i_s, i_t = users[ok], i_s[ok], i_t[ok]
        (us, is_), (ut, it_) = reps[s], reps[t]
        ks, kt = self.enc[s].k, self.enc[t].k
        mu = self.bridge[f"u_{s}{t}"](us[users], ks, kt)
        mi = self.bridge[f"i_{s}{t}"](is_[i_s], ks, kt)
        shape = (len(users), self.n_neg)
        neg_u = ut[torch.randint(0, self.n_users, shape, device=users.device)]
        neg_i = it_[torch.randint(0, self.n_items[t], shape, device=users.device)]
        return (
            info_nce(mu, ut[users], neg_u, kt, self.tau)  # user-user
            + info_nce(mu, it_[i_t], neg_i, kt, self.tau)  # user-item
            + info_nce(mi, ut[users], neg_u, kt, self.tau)  # item-user
            + info_nce(mi, it_[i_t], neg_i, kt, self.tau)  # item-item
        )

    def _norm_loss(self, reps: dict, d: str, b: Triples) -> torch.Tensor:
        u, it = reps[d]
        k = self.enc[d].k
        z = L.logmap0_euclid(torch.cat([u[b.users], it[b.pos]]), k)
        return origin_aware_norm_reg(z)

    def loss(self, reps: dict, batch: dict[str, Triples]) -> torch.Tensor:
        rec = sum(self._rec_loss(reps, d, batch[d]) for d in "ab")
        cts = self._transfer_loss(reps, "a", "b", batch["a"]) + self._transfer_loss(
            reps, "b", "a", batch["b"]
        )
        reg = sum(self._norm_loss(reps, d, batch[d]) for d in "ab")
        return rec + self.lambda_cts * cts + self.lambda_norm * reg

    def score(self, reps: dict, domain: str, users: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        u, it = reps[domain]
        k = self.enc[domain].k
        if items is None:
            return -L.sqdist(u[users].unsqueeze(1), it.unsqueeze(0), k)
        return -L.sqdist(u[users].unsqueeze(1).expand(-1, items.shape[1], -1), it[items], k)
