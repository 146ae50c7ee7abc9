"""The typed hand-off from the sampler to the model: one batch of ego-subgraph token sequences."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from graph_rec.transformer.sampling import EgoSubgraphs


@dataclass
class TokenBatch:
    ids: torch.Tensor  # [B, M] global node id per token (padding -> 0; see ``pad``)
    pad: torch.Tensor  # [B, M] bool, True for padding tokens
    adj: torch.Tensor  # [B, M, M] bool induced adjacency, no self-loops
    spd: torch.Tensor  # [B, M, M] long shortest-path distance (max_dist + 1 = unreachable)
    path_src: torch.Tensor | None  # [B, M, M, L] local ids of the path edges' sources, -1 pad
    path_dst: torch.Tensor | None  # [B, M, M, L] local ids of the path edges' targets, -1 pad
    max_dist: int

    @property
    def size(self) -> int:
        return self.ids.shape[0]

    @property
    def tokens(self) -> int:
        return self.ids.shape[1]

    def to(self, device: torch.device) -> TokenBatch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return TokenBatch(
            self.ids.to(device), self.pad.to(device), self.adj.to(device), self.spd.to(device),
            move(self.path_src), move(self.path_dst), self.max_dist,
        )  # fmt: skip

    def edge_index(self) -> torch.Tensor:
        """[2, E] edges of all subgraphs in the flattened [B * M] token index space (for PyG convs)."""
        b, i, j = self.adj.nonzero(as_tuple=True)
        m = self.tokens
        return torch.stack([b * m + i, b * m + j])


def make_batch(ego: EgoSubgraphs, centers: torch.Tensor) -> TokenBatch:
    c = centers.numpy()
    nodes = torch.from_numpy(ego.nodes[c])
    return TokenBatch(
        ids=nodes.clamp_min(0),
        pad=nodes < 0,
        adj=torch.from_numpy(ego.adj[c]),
        spd=torch.from_numpy(ego.spd[c]),
        path_src=None if ego.path_src is None else torch.from_numpy(ego.path_src[c]),
        path_dst=None if ego.path_dst is None else torch.from_numpy(ego.path_dst[c]),
        max_dist=ego.max_dist,
    )
