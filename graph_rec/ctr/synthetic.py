"""Synthetic HIN with a known click model, for tests of GMT and the CTR pipeline.

Each item has one category (an attribute node); each user likes ``prefs_per_user`` categories. The true click
probability is p(u, i) = σ(strength · [cat(i) ∈ pref(u)] + b_i − offset) with item biases b_i ~ N(0, 0.5²).
The graph holds every user's click history (``history`` items drawn ∝ p) and the item–category edges; the
CTR samples are fresh (user, item) pairs with labels ~ Bernoulli(p), and the test set keeps p as ``truth`` so
tests can compare a model with the oracle AUC. A user's preferences are visible only through the categories
of their history items, so the neighbourhood carries information an ID-only model must learn from few labels.
"""

from __future__ import annotations

import numpy as np

from graph_rec.ctr.hin import Clicks, CTRData, make_hin


def make_synthetic(
    n_users: int = 300,
    n_items: int = 200,
    n_cats: int = 8,
    prefs_per_user: int = 2,
    history: int = 10,
    samples_per_user: int = 30,
    strength: float = 3.0,
    offset: float = 1.5,
    test_frac: float = 0.3,
    seed: int = 0,
) -> CTRData:
    rng = np.random.default_rng(seed)
    item_cat = rng.integers(0, n_cats, n_items)
    prefs = np.stack([rng.choice(n_cats, prefs_per_user, replace=False) for _ in range(n_users)])
    liked = (item_cat[None, :] == prefs[:, :, None]).any(1)  # (n_users, n_items)
    bias = rng.normal(0, 0.5, n_items)
    prob = 1 / (1 + np.exp(-(strength * liked + bias[None] - offset)))

    off_i, off_c = n_users, n_users + n_items
    hist = np.stack([rng.choice(n_items, history, replace=False, p=p / p.sum()) for p in prob])
    edges = [np.stack([np.repeat(np.arange(n_users), history), hist.reshape(-1) + off_i], 1)]
    edges.append(np.stack([np.arange(n_items) + off_i, item_cat + off_c], 1))
    node_type = np.concatenate([np.zeros(n_users), np.ones(n_items), np.full(n_cats, 2)]).astype(np.int64)
    hin = make_hin(node_type, ("user", "item", "category"), np.concatenate(edges).astype(np.int64), n_users,
                   n_items, (item_cat + off_c)[:, None].astype(np.int64))  # fmt: skip

    users = np.repeat(np.arange(n_users), samples_per_user)
    items = rng.integers(0, n_items, len(users))
    p = prob[users, items]
    labels = (rng.random(len(p)) < p).astype(np.float32)
    test = rng.random(len(p)) < test_frac
    mk = lambda m: Clicks(users[m], items[m] + off_i, labels[m], p[m])  # noqa: E731
    return CTRData("synthetic", hin, mk(~test), mk(test))
