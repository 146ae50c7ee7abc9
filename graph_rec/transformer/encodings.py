"""Positional encodings (family 2), computed once on the whole graph and gathered per token.

* ``degree``: learnable embedding of the (clipped) degree, Graphormer's centrality encoding.
* ``laplacian``: the k eigenvectors of L = I − D^{-1/2} A D^{-1/2} with the smallest eigenvalues
  (trivial one dropped), projected linearly; each training step flips every eigenvector's sign at
  random because an eigenvector is only defined up to sign (Dwivedi & Bresson).
* ``svd``: [U√Σ, V√Σ] of the top-r SVD of A (SAN/"SVD PE"); the sign of each singular pair is
  flipped jointly for u_i and v_i during training, for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import eigsh, svds
from torch import nn

PEBuilder = Callable[[sp.csr_matrix, int, int], nn.Module]  # (adj, hidden dim, pe size) -> module
POSITIONAL_ENCODINGS: dict[str, PEBuilder] = {}


def register_pe(name: str) -> Callable[[PEBuilder], PEBuilder]:
    def deco(fn: PEBuilder) -> PEBuilder:
        POSITIONAL_ENCODINGS[name] = fn
        return fn

    return deco


def laplacian_eigvecs(adj: sp.spmatrix, k: int) -> np.ndarray:
    """[n, k] eigenvectors for the k smallest non-trivial eigenvalues of the normalised Laplacian."""
    a = sp.csr_matrix(adj, dtype=np.float64)
    n = a.shape[0]
    deg = np.asarray(a.sum(1)).ravel()
    dinv = sp.diags(np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-12)), 0.0))
    lap = sp.eye(n) - dinv @ a @ dinv
    k_eff = min(k + 1, n - 1)
    if n <= 64:
        vals, vecs = np.linalg.eigh(lap.toarray())
    else:  # shift-invert just below 0 finds the smallest eigenvalues quickly and robustly
        vals, vecs = eigsh(lap.tocsc(), k=k_eff, sigma=-1e-3, which="LM")
    order = np.argsort(vals)
    vecs = vecs[:, order][:, 1 : k + 1]
    if vecs.shape[1] < k:
        vecs = np.pad(vecs, ((0, 0), (0, k - vecs.shape[1])))
    return vecs.astype(np.float32)


def svd_features(adj: sp.spmatrix, r: int) -> np.ndarray:
    """[n, 2r] = [U√Σ, V√Σ] of the rank-r truncated SVD of A."""
    a = sp.csr_matrix(adj, dtype=np.float64)
    r = min(r, min(a.shape) - 1)
    u, s, vt = svds(a, k=r, random_state=0)
    root = np.sqrt(s)
    return np.concatenate([u * root, vt.T * root], axis=1).astype(np.float32)


class DegreePE(nn.Module):
    def __init__(self, degree: np.ndarray, dim: int, max_degree: int = 64) -> None:
        super().__init__()
        self.register_buffer("degree", torch.from_numpy(np.minimum(degree, max_degree).astype(np.int64)))
        self.emb = nn.Embedding(max_degree + 1, dim)
        # Small init as in Graphormer: with N(0, 1) the degree vector swamps the projected bag-of-words
        # features and Cora collapsed to degree-only predictions (29.7 % test accuracy).
        nn.init.normal_(self.emb.weight, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # [B, T] -> [B, T, dim]
        return self.emb(self.degree[ids])


class SignFlipPE(nn.Module):
    """Linear map of precomputed eigen/singular vectors with a random sign per group when training."""

    def __init__(self, feats: np.ndarray, dim: int, groups: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("feats", torch.from_numpy(feats))
        self.register_buffer("groups", torch.from_numpy(groups.astype(np.int64)))  # [F] group id per column
        self.proj = nn.Linear(feats.shape[1], dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.feats[ids]
        if self.training:
            n_groups = int(self.groups.max()) + 1
            sign = torch.randint(0, 2, (n_groups,), device=x.device).float() * 2 - 1
            x = x * sign[self.groups]
        return self.proj(x)


@register_pe("degree")
def build_degree(adj: sp.csr_matrix, dim: int, size: int) -> nn.Module:
    return DegreePE(np.asarray((adj > 0).sum(1)).ravel(), dim, max_degree=size)


@register_pe("laplacian")
def build_laplacian(adj: sp.csr_matrix, dim: int, size: int) -> nn.Module:
    return SignFlipPE(laplacian_eigvecs(adj, size), dim, np.arange(size))


@register_pe("svd")
def build_svd(adj: sp.csr_matrix, dim: int, size: int) -> nn.Module:
    feats = svd_features(adj, size)
    r = feats.shape[1] // 2
    return SignFlipPE(feats, dim, np.concatenate([np.arange(r), np.arange(r)]))
