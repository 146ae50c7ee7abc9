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

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


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


def segment_softmax(logits: torch.Tensor, index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """softmax of ``logits`` within each group of equal ``index`` (PyG's ``utils.softmax``).

    Written out (four tensor ops) because importing torch_geometric costs 2 s, a twentieth of a
    Cora run, for this one function; a test checks it against PyG's.
    """
    row_max = logits.new_full((num_nodes,), float("-inf")).scatter_reduce(
        0, index, logits.detach(), "amax", include_self=True
    )
    e = (logits - row_max.index_select(0, index)).exp()
    total = e.new_zeros(num_nodes).index_add_(0, index, e)
    return e / total.index_select(0, index)


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


class _Propagate(torch.autograd.Function):
    """y = G^steps x for a sparse G, with gradients for x and for G's edge weights.

    Why not index_select / index_add_ (the generic message-passing form)? Every step then allocates
    two [E, d] tensors and its backward a third; here one step is one CSR x dense product (7x faster
    on Cora), and dL/dw_ij = Σ_k (g_{k+1})_i · (x_k)_j is a sampled dense-dense product (SDDMM)
    evaluated only on the edges instead of gathering both [E, d] sides.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, edge_index: torch.Tensor, weights: torch.Tensor, x: torch.Tensor, steps: int
    ) -> torch.Tensor:
        n = x.shape[0]
        row, col = edge_index
        # CSR wants its entries sorted by (row, col); keep the permutation to hand gradients back in order.
        order = torch.argsort(row * n + col)
        g = _csr(row[order], col[order], weights[order], n)
        xs = [x]
        for _ in range(steps - 1):
            xs.append(g @ xs[-1])
        y = g @ xs[-1]
        ctx.save_for_backward(edge_index, weights, order, *xs)
        ctx.steps = steps
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        edge_index, weights, order, *xs = ctx.saved_tensors
        n = grad.shape[0]
        row, col = edge_index[0][order], edge_index[1][order]
        w = weights[order]
        # Gᵀ in CSR: the same entries sorted by (col, row).
        order_t = torch.argsort(col * n + row)
        g_t = _csr(col[order_t], row[order_t], w[order_t], n)
        pattern = _csr(row, col, torch.zeros_like(w), n) if ctx.needs_input_grad[1] else None
        dw_sorted = torch.zeros_like(w) if pattern is not None else None
        grad = grad.contiguous()
        for k in reversed(range(ctx.steps)):
            if pattern is not None:  # d(G x_k)/dG_ij contracted with the incoming gradient: grad_i · x_k,j
                dw_sorted += torch.sparse.sampled_addmm(pattern, grad, xs[k].T, beta=0.0).values()
            grad = g_t @ grad
        dw = None
        if dw_sorted is not None:
            dw = torch.empty_like(dw_sorted).index_copy_(0, order, dw_sorted)
        return None, dw, grad if ctx.needs_input_grad[2] else None, None


def _csr(row: torch.Tensor, col: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    counts = torch.bincount(row, minlength=n)
    crow = torch.zeros(n + 1, dtype=torch.int64, device=row.device)
    torch.cumsum(counts, 0, out=crow[1:])
    with warnings.catch_warnings():  # "CSR support is in beta": the products used here are long-standing
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, (n, n), check_invariants=False)


def propagate(edge_index: torch.Tensor, weights: torch.Tensor, x: torch.Tensor, steps: int) -> torch.Tensor:
    """G^steps x for the sparse matrix G given as (edge_index, weights), each (i, j) listed at most once."""
    # Under bf16 autocast the inputs may arrive in bf16: the sparse products run in fp32 (or fp64), which is
    # also all the CPU CSR kernels implement.
    dtype = torch.promote_types(weights.dtype, torch.float32)
    with torch.autocast(x.device.type, enabled=False):  # autocast would send the CSR products back to bf16
        return _Propagate.apply(edge_index, weights.to(dtype), x.to(dtype).contiguous(), steps)


def structure_mse(edge_index: torch.Tensor, weights: torch.Tensor, n: int) -> torch.Tensor:
    """MSE(Ã, A) over all n² entries without materialising them; Ã = S + I, A has no self-loops.

    Off-diagonal entries only live on edges (A_ij = 1 there); the diagonal of Ã is 1 plus any
    isolated-node self-loop weight of S, against A_ii = 0.
    """
    row, col = edge_index
    off = row != col
    diag = torch.ones(n, dtype=weights.dtype, device=weights.device).index_add_(0, row[~off], weights[~off])
    return (((weights[off] - 1.0) ** 2).sum() + (diag**2).sum()) / (n * n)
