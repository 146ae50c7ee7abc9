"""Lorentz-model layers: HypLinear and LorentzBatchNorm.

* ``HypLinear`` is the "fully hyperbolic" Lorentz linear layer of Chen et al. (2022), the form Hypformer and
  Hgformer use: a Euclidean affine map on all d+1 coordinates gives the space part, and the time part is
  recomputed so the output lies on the hyperboloid. No tangent-space round trip.
* ``LorentzBatchNorm`` follows Bdeir et al. (2024): centre at the batch's Lorentz centroid, rescale the
  Fréchet variance, re-centre at a learned point β. Departure: β is parametrised as a tangent vector at the
  origin (exp_o(β_t)) rather than a manifold parameter, so a plain torch optimiser can train it; the running
  mean is kept as a tangent vector at the origin so it does not depend on a learnable curvature.
"""

from __future__ import annotations

import torch
from torch import nn

from graph_rec.hyperbolic import lorentz as L


class HypLinear(nn.Module):
    """Lorentz linear layer: (d_in + 1)-vectors on the hyperboloid -> (d_out + 1)-vectors on it."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.lin = nn.Linear(in_dim + 1, out_dim, bias=bias)
        self.drop = nn.Dropout(dropout)
        nn.init.xavier_uniform_(self.lin.weight, gain=0.5)  # keeps early outputs near the origin
        if bias:
            nn.init.zeros_(self.lin.bias)

    def forward(self, x: torch.Tensor, k: float | torch.Tensor) -> torch.Tensor:
        ys = self.lin(self.drop(x))
        return L.project(L.lift(ys), k)


class LorentzBatchNorm(nn.Module):
    """Riemannian batch norm on the hyperboloid over the first dimension of an (N, d+1) tensor."""

    def __init__(self, dim: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.beta_t = nn.Parameter(torch.zeros(dim))
        self.gamma = nn.Parameter(torch.ones(()))
        self.momentum = momentum
        self.eps = eps
        self.register_buffer("running_mean_t", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(()))

    def forward(self, x: torch.Tensor, k: float | torch.Tensor) -> torch.Tensor:
        if self.training:
            mu = L.centroid(x, k)
            var = L.dist(x, mu.expand_as(x), k).pow(2).mean()
            with torch.no_grad():
                m = self.momentum
                self.running_mean_t.lerp_(L.logmap0_euclid(mu.detach(), k), m)
                self.running_var.lerp_(var.detach(), m)
        else:
            mu = L.expmap0_euclid(self.running_mean_t, k)
            var = self.running_var
        v = L.logmap(mu.expand_as(x), x, k)
        v0 = L.transp0back(mu.expand_as(x), v, k)
        v0 = v0 * (self.gamma / torch.sqrt(var + self.eps))
        beta = L.expmap0_euclid(self.beta_t, k).expand_as(x)
        return L.expmap(beta, L.transp0(beta, v0, k), k)
