"""Recommendation data pipeline and ranking metrics: k-core, per-user split, amazon_cdr loaders, metric values
checked by hand on tiny cases."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from graph_rec.data import default_data_root
from graph_rec.recsys.data import (
    SampledTest,
    clean_negatives,
    k_core,
    load_cross_domain,
    load_split,
    norm_adj,
    sample_negatives,
    split_per_user,
    to_csr,
)
from graph_rec.recsys.metrics import full_ranking, sampled_ranking
from graph_rec.recsys.train import NegativeSampler

HAS_CDR = (default_data_root() / "amazon_cdr" / "phone_electronic" / "train.txt").exists()
needs_data = pytest.mark.skipif(not HAS_CDR, reason="amazon_cdr data not found")


def test_k_core_removes_until_stable() -> None:
    pairs = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [2, 2]])
    out = k_core(pairs, 2)
    assert sorted(map(tuple, out.tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_split_per_user_is_a_partition_with_valid_and_test() -> None:
    rng = np.random.default_rng(0)
    pairs = np.unique(np.stack([rng.integers(0, 20, 400), rng.integers(0, 50, 400)], 1), axis=0)
    tr, va, te = split_per_user(pairs, (0.8, 0.1, 0.1), seed=1)
    allp = np.concatenate([tr, va, te])
    assert len(allp) == len(pairs) and len(np.unique(allp, axis=0)) == len(pairs)
    assert set(te[:, 0]) == set(va[:, 0]) == set(pairs[:, 0])  # every user has >= 3 items here
    assert 0.7 < len(tr) / len(pairs) < 0.85


def test_norm_adj_is_symmetric_normalised() -> None:
    r = to_csr(np.array([[0, 0], [0, 1], [1, 1]]), 2, 2)
    a = norm_adj(r).to_dense()
    assert torch.allclose(a, a.T)
    # edge (u0, i1): deg(u0) = 2, deg(i1) = 2 -> 1/2
    assert a[0, 3].item() == pytest.approx(0.5)
    assert a[0, 0].item() == 0.0


def test_negative_sampler_avoids_positives() -> None:
    r = to_csr(np.array([[0, i] for i in range(8)] + [[1, 3]]), 2, 10)
    s = NegativeSampler(r, np.random.default_rng(0))
    neg = s.negatives(np.zeros(500, dtype=np.int64))
    assert (neg >= 8).all()
    negs = sample_negatives(np.array([1]), np.array([3]), r, 10, 5, seed=0)
    assert len(set(negs[0].tolist())) == 5 and 3 not in negs[0]


def test_clean_negatives_replaces_positives_and_keeps_the_shape() -> None:
    seen = to_csr(np.array([[0, 5], [1, 6]]), 2, 20)
    items = np.array([[3, 3, 4, 3, 7], [8, 9, 10, 11, 12]])  # row 0 lists its positive twice among negatives
    out, replaced = clean_negatives(np.array([0, 1]), items, seen, 20, seed=0)
    assert replaced == 2 and out.shape == items.shape
    assert np.array_equal(out[1], items[1]) and out[0, 0] == 3 and out[0, 2] == 4 and out[0, 4] == 7
    new = {int(out[0, 1]), int(out[0, 3])}
    assert len(new) == 2 and not new & {3, 4, 7, 5}  # not the positive, the row, nor the user's train item


def test_full_ranking_metrics_by_hand() -> None:
    # one user, 5 items, item 0 is a training item (masked), test items {1, 3}
    scores = torch.tensor([[9.0, 5.0, 4.0, 3.0, 1.0]])  # ranking after masking: 1, 2, 3, 4
    train = to_csr(np.array([[0, 0]]), 1, 5)
    test = to_csr(np.array([[0, 1], [0, 3]]), 1, 5)
    m = full_ranking(lambda u, it: scores[u], test, [train], ks=(1, 3))
    assert m["recall@1"] == pytest.approx(0.5) and m["recall@3"] == pytest.approx(1.0)
    assert m["hr@1"] == 1.0
    idcg = 1 + 1 / np.log2(3)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / np.log2(4)) / idcg)


def test_sampled_ranking_by_hand() -> None:
    t = SampledTest(np.array([0, 1]), np.array([[0, 1, 2], [0, 1, 2]]), "shipped")
    scores = torch.tensor([[3.0, 1.0, 2.0], [1.0, 2.0, 3.0]])  # ranks 0 and 2
    m = sampled_ranking(lambda u, it: scores[u], t, ks=(1, 3))
    assert m["hr@1"] == 0.5 and m["hr@3"] == 1.0
    assert m["ndcg@3"] == pytest.approx((1 + 1 / np.log2(4)) / 2)
    tie = sampled_ranking(lambda u, it: torch.zeros(len(u), 3), t, ks=(1,))
    assert tie["hr@1"] == 0.0


@needs_data
def test_load_split_electronic() -> None:
    d = load_split("amazon_cdr/electronic_phone", core=5)
    assert (d.n_users, d.n_items) == (3024, 5614)
    tot = d.train + d.valid + d.test
    assert tot.max() == 1 and tot.nnz == 66679
    assert (np.diff(d.test.indptr) >= 1).all()


@needs_data
def test_load_cross_domain_pairs() -> None:
    pair = load_cross_domain("amazon_cdr/phone_electronic")
    assert pair.a.name == "phone_electronic" and pair.b.name == "electronic_phone"
    assert pair.a.n_users == pair.b.n_users == 3325
    assert pair.a.test.negatives_from == "shipped" and pair.a.test.items.shape == (3325, 100)
    # the shipped lists hold the positive among its own negatives in a few rows: replaced and counted
    assert (pair.a.test.positives_replaced, pair.b.test.positives_replaced) == (22, 7)
    for t in (pair.a.test, pair.b.test):
        assert not (t.items[:, 1:] == t.items[:, :1]).any()
        assert all(len(set(row.tolist())) == 100 for row in t.items)
    sc = load_cross_domain("amazon_cdr/sport_cloth")
    assert sc.a.test.negatives_from.startswith("sampled") and sc.a.test.items.shape == (8326, 100)
    # sampled negatives avoid the user's training items and the positive
    t, tr = sc.a.test, sc.a.train
    for r in range(0, 8326, 997):
        row = set(tr.indices[tr.indptr[t.users[r]] : tr.indptr[t.users[r] + 1]].tolist())
        assert not row & set(t.items[r, 1:].tolist()) and t.items[r, 0] not in t.items[r, 1:]
    assert isinstance(sc.b.train, sp.csr_matrix)
