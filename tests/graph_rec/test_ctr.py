"""CTR: synthetic HIN ground truth, neighbourhood sampler invariants, the four GMT masks, GMT and FM
forward/backward, short training runs on the synthetic HIN, and the amazon_cdr HIN builder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from graph_rec.ctr.fm import FM
from graph_rec.ctr.gmt import GMT, MASKS, consistency
from graph_rec.ctr.hin import build_amazon_hin
from graph_rec.ctr.sampler import NeighbourSampler
from graph_rec.ctr.synthetic import make_synthetic
from graph_rec.ctr.train import CTRFitConfig, FMLearner, GMTLearner, ctr_metrics, fit_ctr, predict_all
from graph_rec.data import default_data_root

torch.set_num_threads(1)
HAS_CDR = (default_data_root() / "amazon_cdr" / "phone_electronic" / "train.txt").exists()


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_users=200, n_items=120, samples_per_user=30, seed=0)


def test_synthetic_ground_truth_is_informative(data) -> None:
    m = ctr_metrics(data.test.labels, data.test.truth)
    assert 0.7 < m["auc"] < 0.95  # the oracle is good but labels are noisy
    assert data.hin.type_names == ("user", "item", "category")
    assert 0.2 < data.train.labels.mean() < 0.8


def test_sampler_tokens_and_leakage(data) -> None:
    s = NeighbourSampler(data.hin, n1=4, n2=4)
    users = torch.from_numpy(data.train.users[:64])
    items = torch.from_numpy(data.train.items[:64])
    nb = s.sample(users, items, torch.Generator().manual_seed(0))
    t = nb.nodes.shape[1]
    assert nb.adj.shape == (64, t, t) and torch.equal(nb.adj, nb.adj.transpose(1, 2))
    assert (nb.nodes[:, 0] == users).all() and (nb.nodes[:, 1] == items).all()
    neigh = nb.nodes[:, 2:]
    # the other target never appears as a neighbour (no label leakage through the u–i edge)
    assert not (
        (neigh == users[:, None]) & nb.valid[:, 2:] & (torch.from_numpy(np.asarray(s.side[2:])) == 0)
    ).any()
    assert not ((neigh == items[:, None]) & nb.valid[:, 2:] & (s.side[2:] == 0)).any()
    assert (nb.nodes[~nb.valid] == data.hin.n_nodes).all()
    # a training click's own edge is hidden from the induced-subgraph mask
    assert not nb.adj[:, 0, 1].any() and not nb.adj[:, 1, 0].any()
    # the target item's category token is always present and linked to the item
    cat = torch.from_numpy(data.hin.item_attrs[(items - data.hin.item_offset).numpy(), 0])
    assert (nb.nodes[:, 2] == cat).all() and nb.adj[:, 1, 2].all()


def test_masks_shapes_and_semantics(data) -> None:
    s = NeighbourSampler(data.hin, n1=3, n2=3)
    nb = s.sample(torch.from_numpy(data.train.users[:8]), torch.from_numpy(data.train.items[:8]))
    x0 = torch.randn(8, nb.nodes.shape[1], 16)
    assert set(MASKS) == {"induced", "cross", "knn", "complete"}
    cross = MASKS["cross"](nb, x0, 2)
    assert cross[0, 0, 1] and not cross[0, 0, 0]  # u (user side) sees i (item side), not itself
    knn = MASKS["knn"](nb, x0, 2)
    assert (knn.sum(-1) == 3).all()  # k neighbours + itself
    model = GMT(data.hin.n_nodes, 3, torch.from_numpy(data.hin.node_type), dim=16, heads_per_mask=2)
    allowed = model.allowed(nb, x0)
    assert allowed.shape == (8, 8, nb.nodes.shape[1], nb.nodes.shape[1])
    assert torch.equal(allowed[:, 0], allowed[:, 1])  # heads 0 and 1 share the first mask
    assert allowed.diagonal(dim1=-2, dim2=-1).all()
    v = nb.valid[0]
    assert not allowed[0][:, v][:, :, ~v].any()  # valid queries never attend padding


def test_gmt_forward_backward_and_consistency(data) -> None:
    model = GMT(data.hin.n_nodes, 3, torch.from_numpy(data.hin.node_type), dim=16)
    learner = GMTLearner(model, NeighbourSampler(data.hin, 3, 3), n_samples=3, lam=0.5)
    u, i = torch.from_numpy(data.train.users[:32]), torch.from_numpy(data.train.items[:32])
    loss = learner.loss(u, i, torch.from_numpy(data.train.labels[:32]))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in learner.parameters())
    assert model.emb.weight.grad.abs().sum() > 0
    assert consistency(torch.ones(3, 4, 5)) == 0
    assert consistency(torch.stack([torch.zeros(4, 5), torch.ones(4, 5)])) == pytest.approx(5 * 0.25)


def test_fm_forward_backward_matches_naive(data) -> None:
    torch.manual_seed(0)
    fm = FM(data.hin.n_nodes, torch.from_numpy(data.hin.item_attrs), data.hin.item_offset, dim=4)
    torch.nn.init.normal_(fm.w.weight)
    u, i = torch.tensor([0, 1]), torch.tensor([data.hin.item_offset, data.hin.item_offset + 5])
    out = fm(u, i)
    feats = [[0, int(i[0]), int(data.hin.item_attrs[0, 0])], [1, int(i[1]), int(data.hin.item_attrs[5, 0])]]
    for r, f in enumerate(feats):
        v = fm.v.weight[f]
        naive = fm.w0 + fm.w.weight[f].sum() + sum(v[a] @ v[b] for a in range(3) for b in range(a + 1, 3))
        assert out[r].item() == pytest.approx(naive.item(), rel=1e-5, abs=1e-6)
    out.sum().backward()


# GMT: ~10 s of CPU, ~50 s wall on a loaded 2-core machine
@pytest.mark.parametrize("name", ["fm", pytest.param("gmt", marks=pytest.mark.slow)])
def test_training_learns_the_synthetic_click_model(data, name: str) -> None:
    torch.manual_seed(0)
    if name == "fm":
        learner = FMLearner(
            FM(data.hin.n_nodes, torch.from_numpy(data.hin.item_attrs), data.hin.item_offset, 16)
        )
        cfg = CTRFitConfig(epochs=15, batch_size=256, lr=1e-2, log=lambda s: None)
    else:
        model = GMT(data.hin.n_nodes, 3, torch.from_numpy(data.hin.node_type), dim=16, layers=2, dropout=0.0)
        learner = GMTLearner(model, NeighbourSampler(data.hin, 4, 4), n_samples=2, lam=0.1)
        cfg = CTRFitConfig(epochs=6, batch_size=128, lr=1e-2, log=lambda s: None)
    fit_ctr(learner, data.train, cfg, seed=0)
    m = ctr_metrics(data.test.labels, predict_all(learner, data.test))
    # chance is 0.5 and the oracle ~0.8; measured: FM ~0.7 after 15 epochs, GMT ~0.63 after 6
    assert m["auc"] > 0.58, m


@pytest.mark.skipif(not HAS_CDR, reason="amazon_cdr data not found")
def test_amazon_hin_builder() -> None:
    d = build_amazon_hin("amazon_cdr/phone_electronic", test_negs=4)
    h = d.hin
    assert h.n_users == 3325 and h.type_names == ("user", "item", "domain", "popularity")
    assert h.n_nodes == 3325 + h.n_items + 2 + 20
    assert d.train.labels.mean() == pytest.approx(0.5)
    assert len(d.test.labels) == 5 * 3325 and d.test.labels.sum() == 3325
    # every item has a domain and a popularity node, and they are its neighbours in the graph
    it = h.item_offset + 7
    nbrs = set(h.indices[h.indptr[it] : h.indptr[it + 1]].tolist())
    assert set(h.item_attrs[7].tolist()) <= nbrs
    # test clicks are not edges of the graph
    u, i = d.test.users[0], d.test.items[0]
    assert i not in set(h.indices[h.indptr[u] : h.indptr[u + 1]].tolist())


def test_sampler_validity_does_not_depend_on_the_label(data) -> None:
    """A training positive's own u–i edge is in the graph, a negative's is not: drawing from N(u) \\ {i} keeps the
    count of valid slots label-blind (the earlier 'mark such draws invalid' leaked the label through it)."""
    s = NeighbourSampler(data.hin, n1=4, n2=4)
    users, items = torch.from_numpy(data.train.users), torch.from_numpy(data.train.items)
    keys = set((s.keys).tolist())
    has_edge = torch.tensor([u * s.n_nodes + i in keys for u, i in zip(users.tolist(), items.tolist())])
    assert has_edge.any() and (~has_edge).any()
    nb = s.sample(users, items, torch.Generator().manual_seed(0))
    one_hop = (s.role == 2) | (s.role == 4)
    invalid = (~nb.valid[:, one_hop]).float().sum(1)
    # Users and items here all have degree > 1 after the exclusion, so no one-hop slot is ever invalid ...
    deg_u = (s.indptr[users + 1] - s.indptr[users]) - has_edge.long()
    deg_i = (s.indptr[items + 1] - s.indptr[items]) - has_edge.long()
    assert ((deg_u > 0) & (deg_i > 0)).all()
    assert invalid.sum() == 0
    # ... and the excluded target is never drawn, yet its neighbours' other edges are (exclusion, not truncation).
    neigh = nb.nodes[:, one_hop]
    assert not ((neigh == items[:, None]) | (neigh == users[:, None])).any()
    # The row's last CSR neighbour is reachable when the excluded one sits before it.
    u0 = int(users[has_edge][0])
    row = s.indices[s.indptr[u0] : s.indptr[u0 + 1]].tolist()
    i0 = int(items[has_edge][0])
    draws = s._draw(
        torch.tensor([u0] * 2000),
        torch.ones(2000, dtype=torch.bool),
        1,
        torch.Generator().manual_seed(1),
        torch.tensor([i0] * 2000),
    )[0]
    assert set(draws.flatten().tolist()) == set(row) - {i0}


def test_training_positive_sees_the_neighbourhood_of_the_graph_without_its_click(data) -> None:
    """Train/test symmetry of the GMT sampler: a training positive (u, i) is an edge of the HIN, a test pair is not.
    Sampling (u, i) in the HIN must give exactly what the same draws give in the HIN with that one edge removed
    (nodes, validity and induced adjacency), so nothing the model sees at training time says "this is a click"."""
    from graph_rec.ctr.hin import make_hin

    hin = data.hin
    rows = np.repeat(np.arange(hin.n_nodes), np.diff(hin.indptr))
    edges = np.stack([rows, hin.indices], 1)
    edges = edges[edges[:, 0] < edges[:, 1]]
    keys = set((edges[:, 0] * hin.n_nodes + edges[:, 1]).tolist())
    lo, hi = np.minimum(data.train.users, data.train.items), np.maximum(data.train.users, data.train.items)
    in_graph = np.flatnonzero([a * hin.n_nodes + b in keys for a, b in zip(lo.tolist(), hi.tolist())])[:12]
    assert len(in_graph) == 12  # training pairs whose click is an edge (as every amazon_cdr positive is)
    for k in in_graph:
        u, i = int(data.train.users[k]), int(data.train.items[k])
        keep = ~((edges[:, 0] == min(u, i)) & (edges[:, 1] == max(u, i)))
        held_out = make_hin(
            hin.node_type, hin.type_names, edges[keep], hin.n_users, hin.n_items, hin.item_attrs
        )
        users, items = torch.tensor([u] * 64), torch.tensor([i] * 64)  # 64 draws of the same pair
        a = NeighbourSampler(hin, n1=4, n2=4).sample(users, items, torch.Generator().manual_seed(int(k)))
        b = NeighbourSampler(held_out, n1=4, n2=4).sample(users, items, torch.Generator().manual_seed(int(k)))
        assert torch.equal(a.valid, b.valid) and torch.equal(a.nodes, b.nodes) and torch.equal(a.adj, b.adj)
