"""Shared encoder and the InfoNCE loss of GraphLearner.

InfoNCE follows the released ``loss_cal``: cosine similarities / T, the positive pair is the same
node in the two views and the denominator holds only the negatives (Σ_j≠i), averaged over nodes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Encoder(nn.Module):
    def __init__(self, in_dim: int, out_dim: int = 500) -> None:
        super().__init__()
        self.lin = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [n, d'] -> [n, out] unit rows
        return F.normalize(self.lin(x), p=2, dim=1)


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """-mean_i log( e^{s_ii/T} / Σ_{j≠i} e^{s_ij/T} ), s = cosine similarity between views."""
    sim = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T / temperature
    pos = sim.diagonal()
    neg = sim.masked_fill(torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device), float("-inf"))
    return (torch.logsumexp(neg, dim=1) - pos).mean()
