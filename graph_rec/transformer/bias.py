"""Structure-aware attention (family 3): additive biases per head and boolean attention masks.

* ``spd``: learnable scalar per (shortest-path distance, head) (Graphormer spatial encoding).
* ``edge_path``: Graphormer's edge encoding c_ij = mean_n <x_{e_n}, w_n^h> over the edges e_1..e_N
  of a shortest path i -> j. Cora/CiteSeer have no edge features, so x_e is a learnable embedding
  of the endpoints' degree buckets (a structural edge type) - a stated departure.
* ``hop``: Σ_k θ_{k,h} Â^k for k = 1..K with Â the symmetric-normalised subgraph adjacency with
  self-loops (n-hop propagation matrices as attention bias).
Masks: ``1hop`` (attend to neighbours and self), ``nhop`` (to nodes within ``mask_hops`` hops).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from graph_rec.transformer.batch import TokenBatch

BiasBuilder = Callable[[int, int, np.ndarray], nn.Module]  # (heads, hop_k, degree) -> module
ATTENTION_BIASES: dict[str, BiasBuilder] = {}
MaskFn = Callable[[TokenBatch, int], torch.Tensor]  # (batch, mask_hops) -> allowed [B, M, M]
ATTENTION_MASKS: dict[str, MaskFn] = {}


def register_bias(name: str) -> Callable[[BiasBuilder], BiasBuilder]:
    def deco(fn: BiasBuilder) -> BiasBuilder:
        ATTENTION_BIASES[name] = fn
        return fn

    return deco


def register_mask(name: str) -> Callable[[MaskFn], MaskFn]:
    def deco(fn: MaskFn) -> MaskFn:
        ATTENTION_MASKS[name] = fn
        return fn

    return deco


class SPDBias(nn.Module):
    def __init__(self, heads: int, max_dist: int = 16) -> None:
        super().__init__()
        self.emb = nn.Embedding(max_dist + 2, heads)
        nn.init.zeros_(self.emb.weight)

    def forward(self, b: TokenBatch) -> torch.Tensor:  # [B, H, M, M]
        return self.emb(b.spd.clamp_max(self.emb.num_embeddings - 1)).permute(0, 3, 1, 2)


class EdgePathBias(nn.Module):
    def __init__(self, heads: int, degree: np.ndarray, max_len: int = 16, edge_dim: int = 16) -> None:
        super().__init__()
        buckets = np.minimum(np.floor(np.log2(np.maximum(degree, 1))).astype(np.int64), 15)
        self.register_buffer("bucket", torch.from_numpy(buckets))
        self.edge_emb = nn.Embedding(16, edge_dim)
        self.path_w = nn.Parameter(torch.randn(max_len, edge_dim, heads) * 0.02)

    def forward(self, b: TokenBatch) -> torch.Tensor:
        if b.path_src is None or b.path_dst is None:
            raise ValueError(
                "edge_path bias needs path tensors: build the ego subgraphs with with_paths=True"
            )
        length = b.path_src.shape[-1]
        valid = b.path_src >= 0  # [B, M, M, L]
        bucket = self.bucket[b.ids]  # [B, M]

        def endpoint(local: torch.Tensor) -> torch.Tensor:
            flat = local.clamp_min(0).flatten(1)  # [B, M*M*L]
            return torch.gather(bucket, 1, flat).view_as(local)

        x = self.edge_emb(endpoint(b.path_src)) + self.edge_emb(endpoint(b.path_dst))  # [B,M,M,L,E]
        per_edge = torch.einsum("bijle,leh->bijlh", x, self.path_w[:length]) * valid.unsqueeze(-1)
        count = valid.sum(-1, keepdim=True).clamp_min(1)
        return (per_edge.sum(3) / count).permute(0, 3, 1, 2)


class HopBias(nn.Module):
    def __init__(self, heads: int, hop_k: int) -> None:
        super().__init__()
        self.coef = nn.Parameter(torch.zeros(hop_k, heads))

    def forward(self, b: TokenBatch) -> torch.Tensor:
        a = b.adj.float() + torch.diag_embed((~b.pad).float())
        dinv = a.sum(-1).clamp_min(1).rsqrt()
        a_hat = dinv.unsqueeze(-1) * a * dinv.unsqueeze(-2)
        out, power = 0.0, a_hat
        for k in range(self.coef.shape[0]):
            out = out + power.unsqueeze(1) * self.coef[k].view(1, -1, 1, 1)
            power = power @ a_hat
        return out


@register_bias("spd")
def build_spd(heads: int, hop_k: int, degree: np.ndarray) -> nn.Module:
    return SPDBias(heads)


@register_bias("edge_path")
def build_edge_path(heads: int, hop_k: int, degree: np.ndarray) -> nn.Module:
    return EdgePathBias(heads, degree)


@register_bias("hop")
def build_hop(heads: int, hop_k: int, degree: np.ndarray) -> nn.Module:
    return HopBias(heads, hop_k)


@register_mask("none")
def no_mask(b: TokenBatch, mask_hops: int) -> torch.Tensor:
    return torch.ones_like(b.adj)


@register_mask("1hop")
def one_hop_mask(b: TokenBatch, mask_hops: int) -> torch.Tensor:
    return b.spd <= 1


@register_mask("nhop")
def n_hop_mask(b: TokenBatch, mask_hops: int) -> torch.Tensor:
    return b.spd <= mask_hops
