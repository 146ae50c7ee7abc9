"""Shared encoder and the InfoNCE loss of GraphLearner.

InfoNCE follows the released ``loss_cal``: cosine similarities / T, the positive pair is the same
node in the two views and the denominator holds only the negatives (Σ_j≠i), averaged over nodes.

The loss is one autograd Function because the n x n similarity matrix is the whole cost of an
epoch on Cora-sized graphs: autograd's generic chain (divide, mask, logsumexp, their backward)
would allocate and sweep five n x n temporaries, while the fused version makes three passes over one
n x n matrix besides the three n x n x d products. With ``matmul_dtype=torch.bfloat16`` the products
(5x faster on AVX512-BF16 CPUs) and the exponentials are bfloat16 (logits are cosines / T, so the
exponentials carry bf16's 0.4% relative rounding, the same as the products they come from); the row
sums accumulate in float32 and the loss is float32.
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
    # Cosines are bounded by 1, so the logits s/T are bounded by 1/T and exp needs no row-max shift
    # below this bound (e^50 times a million nodes is still far from float32's limit).
    _NO_SHIFT_BELOW = 50.0

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, z1: torch.Tensor, z2: torch.Tensor, temperature: float, dtype: torch.dtype
    ) -> torch.Tensor:
        inv_t = 1.0 / temperature
        a, b = (z1 * inv_t).to(dtype), z2.to(dtype)  # logits = a bᵀ = s / T
        logits = a @ b.T
        # (At such temperatures bfloat16 logits round to ~1/T / 256: use float32 products there.)
        shift = inv_t if inv_t > _InfoNCE._NO_SHIFT_BELOW else 0.0
        if shift:
            logits.sub_(shift)
        # Everything n x n stays in the product dtype, in place: exp_, then a row sum that accumulates in
        # float32 internally (a float32 copy of the matrix would cost more passes than the products save).
        expo = logits.exp_()
        expo.diagonal().zero_()  # the denominator holds the negatives only
        total = expo.sum(dim=1).to(torch.promote_types(z1.dtype, torch.float32))
        pos = (z1 * z2).sum(dim=1) * inv_t  # the positive logit, from the full-precision inputs
        ctx.save_for_backward(expo, total, a, b)
        ctx.inv_t, ctx.in_dtypes = inv_t, (z1.dtype, z2.dtype)
        return (total.log() + shift - pos).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        expo, total, a, b = ctx.saved_tensors
        n = expo.shape[0]
        # dL/dlogit_ij = (softmax_ij − δ_ij) / n with softmax_ii = 0; a new matrix, so the saved one stays
        # intact for a second backward.
        g = expo * ((grad / n) / total).to(expo.dtype).unsqueeze(1)
        g.diagonal().fill_((-grad / n).to(g.dtype))  # a 0-dim tensor: no host sync on GPUs
        dz1 = (g @ b).mul_(ctx.inv_t)  # logits = (z1 / T) z2ᵀ
        dz2 = g.T @ a
        return dz1.to(ctx.in_dtypes[0]), dz2.to(ctx.in_dtypes[1]), None, None


def info_nce(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 1.0,
    matmul_dtype: torch.dtype | None = None,
    unit_rows: bool = False,
) -> torch.Tensor:
    """-mean_i log( e^{s_ii/T} / Σ_{j≠i} e^{s_ij/T} ), s = cosine similarity between views.

    ``matmul_dtype=torch.bfloat16`` runs the three n x n x d products in bfloat16 (default: z1's dtype).
    ``unit_rows=True`` says the rows are already L2-normalised (the Encoder's output) and skips normalising
    again: normalize∘normalize = normalize, and so are their gradients (the Jacobian of normalize at a unit
    vector is the projection I − zzᵀ, which the inner Jacobian already contains).
    """
    dtype = matmul_dtype or z1.dtype
    if not unit_rows:
        z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    return _InfoNCE.apply(z1, z2, float(temperature), dtype)
