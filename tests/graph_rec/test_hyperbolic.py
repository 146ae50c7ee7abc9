"""Property tests for the Lorentz toolkit: maps invert each other, points stay on the manifold, distances agree
with the Poincaré-ball formulas (geoopt's PoincareBall as the independent reference), large norms stay finite."""

from __future__ import annotations

import pytest
import torch
from geoopt import PoincareBall

from graph_rec.hyperbolic import HypLinear, LorentzBatchNorm
from graph_rec.hyperbolic import lorentz as L

torch.set_num_threads(1)
KS = [0.5, 1.0, 2.0]


def _points(n: int, d: int, k: float, scale: float = 1.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return L.expmap0_euclid(scale * torch.randn(n, d, generator=g, dtype=torch.float64), k)


def _on_manifold(x: torch.Tensor, k: float, tol: float = 1e-10) -> bool:
    # <x,x>_L = -K up to rounding, which grows with x_0^2 (the two terms cancel)
    err = (L.inner(x, x) + k).abs() / (k + x[..., 0].pow(2))
    return bool((err < tol).all()) and bool((x[..., 0] > 0).all())


@pytest.mark.parametrize("k", KS)
def test_exp_log_at_origin_invert(k: float) -> None:
    v = torch.randn(64, 8, dtype=torch.float64) * 2
    x = L.expmap0_euclid(v, k)
    assert _on_manifold(x, k)
    torch.testing.assert_close(L.logmap0_euclid(x, k), v, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(L.expmap0(L.logmap0(x, k), k), x, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("k", KS)
def test_exp_log_at_point_invert_and_distance(k: float) -> None:
    x, y = _points(32, 6, k, scale=0.5, seed=1), _points(32, 6, k, scale=0.5, seed=2)
    u = L.logmap(x, y, k)
    torch.testing.assert_close(L.inner(x, u), torch.zeros(32, dtype=torch.float64), atol=1e-8, rtol=0)
    torch.testing.assert_close(L.expmap(x, u, k), y, rtol=1e-7, atol=1e-7)
    # |log_x(y)|_L = d(x, y)
    torch.testing.assert_close(L.inner(u, u).sqrt(), L.dist(x, y, k), rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("k", KS)
def test_distance_matches_poincare_ball(k: float) -> None:
    x, y = _points(50, 5, k, scale=0.5, seed=3), _points(50, 5, k, scale=0.5, seed=4)
    ball = PoincareBall(c=1.0 / k)
    px, py = L.lorentz_to_poincare(x, k), L.lorentz_to_poincare(y, k)
    assert (px.norm(dim=-1) < k**0.5).all()
    torch.testing.assert_close(L.dist(x, y, k), ball.dist(px, py), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(L.poincare_to_lorentz(px, k), x, rtol=1e-8, atol=1e-8)
    # distance to the origin = tangent norm
    torch.testing.assert_close(
        L.dist(x, L.origin(5, k, torch.float64).expand_as(x), k), L.logmap0_euclid(x, k).norm(dim=-1)
    )


@pytest.mark.parametrize("k", KS)
def test_mobius_add_matches_poincare_ball(k: float) -> None:
    x, y = _points(40, 4, k, scale=0.7, seed=5), _points(40, 4, k, scale=0.7, seed=6)
    z = L.mobius_add(x, y, k)
    assert _on_manifold(z, k)
    ball = PoincareBall(c=1.0 / k)
    ref = ball.mobius_add(L.lorentz_to_poincare(x, k), L.lorentz_to_poincare(y, k))
    torch.testing.assert_close(L.lorentz_to_poincare(z, k), ref, rtol=1e-7, atol=1e-8)
    o = L.origin(4, k, torch.float64).expand_as(x)
    torch.testing.assert_close(L.mobius_add(o, y, k), y)
    torch.testing.assert_close(L.mobius_add(x, o, k), x)


@pytest.mark.parametrize("k", KS)
def test_parallel_transport_at_origin(k: float) -> None:
    y = _points(20, 5, k, seed=7)
    v = L.lift(torch.randn(20, 5, dtype=torch.float64))
    w = L.transp0(y, v, k)
    torch.testing.assert_close(L.inner(y, w), torch.zeros(20, dtype=torch.float64), atol=1e-8, rtol=0)
    torch.testing.assert_close(L.inner(w, w), L.inner(v, v))  # isometry
    torch.testing.assert_close(L.transp0back(y, w, k), v)
    # geoopt's general transport agrees
    from geoopt.manifolds.lorentz import math as gm

    torch.testing.assert_close(w, gm.parallel_transport0(y, v, k=torch.tensor(k, dtype=torch.float64)))


@pytest.mark.parametrize("k", KS)
def test_centroid_minimises_squared_lorentz_distance(k: float) -> None:
    x = _points(30, 3, k, seed=8)
    c = L.centroid(x, k)
    assert _on_manifold(c, k)
    # Law et al.: the centroid minimises sum_i -<x_i, c>_L (squared Lorentzian distance) over the manifold.
    obj = lambda p: -L.inner(x, p.expand_as(x)).sum()  # noqa: E731
    for s in range(5):
        other = L.mobius_add(c, _points(1, 3, k, scale=0.05, seed=100 + s)[0], k)
        assert obj(c) <= obj(other) + 1e-9
    # weighted centroid with a one-hot weight returns that point
    w = torch.zeros(30, dtype=torch.float64)
    w[4] = 1.0
    torch.testing.assert_close(L.centroid(x, k, w), x[4])


def test_large_norms_stay_finite() -> None:
    v = torch.randn(16, 8) * 1e4  # float32, far past cosh overflow
    v.requires_grad_(True)
    x = L.expmap0_euclid(v, 1.0)
    assert torch.isfinite(x).all()
    y = L.expmap0_euclid(torch.randn(16, 8) * 30, 1.0)
    d = L.dist(x, y, 1.0)
    back = L.logmap0(x, 1.0)
    assert torch.isfinite(d).all() and torch.isfinite(back).all()
    (d.sum() + back.sum()).backward()
    assert torch.isfinite(v.grad).all()
    # identical points: distance 0 up to float32 rounding of <x,x>_L, with finite gradients
    w = torch.randn(4, 3, requires_grad=True)
    p = L.expmap0_euclid(w, 1.0)
    dd = L.dist(p, p, 1.0)
    assert torch.allclose(dd, torch.zeros(4), atol=5e-3)
    dd.sum().backward()
    assert torch.isfinite(w.grad).all()


def test_learnable_curvature_gets_gradient() -> None:
    k = torch.tensor(1.0, requires_grad=True)
    x = L.expmap0_euclid(torch.randn(10, 4), k)
    y = L.expmap0_euclid(torch.randn(10, 4), k)
    L.dist(x, y, k).sum().backward()
    assert k.grad is not None and torch.isfinite(k.grad)


def test_hyplinear_and_batchnorm_output_on_manifold() -> None:
    k = 1.5
    torch.manual_seed(0)
    x = L.expmap0_euclid(torch.randn(100, 8), k)
    lin = HypLinear(8, 6)
    y = lin(x, k)
    assert y.shape == (100, 7)
    assert torch.allclose(L.inner(y, y), torch.full((100,), -k), rtol=1e-4)
    bn = LorentzBatchNorm(6)
    z = bn(y, k)
    assert torch.allclose(L.inner(z, z), torch.full((100,), -k), rtol=1e-4)
    # training mode: re-centred at beta = origin, Fréchet variance rescaled to gamma^2 = 1
    mu = L.centroid(z, k)
    assert L.dist(mu, L.origin(6, k), k) < 0.05
    assert abs(float(L.dist(z, mu.expand_as(z), k).pow(2).mean().detach()) - 1.0) < 0.1
    z.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in [*lin.parameters(), *bn.parameters()])
    bn.eval()
    assert torch.isfinite(bn(y, k)).all()
