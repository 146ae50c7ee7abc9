"""Lorentz (hyperboloid) model of hyperbolic space with curvature -1/K, as plain functions.

Points x in R^{d+1} satisfy <x,x>_L = -K with x_0 > 0, where <x,y>_L = -x_0 y_0 + sum_i x_i y_i; the origin is
o = (sqrt K, 0, ..., 0). Tangent vectors at o have a zero time coordinate, so callers that hold Euclidean
d-vectors use :func:`lift` / :func:`expmap0_euclid` to get points.

geoopt (``geoopt.manifolds.lorentz.math``, same convention: ``k`` = K) provides inner product, distance,
projection, exp/log maps and parallel transport; this module wraps them with the guards our models need:

* tangent norms are clipped at ``MAX_TANGENT_NORM * sqrt(K)`` before ``expmap0`` so cosh/sinh stay finite in
  float32 (cosh overflows past ~88); maps invert each other exactly below the clip;
* the time coordinate is recomputed after every map (``project``) so rounding does not leave the manifold.

geoopt has no Lorentz centroid or Möbius addition: the centroid is Law et al. (2019)'s closed form and Möbius
addition is x ⊕ y = exp_x(PT_{o→x}(log_o y)), which equals the Poincaré-ball Möbius addition under the
isometry (a test checks this against geoopt's PoincareBall).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from geoopt.manifolds.lorentz import math as gm

__all__ = [
    "MAX_TANGENT_NORM",
    "as_k",
    "centroid",
    "dist",
    "expmap",
    "expmap0",
    "expmap0_euclid",
    "inner",
    "lift",
    "logmap",
    "logmap0",
    "logmap0_euclid",
    "lorentz_to_poincare",
    "mobius_add",
    "normalize",
    "origin",
    "poincare_to_lorentz",
    "project",
    "sqdist",
    "transp0",
    "transp0back",
]

# In units of sqrt(K). x_0^2 ~ e^{2n}/4 and products x_0 y_0 must stay below float32's 3.4e38: e^64 ~ 6e27.
MAX_TANGENT_NORM = 32.0
_EPS = 1e-7


def as_k(k: float | torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """Curvature parameter K (> 0) as a tensor on ``like``'s device/dtype."""
    if isinstance(k, torch.Tensor):
        return k if like is None else k.to(like.dtype)
    dtype = like.dtype if like is not None else torch.get_default_dtype()
    device = like.device if like is not None else None
    return torch.tensor(float(k), dtype=dtype, device=device)


def inner(x: torch.Tensor, y: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
    """Minkowski inner product <x,y>_L over the last dimension."""
    return gm.inner(x, y, keepdim=keepdim)


def origin(dim: int, k: float | torch.Tensor = 1.0, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The origin (sqrt K, 0, ..., 0) of the d-dimensional hyperboloid (a (d+1)-vector)."""
    kk = as_k(k)
    o = torch.zeros(dim + 1, dtype=dtype or kk.dtype, device=kk.device)
    o[0] = kk.sqrt()
    return o


def project(x: torch.Tensor, k: float | torch.Tensor) -> torch.Tensor:
    """Put x on the hyperboloid by recomputing x_0 = sqrt(K + |x_s|^2) from the space part."""
    kk = as_k(k, x)
    xs = x[..., 1:]
    x0 = torch.sqrt(kk + xs.pow(2).sum(-1, keepdim=True))
    return torch.cat([x0, xs], dim=-1)


def lift(v: torch.Tensor) -> torch.Tensor:
    """Euclidean d-vector -> tangent vector at the origin ((d+1)-vector with zero time coordinate)."""
    return F.pad(v, (1, 0))


def _clip_tangent(u: torch.Tensor, kk: torch.Tensor) -> torch.Tensor:
    # Rescale only the vectors whose norm would overflow cosh; others pass through bit-identical.
    n = u.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    cap = MAX_TANGENT_NORM * kk.sqrt()
    return u * torch.clamp(cap / n, max=1.0)


def expmap0(u: torch.Tensor, k: float | torch.Tensor) -> torch.Tensor:
    """exp_o(u) for a tangent vector u at the origin ((d+1)-vector; its time coordinate is ignored)."""
    kk = as_k(k, u)
    us = _clip_tangent(u[..., 1:], kk)
    n = us.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    sk = kk.sqrt()
    xs = sk * torch.sinh(n / sk) * us / n
    return project(torch.cat([torch.zeros_like(n), xs], dim=-1), kk)


def expmap0_euclid(v: torch.Tensor, k: float | torch.Tensor) -> torch.Tensor:
    """exp_o of a Euclidean d-vector (the usual way embeddings are lifted onto the manifold)."""
    return expmap0(lift(v), k)


def logmap0(x: torch.Tensor, k: float | torch.Tensor) -> torch.Tensor:
    """log_o(x): a tangent vector at the origin with zero time coordinate."""
    kk = as_k(k, x)
    xs = x[..., 1:]
    n = xs.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    sk = kk.sqrt()
    # arsinh(|x_s|/sqrt K) is the geodesic distance to o; it is better conditioned near o than arcosh(x_0/sqrt K).
    d = sk * torch.asinh(n / sk)
    return lift(d * xs / n)


def logmap0_euclid(x: torch.Tensor, k: float | torch.Tensor) -> torch.Tensor:
    """log_o(x) without the (zero) time coordinate: a Euclidean d-vector."""
    return logmap0(x, k)[..., 1:]


def expmap(x: torch.Tensor, u: torch.Tensor, k: float | torch.Tensor) -> torch.Tensor:
    """exp_x(u) for u tangent at x (geoopt), with the norm clip and re-projection."""
    kk = as_k(k, u)
    n = gm.norm(u, keepdim=True)
    cap = MAX_TANGENT_NORM * kk.sqrt()
    u = u * torch.clamp(cap / n.clamp_min(_EPS), max=1.0)
    return project(gm.expmap(x, u, k=kk), kk)


def logmap(x: torch.Tensor, y: torch.Tensor, k: float | torch.Tensor) -> torch.Tensor:
    """log_x(y) (geoopt)."""
    return gm.logmap(x, y, k=as_k(k, x))


def dist(x: torch.Tensor, y: torch.Tensor, k: float | torch.Tensor, keepdim: bool = False) -> torch.Tensor:
    """Geodesic distance sqrt(K) * arcosh(-<x,y>_L / K) (geoopt; arcosh computed in float64)."""
    kk = as_k(k, x)
    # Clamp so rounding that puts -<x,y>/K slightly below 1 cannot produce NaN.
    z = (-inner(x, y, keepdim=keepdim) / kk).clamp_min(1.0 + 1e-7)
    return kk.sqrt() * gm.arcosh(z)


def sqdist(x: torch.Tensor, y: torch.Tensor, k: float | torch.Tensor) -> torch.Tensor:
    """Squared geodesic distance (what HGCF/HCTS put in their hinge and contrastive losses)."""
    return dist(x, y, k).pow(2)


def _plus_origin(y: torch.Tensor, sk: torch.Tensor) -> torch.Tensor:
    return torch.cat([y[..., :1] + sk, y[..., 1:]], dim=-1)


def transp0(y: torch.Tensor, v: torch.Tensor, k: float | torch.Tensor) -> torch.Tensor:
    """Parallel transport of v (tangent at o) to T_y (closed form, no log map; finite when y = o)."""
    kk = as_k(k, y)
    sk = kk.sqrt()
    # PT_{o->y}(v) = v + <y, v>_L / (K + sqrt(K) y_0) * (o + y)   (v has v_0 = 0 so <o, v>_L = 0).
    coef = inner(y, v, keepdim=True) / (kk + sk * y[..., :1])
    return v + coef * _plus_origin(y, sk)


def transp0back(x: torch.Tensor, v: torch.Tensor, k: float | torch.Tensor) -> torch.Tensor:
    """Parallel transport of v from T_x back to the origin."""
    kk = as_k(k, x)
    sk = kk.sqrt()
    # PT_{x->o}(v) = v + <o, v>_L / (K - <x, o>_L) * (x + o), with <o, v>_L = -sqrt(K) v_0.
    coef = sk * v[..., :1] / (kk + sk * x[..., :1])
    return v - coef * _plus_origin(x, sk)


def mobius_add(x: torch.Tensor, y: torch.Tensor, k: float | torch.Tensor) -> torch.Tensor:
    """x ⊕ y = exp_x(PT_{o→x}(log_o y)): the hyperboloid form of Möbius addition (o ⊕ y = y, x ⊕ o = x)."""
    return expmap(x, transp0(x, logmap0(y, k), k), k)


def centroid(x: torch.Tensor, k: float | torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Lorentz centroid (Law et al. 2019): sqrt(K) m / sqrt(|<m,m>_L|) with m = sum_i w_i x_i.

    ``x`` is (..., n, d+1) and ``weights`` (..., n), non-negative (uniform when None). For a sparse weighted
    sum computed elsewhere (graph aggregation), call :func:`normalize` on the sum directly.
    """
    m = x.mean(dim=-2) if weights is None else (weights.unsqueeze(-1) * x).sum(dim=-2)
    return normalize(m, k)


def normalize(m: torch.Tensor, k: float | torch.Tensor) -> torch.Tensor:
    """Rescale a time-like vector (e.g. a non-negative combination of points) onto the hyperboloid."""
    kk = as_k(k, m)
    denom = inner(m, m, keepdim=True).abs().clamp_min(1e-8).sqrt()
    return project(kk.sqrt() * m / denom, kk)


def lorentz_to_poincare(x: torch.Tensor, k: float | torch.Tensor) -> torch.Tensor:
    """Isometry onto the Poincaré ball of curvature -1/K (radius sqrt K): p = sqrt(K) x_s / (x_0 + sqrt K)."""
    sk = as_k(k, x).sqrt()
    return sk * x[..., 1:] / (x[..., :1] + sk)


def poincare_to_lorentz(p: torch.Tensor, k: float | torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`lorentz_to_poincare`."""
    kk = as_k(k, p)
    sk = kk.sqrt()
    n2 = p.pow(2).sum(-1, keepdim=True)
    denom = (kk - n2).clamp_min(1e-12)
    x0 = sk * (kk + n2) / denom
    xs = 2 * kk * p / denom
    return torch.cat([x0, xs], dim=-1)
