"""Factorisation machine (Rendle, 2010): the no-graph CTR baseline.

Fields: user id, item id and the item's attribute node ids (``HIN.item_attrs``) — the same side information
GMT's tokens carry, without the neighbourhood. Logit = w0 + Σ_f w_f + Σ_{f<g} ⟨v_f, v_g⟩, with the pairwise
term computed as ½(‖Σ v‖² − Σ‖v‖²).
"""

from __future__ import annotations

import torch
from torch import nn


class FM(nn.Module):
    def __init__(self, n_features: int, item_attrs: torch.Tensor, item_offset: int, dim: int = 32) -> None:
        super().__init__()
        self.v = nn.Embedding(n_features, dim)
        nn.init.normal_(self.v.weight, std=0.01)
        self.w = nn.Embedding(n_features, 1)
        nn.init.zeros_(self.w.weight)
        self.w0 = nn.Parameter(torch.zeros(()))
        self.register_buffer("item_attrs", item_attrs)
        self.item_offset = item_offset

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        feats = torch.cat([users[:, None], items[:, None], self.item_attrs[items - self.item_offset]], 1)
        v = self.v(feats)  # (B, F, D)
        pair = 0.5 * (v.sum(1).pow(2) - v.pow(2).sum(1)).sum(-1)
        return self.w0 + self.w(feats).sum((1, 2)) + pair
