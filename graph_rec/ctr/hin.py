"""Heterogeneous information networks (HIN) for CTR: node types, an undirected adjacency, click samples.

All nodes share one id space: users first, then items, then attribute nodes. ``item_attrs`` lists each item's
attribute node ids, so a no-graph baseline (FM) gets the same side information as GMT minus the graph.

:func:`build_amazon_hin` turns an amazon_cdr pair (``amazon_cdr/X_Y``: target domain X, auxiliary domain Y;
same users) into a CTR task. The data ship no item metadata, so the attribute nodes are what the interactions
give: one node per domain and one per (domain, popularity decile) — a departure from NI-CTR's real item
attributes (category, brand, shop), which these files do not have. Edges: user–item for every training
interaction of both domains, item–domain, item–popularity. Clicks: target-domain training interactions are
positives with ``neg_ratio`` uniformly drawn non-interacted items as non-clicks; the test set is each user's
held-out target item with the first ``test_negs`` of its 99 evaluation negatives (shipped or seeded).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from graph_rec.recsys.data import load_cross_domain
from graph_rec.recsys.train import NegativeSampler


@dataclass(frozen=True)
class HIN:
    node_type: np.ndarray  # (N,) int64 index into type_names
    type_names: tuple[str, ...]
    indptr: np.ndarray  # (N+1,) undirected adjacency, CSR
    indices: np.ndarray  # (E,)
    n_users: int
    n_items: int
    item_attrs: np.ndarray  # (n_items, F) attribute node ids of each item (node id space)

    @property
    def n_nodes(self) -> int:
        return len(self.node_type)

    @property
    def item_offset(self) -> int:
        return self.n_users


@dataclass(frozen=True)
class Clicks:
    users: np.ndarray  # (S,) user node ids
    items: np.ndarray  # (S,) item node ids
    labels: np.ndarray  # (S,) float32 in {0, 1}
    truth: np.ndarray | None = None  # (S,) ground-truth click probability (synthetic data only)


@dataclass(frozen=True)
class CTRData:
    name: str
    hin: HIN
    train: Clicks
    test: Clicks


def make_hin(
    node_type: np.ndarray, type_names: tuple[str, ...], edges: np.ndarray, n_users: int, n_items: int,
    item_attrs: np.ndarray,
) -> HIN:  # fmt: skip
    """Symmetric, de-duplicated adjacency from an (E, 2) edge list."""
    n = len(node_type)
    a = sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()
    a = ((a + a.T) > 0).astype(np.float32).tocsr()
    a.sort_indices()
    return HIN(node_type, type_names, a.indptr.astype(np.int64), a.indices.astype(np.int64), n_users, n_items,
               item_attrs)  # fmt: skip


def build_amazon_hin(
    dataset: str, data_root: str | Path | None = None, seed: int = 0, neg_ratio: int = 1, test_negs: int = 4
) -> CTRData:
    pair = load_cross_domain(dataset, data_root, seed=seed)
    n_users, na, nb = pair.a.n_users, pair.a.n_items, pair.b.n_items
    off_a, off_b = n_users, n_users + na
    attr0 = n_users + na + nb  # domain nodes: attr0 (A), attr0 + 1 (B); popularity nodes after them
    pop0 = attr0 + 2
    edges, attrs = [], []
    for d, (dom, off) in enumerate(((pair.a, off_a), (pair.b, off_b))):
        coo = dom.train.tocoo()
        edges.append(np.stack([coo.row, coo.col + off], 1))
        counts = np.asarray(dom.train.sum(0)).ravel()
        # deciles of training popularity (ties broken by rank, so each decile is one tenth of the items)
        decile = (np.argsort(np.argsort(counts, kind="stable"), kind="stable") * 10) // len(counts)
        item_nodes = np.arange(dom.n_items) + off
        dom_node = np.full(dom.n_items, attr0 + d)
        pop_node = pop0 + 10 * d + decile
        edges += [np.stack([item_nodes, dom_node], 1), np.stack([item_nodes, pop_node], 1)]
        attrs.append(np.stack([dom_node, pop_node], 1))
    n_nodes = pop0 + 20
    node_type = np.concatenate([np.zeros(n_users), np.ones(na + nb), np.full(2, 2), np.full(20, 3)]).astype(
        np.int64
    )
    hin = make_hin(node_type, ("user", "item", "domain", "popularity"), np.concatenate(edges).astype(np.int64),
                   n_users, na + nb, np.concatenate(attrs).astype(np.int64))  # fmt: skip
    assert hin.n_nodes == n_nodes

    rng = np.random.default_rng(seed)
    coo = pair.a.train.tocoo()
    neg = NegativeSampler(pair.a.train, rng).negatives(coo.row.astype(np.int64), neg_ratio)
    tr_u = np.concatenate([coo.row, np.repeat(coo.row, neg_ratio)]).astype(np.int64)
    tr_i = np.concatenate([coo.col, neg.reshape(-1)]).astype(np.int64) + off_a
    tr_y = np.concatenate([np.ones(len(coo.row)), np.zeros(neg.size)]).astype(np.float32)
    t = pair.a.test
    te_i = t.items[:, : 1 + test_negs]
    te_u = np.repeat(t.users, te_i.shape[1])
    te_y = np.tile(np.r_[1.0, np.zeros(test_negs)], len(t.users)).astype(np.float32)
    return CTRData(
        f"{pair.a.name}(+{pair.b.name})",
        hin,
        Clicks(tr_u, tr_i, tr_y),
        Clicks(te_u, te_i.reshape(-1) + off_a, te_y),
    )
