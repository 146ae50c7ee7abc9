"""One Transformer encoder with pluggable graph components, configured by ``GTConfig``.

tokens = Linear(x) + Σ PE  ->  [+ virtual super node]  ->  layer stack  ->  read out centre (or VN)
The layer stack is chosen by ``gnn_placement`` from ``PLACEMENTS``:
* ``none``        attention layers only;
* ``before``      ``gnn_layers`` GNN layers, then the attention layers;
* ``alternating`` GNN layer, attention layer, GNN layer, ... (``layers`` pairs);
* ``parallel``    GraphGPS-style: h + attention(h) + GNN(h), then the feed-forward block.
Attention uses one additive bias (sum of the chosen biases) and one boolean mask; padding keys are
always masked, the diagonal is always allowed so no row is empty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from graph_rec.transformer.batch import TokenBatch
from graph_rec.transformer.bias import ATTENTION_BIASES, ATTENTION_MASKS
from graph_rec.transformer.encodings import POSITIONAL_ENCODINGS
from graph_rec.transformer.gnn import GNNLayer


@dataclass
class GTConfig:
    hidden: int = 64  # token width
    heads: int = 4
    layers: int = 2  # attention layers (pairs for "alternating"); 0 = no attention (pure GNN)
    dropout: float = 0.5  # on input features and after each block
    attn_dropout: float = 0.1
    gnn: str | None = None  # None or one of gnn.GNN_CONVS
    gnn_placement: str = "none"  # one of PLACEMENTS
    gnn_layers: int = 2  # GNN depth for the "before" placement
    pe: tuple[str, ...] = ()  # names from encodings.POSITIONAL_ENCODINGS
    pe_size: int = 16  # eigenvectors / singular pairs / max degree bucket
    biases: tuple[str, ...] = ()  # names from bias.ATTENTION_BIASES
    mask: str = "none"  # one of bias.ATTENTION_MASKS
    mask_hops: int = 2  # n for the n-hop mask
    hop_k: int = 3  # K for the Â^k bias
    virtual_node: bool = False
    readout: str = "center"  # "center" token or "virtual" super node
    extra: dict = field(default_factory=dict)  # free-form notes carried into results


class MultiHeadAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class TransformerLayer(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads, attn_dropout)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def attend(self, h: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        return self.drop(self.attn(self.norm1(h), attn_mask))

    def feed_forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.drop(self.ffn(self.norm2(h)))

    def forward(
        self, h: torch.Tensor, attn_mask: torch.Tensor, edge_index: torch.Tensor, m: int
    ) -> torch.Tensor:
        return self.feed_forward(h + self.attend(h, attn_mask))


class ParallelLayer(nn.Module):
    """GraphGPS: local message passing and global attention side by side, then the FFN."""

    def __init__(self, gnn: str, dim: int, heads: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.gnn = GNNLayer(gnn, dim, dropout)
        self.trf = TransformerLayer(dim, heads, dropout, attn_dropout)

    def forward(
        self, h: torch.Tensor, attn_mask: torch.Tensor, edge_index: torch.Tensor, m: int
    ) -> torch.Tensor:
        return self.trf.feed_forward(h + self.trf.attend(h, attn_mask) + self.gnn.delta(h, edge_index, m))


def _trf(c: GTConfig) -> TransformerLayer:
    return TransformerLayer(c.hidden, c.heads, c.dropout, c.attn_dropout)


def _gnn(c: GTConfig) -> GNNLayer:
    if c.gnn is None:
        raise ValueError(f"gnn_placement={c.gnn_placement!r} needs gnn set to one of gcn/sage/gat/gin")
    return GNNLayer(c.gnn, c.hidden, c.dropout)


PLACEMENTS: dict[str, Callable[[GTConfig], list[nn.Module]]] = {
    "none": lambda c: [_trf(c) for _ in range(c.layers)],
    "before": lambda c: [_gnn(c) for _ in range(c.gnn_layers)] + [_trf(c) for _ in range(c.layers)],
    "alternating": lambda c: [m for _ in range(c.layers) for m in (_gnn(c), _trf(c))],
    "parallel": lambda c: [
        ParallelLayer(c.gnn or "", c.hidden, c.heads, c.dropout, c.attn_dropout) for _ in range(c.layers)
    ],
}


class GraphTransformer(nn.Module):
    def __init__(self, cfg: GTConfig, features: torch.Tensor, adj: sp.csr_matrix, num_classes: int) -> None:
        super().__init__()
        for name, table in (("gnn_placement", PLACEMENTS), ("mask", ATTENTION_MASKS)):
            if getattr(cfg, name) not in table:
                raise KeyError(f"{name}={getattr(cfg, name)!r}; choose one of {sorted(table)}")
        unknown = [p for p in cfg.pe if p not in POSITIONAL_ENCODINGS] + [
            b for b in cfg.biases if b not in ATTENTION_BIASES
        ]
        if unknown:
            raise KeyError(
                f"unknown components {unknown}; PEs {sorted(POSITIONAL_ENCODINGS)}, biases {sorted(ATTENTION_BIASES)}"
            )
        self.cfg = cfg
        self.register_buffer("features", features)
        degree = np.asarray((adj > 0).sum(1)).ravel()
        self.inp = nn.Linear(features.shape[1], cfg.hidden)
        self.pes = nn.ModuleList([POSITIONAL_ENCODINGS[p](adj, cfg.hidden, cfg.pe_size) for p in cfg.pe])
        self.biases = nn.ModuleList([ATTENTION_BIASES[b](cfg.heads, cfg.hop_k, degree) for b in cfg.biases])
        self.vn = nn.Parameter(torch.zeros(1, 1, cfg.hidden)) if cfg.virtual_node else None
        self.vn_bias = nn.Parameter(torch.zeros(cfg.heads, 2)) if cfg.virtual_node else None  # to / from VN
        self.layers = nn.ModuleList(PLACEMENTS[cfg.gnn_placement](cfg))
        self.norm = nn.LayerNorm(cfg.hidden)
        self.head = nn.Linear(cfg.hidden, num_classes)
        self.drop = nn.Dropout(cfg.dropout)

    def attention_mask(self, b: TokenBatch) -> torch.Tensor:
        """[B, H, T, T] float: bias where allowed, -inf elsewhere (T = M + 1 with a virtual node)."""
        bsz, m, h = b.size, b.tokens, self.cfg.heads
        bias = torch.zeros(bsz, h, m, m, device=b.ids.device)
        for mod in self.biases:
            bias = bias + mod(b)
        allowed = ATTENTION_MASKS[self.cfg.mask](b, self.cfg.mask_hops) & ~b.pad.unsqueeze(1)
        allowed = allowed | torch.eye(m, dtype=torch.bool, device=b.ids.device)
        if self.vn_bias is not None:
            col = self.vn_bias[:, 0].view(1, h, 1, 1).expand(bsz, h, m, 1)  # token -> VN
            bias = torch.cat([bias, col], 3)
            row = self.vn_bias[:, 1].view(1, h, 1, 1).expand(bsz, h, 1, m + 1)  # VN -> token
            bias = torch.cat([bias, row], 2)
            allowed = F.pad(allowed, (0, 1, 0, 1), value=True)
            allowed[:, m, :m] = ~b.pad  # the VN row must not attend to padding keys either
        return bias.masked_fill(~allowed.unsqueeze(1), float("-inf"))

    def forward(self, b: TokenBatch) -> torch.Tensor:  # [B, num_classes] logits of the centre nodes
        h = self.inp(self.drop(self.features[b.ids]))
        for pe in self.pes:
            h = h + pe(b.ids)
        h = h.masked_fill(b.pad.unsqueeze(-1), 0.0)
        if self.vn is not None:
            h = torch.cat([h, self.vn.expand(b.size, 1, -1)], 1)
        mask, edge_index, m = self.attention_mask(b), b.edge_index(), b.tokens
        for layer in self.layers:
            h = layer(h, mask, edge_index, m)
        token = m if (self.cfg.readout == "virtual" and self.vn is not None) else 0
        return self.head(self.drop(self.norm(h[:, token])))
