"""Graph-transformer pieces: ego sampling and shortest paths, masks, biases, positional encodings
(sign flips, eigen-equations), GNN placements, and a forward/backward smoke test of every preset."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from graph_rec.transformer.batch import make_batch
from graph_rec.transformer.bias import ATTENTION_MASKS, EdgePathBias, HopBias, SPDBias
from graph_rec.transformer.encodings import (
    DegreePE,
    build_laplacian,
    build_svd,
    laplacian_eigvecs,
    svd_features,
)
from graph_rec.transformer.model import GraphTransformer, GTConfig
from graph_rec.transformer.presets import PRESETS
from graph_rec.transformer.sampling import build_ego_subgraphs, ego_nodes

torch.set_num_threads(1)


def path_graph(n: int = 5) -> sp.csr_matrix:
    """0 - 1 - 2 - ... - (n-1)."""
    rows = np.arange(n - 1)
    a = sp.coo_matrix((np.ones(n - 1), (rows, rows + 1)), shape=(n, n))
    return sp.csr_matrix(a + a.T)


def two_triangles() -> sp.csr_matrix:
    edges = [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5), (2, 3)]
    r, c = zip(*edges)
    a = sp.coo_matrix((np.ones(len(edges)), (r, c)), shape=(6, 6))
    return sp.csr_matrix(a + a.T)


def test_ego_nodes_bfs_order_and_truncation() -> None:
    rng = np.random.default_rng(0)
    assert ego_nodes(path_graph(), 2, 1, 10, rng)[0] == 2
    assert sorted(ego_nodes(path_graph(), 2, 1, 10, rng)) == [1, 2, 3]
    assert sorted(ego_nodes(path_graph(), 2, 2, 10, rng)) == [0, 1, 2, 3, 4]
    assert len(ego_nodes(path_graph(), 2, 2, 3, rng)) == 3


def test_spd_and_paths_on_a_path_graph() -> None:
    ego = build_ego_subgraphs(path_graph(), hops=4, max_nodes=8, max_dist=3, with_paths=True)
    nodes = ego.nodes[0]  # centred at node 0: BFS order is 0,1,2,3,4
    assert nodes[:5].tolist() == [0, 1, 2, 3, 4] and (nodes[5:] == -1).all()
    spd = ego.spd[0]
    assert spd[0, 1] == 1 and spd[0, 2] == 2 and spd[0, 3] == 3 and spd[0, 4] == 3  # clipped at max_dist
    assert spd[0, 5] == 4  # padding: unreachable marker max_dist + 1
    # path 0 -> 3 goes over edges (0,1), (1,2), (2,3)
    assert ego.path_src[0, 0, 3].tolist() == [0, 1, 2] and ego.path_dst[0, 0, 3].tolist() == [1, 2, 3]
    assert ego.path_src[0, 2, 0].tolist() == [2, 1, -1]
    assert ego.adj[0, 0, 1] and not ego.adj[0, 0, 2] and not ego.adj[0, 0, 0]


def test_masks() -> None:
    b = make_batch(build_ego_subgraphs(path_graph(), hops=4, max_nodes=6, max_dist=4), torch.tensor([0]))
    one = ATTENTION_MASKS["1hop"](b, 2)[0]
    assert one[0, 1] and one[0, 0] and not one[0, 2]
    two = ATTENTION_MASKS["nhop"](b, 2)[0]
    assert two[0, 2] and not two[0, 3]
    assert ATTENTION_MASKS["none"](b, 2).all()


def test_biases_shapes_and_values() -> None:
    ego = build_ego_subgraphs(two_triangles(), hops=3, max_nodes=6, max_dist=4, with_paths=True)
    b = make_batch(ego, torch.tensor([0, 3]))
    spd = SPDBias(heads=2)
    with torch.no_grad():
        spd.emb.weight.copy_(torch.arange(spd.emb.num_embeddings * 2, dtype=torch.float).view(-1, 2))
    out = spd(b)
    assert out.shape == (2, 2, 6, 6)
    assert out[0, 1, 0, 0] == 1 and out[0, 0, 0, 1] == 2  # distance 0 -> row 0, distance 1 -> row 1
    hop = HopBias(heads=2, hop_k=2)
    with torch.no_grad():
        hop.coef.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    h = hop(b)
    # head 0 is Â, head 1 is Â²: symmetric, and Â² reaches 2 hops where Â does not
    torch.testing.assert_close(h[0, 0], h[0, 0].T)
    spd0 = b.spd[0]
    assert (h[0, 0][spd0 == 2] == 0).all() and (h[0, 1][spd0 == 2] > 0).all()
    deg = np.asarray(two_triangles().sum(1)).ravel()
    edge = EdgePathBias(heads=3, degree=deg)
    e = edge(b)
    assert e.shape == (2, 3, 6, 6) and torch.isfinite(e).all()
    assert (e[:, :, torch.arange(6), torch.arange(6)] == 0).all()  # empty path on the diagonal


def test_laplacian_eigvecs_satisfy_eigen_equation() -> None:
    a = two_triangles()
    vecs = laplacian_eigvecs(a, 3)
    d = np.asarray(a.sum(1)).ravel()
    lap = np.eye(6) - a.toarray() / np.sqrt(np.outer(d, d))
    for v in vecs.T:
        lv = lap @ v
        lam = v @ lv / (v @ v)
        np.testing.assert_allclose(lv, lam * v, atol=1e-5)
    # the first kept eigenvector is the Fiedler vector: it separates the two triangles
    assert np.sign(vecs[:3, 0]).tolist() == [np.sign(vecs[0, 0])] * 3
    assert np.sign(vecs[0, 0]) != np.sign(vecs[3, 0])


def test_laplacian_sparse_path_matches_dense() -> None:
    a = path_graph(80)
    sparse = laplacian_eigvecs(a, 2)  # n > 64 -> eigsh shift-invert
    d = np.asarray(a.sum(1)).ravel()
    lap = np.eye(80) - a.toarray() / np.sqrt(np.outer(d, d))
    dense = np.linalg.eigh(lap)[1][:, 1:3]
    np.testing.assert_allclose(np.abs(sparse.T @ dense).diagonal(), 1.0, atol=1e-4)


def test_svd_features_reconstruct_adjacency() -> None:
    a = two_triangles()
    f = svd_features(a, 5)
    u, v = f[:, :5], f[:, 5:]
    assert f.shape == (6, 10)
    np.testing.assert_allclose(u @ v.T, a.toarray(), atol=0.25)  # rank-5 of a rank-6 matrix


def test_sign_flip_only_in_training() -> None:
    torch.manual_seed(0)
    pe = build_laplacian(two_triangles(), 4, 3)
    ids = torch.arange(6).unsqueeze(0)
    pe.eval()
    torch.testing.assert_close(pe(ids), pe(ids))
    pe.train()
    outs = {tuple(pe(ids).detach().flatten().round(decimals=5).tolist()) for _ in range(20)}
    assert len(outs) > 1
    svd = build_svd(two_triangles(), 4, 2)
    svd.train()
    x = svd.feats[ids]
    assert svd.groups.tolist() == [0, 1, 0, 1]
    assert x.shape[-1] == 4
    deg = DegreePE(np.array([0, 3, 100]), 4, max_degree=10)
    assert deg.degree.tolist() == [0, 3, 10]


def _tiny() -> tuple[torch.Tensor, sp.csr_matrix]:
    a = two_triangles()
    return torch.randn(6, 5), a


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_forward_backward(name: str) -> None:
    x, a = _tiny()
    cfg = PRESETS[name]
    ego = build_ego_subgraphs(a, hops=2, max_nodes=5, max_dist=4, with_paths="edge_path" in cfg.biases)
    model = GraphTransformer(cfg, x, a, num_classes=2)
    out = model(make_batch(ego, torch.arange(6)))
    assert out.shape == (6, 2) and torch.isfinite(out).all()
    out.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_virtual_node_attends_to_all_real_tokens_and_readout() -> None:
    x, a = _tiny()
    cfg = GTConfig(virtual_node=True, readout="virtual", mask="1hop")
    model = GraphTransformer(cfg, x, a, num_classes=2)
    b = make_batch(build_ego_subgraphs(a, hops=1, max_nodes=6), torch.tensor([0]))
    mask = model.attention_mask(b)
    m = b.tokens
    assert mask.shape == (1, cfg.heads, m + 1, m + 1)
    real = ~b.pad[0]
    assert torch.isfinite(mask[0, 0, m, :m][real]).all() and torch.isinf(mask[0, 0, m, :m][~real]).all()
    assert torch.isfinite(mask[0, 0, :m, m]).all()
    assert model(b).shape == (1, 2)


def test_bad_component_names_are_reported() -> None:
    x, a = _tiny()
    with pytest.raises(KeyError, match="gnn_placement"):
        GraphTransformer(GTConfig(gnn_placement="sideways"), x, a, 2)
    with pytest.raises(KeyError, match="nope"):
        GraphTransformer(GTConfig(pe=("nope",)), x, a, 2)
    with pytest.raises(ValueError, match="gnn"):
        GraphTransformer(GTConfig(gnn_placement="before"), x, a, 2)
