"""Fixed inputs of GraphLearner: PCA features, self-loop-free edge list and the smoothed view.

X̃ = Â^t X with Â = D̃^{-1/2}(A+I)D̃^{-1/2} (A without its stored self-loops), as in the released code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.decomposition import PCA

from graph_rec.data.graphs import AttributedGraph


@dataclass(frozen=True)
class ClusteringInputs:
    features: torch.Tensor  # [n, d'] PCA features X
    smoothed: torch.Tensor  # [n, d'] X̃ = Â^t X (view 1, fixed)
    edge_index: torch.Tensor  # [2, E] directed edges of A without self-loops (both directions)
    num_nodes: int

    def to(self, device: str | torch.device) -> ClusteringInputs:
        return replace(
            self,
            features=self.features.to(device),
            smoothed=self.smoothed.to(device),
            edge_index=self.edge_index.to(device),
        )


def remove_self_loops(adj: sp.spmatrix) -> sp.csr_matrix:
    adj = sp.csr_matrix(adj, dtype=np.float32, copy=True)
    adj.setdiag(0)
    adj.eliminate_zeros()
    return adj


def sym_norm_with_self_loops(adj: sp.spmatrix) -> sp.csr_matrix:
    """Â = D̃^{-1/2}(A+I)D̃^{-1/2}."""
    a = sp.csr_matrix(adj) + sp.eye(adj.shape[0], dtype=np.float32, format="csr")
    d = np.asarray(a.sum(1)).ravel()
    dinv = sp.diags(1.0 / np.sqrt(d))
    return (dinv @ a @ dinv).tocsr().astype(np.float32)


def pca_features(features: sp.spmatrix, dim: int, seed: int = 0) -> np.ndarray:
    dense = np.asarray(features.todense(), dtype=np.float32)
    dim = min(dim, dense.shape[1], dense.shape[0])
    return PCA(n_components=dim, random_state=seed).fit_transform(dense).astype(np.float32)


def prepare_inputs(graph: AttributedGraph, pca_dim: int, smooth_steps: int) -> ClusteringInputs:
    x = pca_features(graph.features, pca_dim)
    adj = remove_self_loops(graph.adj)
    a_hat = sym_norm_with_self_loops(adj)
    smoothed = x
    for _ in range(smooth_steps):
        smoothed = a_hat @ smoothed
    coo = adj.tocoo()
    edge_index = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return ClusteringInputs(
        features=torch.from_numpy(x),
        smoothed=torch.from_numpy(np.asarray(smoothed, dtype=np.float32)),
        edge_index=edge_index,
        num_nodes=graph.num_nodes,
    )
