"""LightGCN, Hgformer, HCTS and BiTGCF on tiny graphs: forward/backward, the exact vs random-feature attention
agreement, and short training smoke runs that must beat chance."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from graph_rec.hyperbolic import lorentz as L
from graph_rec.recsys.bitgcf import BiTGCF
from graph_rec.recsys.cross_train import Triples, evaluate_cross, fit_cross
from graph_rec.recsys.data import CrossDomainPair, LooDomain, SampledTest, norm_adj, sample_negatives, to_csr
from graph_rec.recsys.hcts import HCTS
from graph_rec.recsys.hgformer import Hgformer
from graph_rec.recsys.hyp_attention import (
    HypCrossAttention,
    exact_weighted_sum,
    linear_weighted_sum,
    orthogonal_features,
)
from graph_rec.recsys.lightgcn import LightGCN
from graph_rec.recsys.metrics import full_ranking, sampled_ranking
from graph_rec.recsys.train import FitConfig, fit, score_fn

torch.set_num_threads(1)


def _clustered(n_users: int = 60, n_items: int = 40, groups: int = 4, per_user: int = 8, seed: int = 0):
    """Users of group g interact with items of group g: a structure any working recommender must find."""
    rng = np.random.default_rng(seed)
    ug, ig = np.arange(n_users) % groups, np.arange(n_items) % groups
    pairs = []
    for u in range(n_users):
        cand = np.flatnonzero(ig == ug[u])
        pairs += [(u, i) for i in rng.choice(cand, per_user, replace=False)]
    pairs = np.array(pairs)
    test_mask = np.zeros(len(pairs), dtype=bool)
    test_mask[::per_user] = True  # one held-out item per user
    return pairs[~test_mask], pairs[test_mask]


def _attention_weights(
    q: torch.Tensor, k: torch.Tensor, omega: torch.Tensor | None, tau: float
) -> torch.Tensor:
    # the weights themselves: aggregate one-hot "values"
    eye = torch.eye(len(k), dtype=q.dtype)
    if omega is None:
        return exact_weighted_sum(q, k, eye, tau)
    return linear_weighted_sum(q, k, eye, tau, omega)


def test_linear_attention_agrees_with_exact_on_small_graph() -> None:
    torch.manual_seed(0)
    users = L.expmap0_euclid(0.2 * torch.randn(12, 16, dtype=torch.float64), 1.0)
    items = L.expmap0_euclid(0.2 * torch.randn(15, 16, dtype=torch.float64), 1.0)
    exact = _attention_weights(users, items, None, 1.0)
    errs = {}
    for m in (64, 16384):
        om = orthogonal_features(m, 17, torch.Generator().manual_seed(1)).double()
        approx = _attention_weights(users, items, om, 1.0)
        torch.testing.assert_close(approx.sum(-1), torch.ones(12, dtype=torch.float64))
        errs[m] = float((approx - exact).abs().mean() / exact.mean())
    uniform = float((exact - 1 / 15).abs().mean() / exact.mean())
    assert errs[64] < 0.25 and errs[64] < uniform  # 64 features: close, and closer than ignoring the scores
    assert errs[16384] < 0.03 and errs[16384] < errs[64] / 3  # unbiased: error shrinks ~ 1/sqrt(m)


def test_attention_module_exact_and_linear_outputs_agree() -> None:
    torch.manual_seed(0)
    att = HypCrossAttention(16, heads=2, tau=1.0, kind="linear", n_features=1024, seed=0).double()
    q = L.expmap0_euclid(0.2 * torch.randn(10, 16, dtype=torch.float64), 1.0)
    kv = L.expmap0_euclid(0.2 * torch.randn(20, 16, dtype=torch.float64), 1.0)
    a, b = att(q, kv, 1.0, kind="exact"), att(q, kv, 1.0, kind="linear")
    assert torch.allclose(L.inner(b, b), torch.full((10,), -1.0, dtype=torch.float64), atol=1e-8)
    spread = L.dist(a, L.centroid(a, 1.0).expand_as(a), 1.0).mean()
    assert L.dist(a, b, 1.0).mean() < 0.1 * spread


@pytest.mark.parametrize("attention", ["exact", "linear"])
def test_hgformer_forward_backward(attention: str) -> None:
    train, _ = _clustered()
    r = to_csr(train, 60, 40)
    m = Hgformer(60, 40, norm_adj(r), dim=16, layers=2, attention=attention)
    u, it = m.propagate()
    assert u.shape == (60, 17) and it.shape == (40, 17)
    assert torch.allclose(L.inner(u, u), torch.full((60,), -1.0), rtol=1e-3)
    loss = m.loss((u, it), torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([2, 3]))
    loss.backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    s = m.score((u, it), torch.tensor([0, 1]), None)
    d = L.dist(u[:2].unsqueeze(1), it.unsqueeze(0), 1.0)
    assert torch.equal(s.argsort(dim=1, descending=True), d.argsort(dim=1))  # score ranks like −d


def test_hgformer_attention_reads_lhgcn_output_or_embeddings() -> None:
    """``gcn`` (the paper): the attention branch sees LHGCN's output, so changing the graph changes it; with
    ``embedding`` the attention branch does not depend on the graph at all."""
    train, _ = _clustered()
    r = to_csr(train, 60, 40)
    other = to_csr(_clustered(seed=1)[0], 60, 40)

    def branch(wiring: str, graph: Any) -> torch.Tensor:
        torch.manual_seed(0)
        m = Hgformer(
            60, 40, norm_adj(graph), dim=8, layers=1, attention="exact", attention_input=wiring
        ).eval()
        m.alpha = 1.0  # the output is the attention branch alone
        with torch.no_grad():
            return torch.cat(m.propagate())

    assert not torch.allclose(branch("gcn", r), branch("gcn", other), atol=1e-4)
    assert torch.allclose(branch("embedding", r), branch("embedding", other), atol=1e-6)
    with pytest.raises(ValueError, match="attention_input"):
        Hgformer(60, 40, norm_adj(r), dim=8, attention_input="values")


def test_hgformer_curvature_is_fixed_unless_learned() -> None:
    train, _ = _clustered()
    r = to_csr(train, 60, 40)
    for learn in (False, True):
        torch.manual_seed(0)
        m = Hgformer(60, 40, norm_adj(r), dim=8, layers=1, learn_curvature=learn, margin=0.5)
        assert m.k.item() == pytest.approx(1.0, abs=1e-6)
        fit(m, r, FitConfig(epochs=3, batch_size=128, lr=0.05, log=lambda s: None), seed=0)
        moved = abs(m.k.item() - 1.0) > 1e-4
        assert moved == learn, (learn, m.k.item())
        u, _ = m.propagate()
        assert torch.allclose(
            L.inner(u, u), torch.full((60,), -m.k.item()), rtol=1e-3
        )  # on the K-hyperboloid


@pytest.mark.parametrize("name", ["lightgcn", "hgformer"])
def test_single_domain_training_beats_chance(name: str) -> None:
    train, test = _clustered()
    r, t = to_csr(train, 60, 40), to_csr(test, 60, 40)
    torch.manual_seed(0)
    if name == "lightgcn":
        model = LightGCN(60, 40, norm_adj(r), dim=16, layers=2)
        cfg = FitConfig(epochs=30, batch_size=128, lr=0.02, log=lambda s: None)
    else:
        model = Hgformer(60, 40, norm_adj(r), dim=16, layers=2, attention="linear", margin=0.5)
        cfg = FitConfig(epochs=30, batch_size=128, lr=0.01, log=lambda s: None)
    res = fit(model, r, cfg, seed=0)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    m = full_ranking(score_fn(model), t, [r], ks=(10,))
    # chance: 10 of the 40 - 7 = 33 unseen items -> HR@10 ~ 0.3; the group structure makes ~1.0 reachable
    assert m["hr@10"] > 0.6, m


def _tiny_pair() -> CrossDomainPair:
    doms = []
    for d, seed in (("x_y", 0), ("y_x", 1)):
        train, test = _clustered(seed=seed)
        r = to_csr(train, 60, 40)
        negs = sample_negatives(test[:, 0], test[:, 1], r, 40, 20, seed=seed)
        items = np.concatenate([test[:, 1:2], negs], 1)
        doms.append(LooDomain(d, 60, 40, r, SampledTest(test[:, 0], items, "sampled(seed=0)")))
    return CrossDomainPair(*doms)


def _cross_model(name: str, pair: CrossDomainPair) -> torch.nn.Module:
    kw = dict(
        n_users=60, n_items=(40, 40), adjs=(norm_adj(pair.a.train), norm_adj(pair.b.train)),
        trains=(pair.a.train, pair.b.train), dim=16, layers=2,
    )  # fmt: skip
    return HCTS(**kw, cts_batch=64) if name == "hcts" else BiTGCF(**kw)


@pytest.mark.parametrize("name", ["hcts", "bitgcf"])
def test_cross_domain_forward_backward(name: str) -> None:
    pair = _tiny_pair()
    torch.manual_seed(0)
    m = _cross_model(name, pair)
    b = Triples(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]))
    loss = m.loss(m.propagate(), {"a": b, "b": b})
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    if name == "hcts":
        assert m.enc["a"].raw_k.grad.abs() > 0  # learnable curvature is trained
        assert all(m.bridge[key].lin.weight.grad.abs().sum() > 0 for key in m.bridge)  # all four maps used


def test_hcts_bridge_maps_between_curvatures() -> None:
    pair = _tiny_pair()
    m = _cross_model("hcts", pair)
    with torch.no_grad():
        m.enc["b"].raw_k.fill_(math.log(math.expm1(2.5)))
    ua, _ = m.enc["a"]()
    mapped = m.bridge["u_ab"](ua, m.enc["a"].k, m.enc["b"].k)
    kb = m.enc["b"].k.item()
    assert torch.allclose(L.inner(mapped, mapped), torch.full((60,), -kb), rtol=1e-4)
    # identity W and zero bias: the map preserves tangent vectors at the origin (only the curvature changes)
    torch.testing.assert_close(L.logmap0(mapped, kb), L.logmap0(ua, m.enc["a"].k), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["hcts", "bitgcf"])
def test_cross_domain_training_beats_chance(name: str) -> None:
    pair = _tiny_pair()
    torch.manual_seed(0)
    m = _cross_model(name, pair)
    res = fit_cross(m, pair, FitConfig(epochs=25, batch_size=128, lr=0.02, log=lambda s: None), seed=0)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    metrics = evaluate_cross(m, pair)
    # chance HR@5 with 1 positive among 21 candidates is ~0.24
    assert metrics["a"]["hr@5"] > 0.5 and metrics["b"]["hr@5"] > 0.5, metrics
    assert set(sampled_ranking(lambda u, i: torch.zeros(len(u), 21), pair.a.test)) >= {"hr@10", "ndcg@10"}
