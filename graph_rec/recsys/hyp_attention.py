"""Hyperbolic cross-attention on the Lorentz model, exact and linear-time (random-feature) forms.

Attention weight of query q on key k: softmax_k(<q,k>_L / τ); the output is the attention-weighted Lorentz
centroid of the values. Because <q,k>_L = q̃ · k with q̃ = (-q_0, q_s), the kernel exp(<q,k>_L / τ) is the
softmax kernel exp(x · y) of x = q̃/√τ, y = k/√τ, so Performer's positive orthogonal random features
(FAVOR+, Choromanski et al. 2021) give an unbiased linear-time estimate: φ(x) = exp(Ωx − |x|²/2)/√m with m
orthogonal Gaussian rows Ω. The Lorentz centroid is scale-invariant, so the row normaliser of softmax is not
even needed for the output; it is kept so both forms return the same (normalised) weights.

Departure from Hgformer's code: the random features are drawn once per module (seeded buffer) rather than
redrawn during training, so evaluation is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from graph_rec.hyperbolic import HypLinear
from graph_rec.hyperbolic import lorentz as L

AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float, "torch.Tensor | None"], torch.Tensor]
ATTENTION: dict[str, AttentionFn] = {}


def _register(name: str) -> Callable[[AttentionFn], AttentionFn]:
    def deco(fn: AttentionFn) -> AttentionFn:
        ATTENTION[name] = fn
        return fn

    return deco


def _time_flip(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([-x[..., :1], x[..., 1:]], dim=-1)


@_register("exact")
def exact_weighted_sum(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tau: float, omega: torch.Tensor | None = None
) -> torch.Tensor:
    """sum_j softmax_j(<q_i,k_j>_L / τ) v_j — O(Nq Nk)."""
    logits = _time_flip(q) @ k.T / tau
    return torch.softmax(logits, dim=-1) @ v


def orthogonal_features(m: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """m Gaussian rows, orthogonal within blocks of ``dim``, with chi-distributed norms (FAVOR+)."""
    blocks = []
    for _ in range(math.ceil(m / dim)):
        qmat, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator))
        # Without this sign fix LAPACK's Q is not Haar-distributed and the estimator is biased (measured).
        qmat = qmat * torch.sign(torch.diagonal(r))
        blocks.append(qmat.T)
    w = torch.cat(blocks)[:m]
    norms = torch.randn(m, dim, generator=generator).norm(dim=1, keepdim=True)
    return w * norms


def _phi(x: torch.Tensor, omega: torch.Tensor, per_row: bool) -> torch.Tensor:
    z = x @ omega.T - 0.5 * x.pow(2).sum(-1, keepdim=True)
    # A per-query or a global constant cancels between numerator and denominator; it only prevents overflow.
    stab = z.amax(dim=-1, keepdim=True) if per_row else z.amax()
    return torch.exp(z - stab.detach()) / math.sqrt(omega.shape[0])


@_register("linear")
def linear_weighted_sum(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tau: float, omega: torch.Tensor | None = None
) -> torch.Tensor:
    """Random-feature estimate of :func:`exact_weighted_sum` in O((Nq + Nk) m d)."""
    assert omega is not None, "linear attention needs random features"
    s = math.sqrt(tau)
    fq = _phi(_time_flip(q) / s, omega, per_row=True)  # (Nq, m)
    fk = _phi(k / s, omega, per_row=False)  # (Nk, m)
    num = fq @ (fk.T @ v)
    den = fq @ fk.sum(0, keepdim=True).T
    return num / den.clamp_min(1e-30)


class HypCrossAttention(nn.Module):
    """Multi-head Lorentz attention of one node set over another, with Möbius residual and centroid head merge."""

    def __init__(
        self,
        dim: int,
        heads: int = 2,
        tau: float = 1.0,
        kind: str = "linear",
        n_features: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if kind not in ATTENTION:
            raise ValueError(f"attention kind {kind!r}: choose one of {sorted(ATTENTION)}")
        self.kind, self.tau = kind, tau
        self.q = nn.ModuleList(HypLinear(dim, dim) for _ in range(heads))
        self.k = nn.ModuleList(HypLinear(dim, dim) for _ in range(heads))
        self.v = nn.ModuleList(HypLinear(dim, dim) for _ in range(heads))
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("omega", orthogonal_features(n_features, dim + 1, g))

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, kk: float | torch.Tensor, kind: str | None = None
    ) -> torch.Tensor:
        attend = ATTENTION[kind or self.kind]
        heads = []
        for wq, wk, wv in zip(self.q, self.k, self.v):
            agg = attend(wq(queries, kk), wk(keys, kk), wv(keys, kk), self.tau, self.omega)
            heads.append(L.normalize(agg, kk))
        merged = L.centroid(torch.stack(heads, dim=-2), kk)
        return L.mobius_add(queries, merged, kk)
