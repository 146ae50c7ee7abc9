"""The two learnable augmentors and the sparse filter that builds the augmented view.

Attribute augmentor: X' = rowL2(W2 (W1 X + b1) + b2), no nonlinearity (as released).
Structure augmentor: GAT-style attention over the existing edges, S = row-softmax of
LeakyReLU_0.1(aᵀ[h_i ‖ h_j]), h = XW; nodes without edges get S_ii = 1; Ã = S + I.

Departures from the released code:
* Everything is edge-wise (sparse) instead of dense n x n; the values are identical, only faster.
* The row normalisation uses a segment softmax, i.e. exp(e_ij)/Σ_j exp(e_ij) computed stably.
* The view filter is S = Ã − I. The released code multiplies by I − Ã = −S, which for the default
  even t gives the same (−S)^t = S^t; using S keeps an odd t from flipping the sign of the view.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.utils import softmax as segment_softmax


class AttributeAugmentor(nn.Module):
    def __init__(self, dim: int, hidden: int = 1000) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [n, d] -> [n, d]
        # Without a nonlinearity lin2(lin1(x)) = x (W2 W1)^T + (W2 b1 + b2). Folding the two layers
        # first costs d*h*d instead of 2*n*d*h multiply-adds (4.5x fewer on Cora) and gives the same
        # values and the same gradients for W1, b1, W2, b2 (autograd goes through the product).
        weight = self.lin2.weight @ self.lin1.weight
        bias = self.lin2.weight @ self.lin1.bias + self.lin2.bias
        return F.normalize(F.linear(x, weight, bias), p=2, dim=1)


class StructureAugmentor(nn.Module):
    """Returns the learned off-diagonal weights S as (edge_index, weights) incl. isolated self-loops."""

    def __init__(self, dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, hidden, bias=False)
        self.att = nn.Parameter(torch.empty(2 * hidden, 1))
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.xavier_uniform_(self.att)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        h = self.proj(x)
        row, col = edge_index
        # aᵀ[h_i ‖ h_j] = (h a_src)_i + (h a_dst)_j: score the nodes, then gather two scalars per edge
        # (the usual GAT trick) instead of building the [E, 2*hidden] concatenation.
        hidden = h.shape[1]
        src, dst = (h @ self.att[:hidden]).squeeze(1), (h @ self.att[hidden:]).squeeze(1)
        logits = F.leaky_relu(src.index_select(0, row) + dst.index_select(0, col), 0.1)
        weights = segment_softmax(logits, row, num_nodes=n)
        return with_isolated_self_loops(edge_index, weights, n)


def with_isolated_self_loops(
    edge_index: torch.Tensor, weights: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Give every row without an edge a weight-1 self-loop so the filter never zeros a node."""
    has_edge = torch.zeros(n, dtype=torch.bool, device=weights.device)
    has_edge[edge_index[0]] = True
    iso = (~has_edge).nonzero().squeeze(1)
    if iso.numel() == 0:
        return edge_index, weights
    loops = torch.stack([iso, iso])
    return torch.cat([edge_index, loops], 1), torch.cat([weights, weights.new_ones(iso.numel())])


def row_normalise(edge_index: torch.Tensor, weights: torch.Tensor, n: int) -> torch.Tensor:
    rowsum = torch.zeros(n, dtype=weights.dtype, device=weights.device).index_add_(0, edge_index[0], weights)
    return weights / rowsum.clamp_min(1e-12)[edge_index[0]]


def propagate(edge_index: torch.Tensor, weights: torch.Tensor, x: torch.Tensor, steps: int) -> torch.Tensor:
    """G^steps x for the sparse matrix G given as (edge_index, weights)."""
    row, col = edge_index
    x = x.to(weights.dtype)  # under bf16 autocast the features arrive in bf16, the weights in fp32
    w = weights.unsqueeze(1)
    for _ in range(steps):
        # index_select (not x[col]): its backward is an index_add, far cheaper on CPU than the
        # accumulate-index_put that advanced indexing falls back to.
        x = torch.zeros_like(x).index_add_(0, row, w * x.index_select(0, col))
    return x


def structure_mse(edge_index: torch.Tensor, weights: torch.Tensor, n: int) -> torch.Tensor:
    """MSE(Ã, A) over all n² entries without materialising them; Ã = S + I, A has no self-loops.

    Off-diagonal entries only live on edges (A_ij = 1 there); the diagonal of Ã is 1 plus any
    isolated-node self-loop weight of S, against A_ii = 0.
    """
    row, col = edge_index
    off = row != col
    diag = torch.ones(n, dtype=weights.dtype, device=weights.device).index_add_(0, row[~off], weights[~off])
    return (((weights[off] - 1.0) ** 2).sum() + (diag**2).sum()) / (n * n)
