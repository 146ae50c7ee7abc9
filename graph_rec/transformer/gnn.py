"""GNN as an auxiliary module (family 1): PyG convolutions and where they sit relative to attention.

Convs: ``gcn`` (GCNConv), ``sage`` (SAGEConv), ``gat`` (GATConv, heads concatenated), ``gin``
(GINConv with a 2-layer MLP). Each runs on the flattened ego subgraphs of a batch; a virtual node,
if any, is not connected in the GNN (it only takes part in attention).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch_geometric.nn import GATConv, GCNConv, GINConv, SAGEConv

ConvBuilder = Callable[[int], nn.Module]
GNN_CONVS: dict[str, ConvBuilder] = {
    "gcn": lambda d: GCNConv(d, d),
    "sage": lambda d: SAGEConv(d, d),
    "gat": lambda d: GATConv(d, d // 4, heads=4),
    "gin": lambda d: GINConv(nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d)), train_eps=True),
}


class GNNLayer(nn.Module):
    """h_real <- h_real + dropout(ReLU(conv(LN(h_real)))) on the real (non-virtual) tokens."""

    def __init__(self, kind: str, dim: int, dropout: float) -> None:
        super().__init__()
        if kind not in GNN_CONVS:
            raise KeyError(f"unknown GNN {kind!r}; choose one of {sorted(GNN_CONVS)}")
        self.conv = GNN_CONVS[kind](dim)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def delta(self, h: torch.Tensor, edge_index: torch.Tensor, m: int) -> torch.Tensor:
        """[B, T, d] update for the first m (real) tokens, zeros for a virtual node."""
        b, t, d = h.shape
        x = self.norm(h[:, :m]).reshape(b * m, d)
        out = self.drop(torch.relu(self.conv(x, edge_index))).view(b, m, d)
        return torch.cat([out, h.new_zeros(b, t - m, d)], 1) if t > m else out

    def forward(
        self, h: torch.Tensor, attn_mask: torch.Tensor, edge_index: torch.Tensor, m: int
    ) -> torch.Tensor:
        return h + self.delta(h, edge_index, m)
