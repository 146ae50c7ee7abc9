"""Ego-subgraph token sequences for node-level graph transformers.

Each node becomes a sequence of at most ``max_nodes`` tokens: itself first, then its BFS
neighbourhood up to ``hops`` hops (a random subset, fixed per seed, when the neighbourhood is
larger). Structural tensors are computed inside the induced subgraph once and cached:
shortest-path distances and, when edge encoding is used, the endpoints of every edge along one
shortest path between each token pair.

Departure from Graphormer (a graph-level model with full attention over the whole graph): for node
classification on Cora/CiteSeer attention runs over each node's ego subgraph (as Gophormer /
NAGphormer-style node transformers do), which keeps every component's cost linear in the graph size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import shortest_path


@dataclass(frozen=True)
class EgoSubgraphs:
    nodes: np.ndarray  # [N, M] int64 global node id per token, -1 = padding; token 0 is the centre
    adj: np.ndarray  # [N, M, M] bool induced adjacency (no self-loops)
    spd: np.ndarray  # [N, M, M] int64 shortest-path distance, clipped to max_dist; max_dist+1 = unreachable
    path_src: np.ndarray | None  # [N, M, M, L] local id of the n-th edge's source on a shortest path, -1 pad
    path_dst: np.ndarray | None  # [N, M, M, L] local id of the n-th edge's target, -1 pad
    max_dist: int


def ego_nodes(
    adj: sp.csr_matrix, center: int, hops: int, max_nodes: int, rng: np.random.Generator
) -> list[int]:
    seen, frontier, order = {center}, [center], [center]
    for _ in range(hops):
        nxt = []
        for u in frontier:
            for v in adj.indices[adj.indptr[u] : adj.indptr[u + 1]].tolist():
                if v not in seen:
                    seen.add(v)
                    nxt.append(v)
        rng.shuffle(nxt)  # nearer hops first, random order within a hop
        order.extend(nxt)
        frontier = nxt
    return order[:max_nodes]


def _paths(pred: np.ndarray, dist: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges (src, dst) along the shortest path i -> j, vectorised over all pairs (i, j)."""
    m = pred.shape[0]
    ii, jj = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
    cur = ii.copy()
    src = np.full((m, m, length), -1, dtype=np.int64)
    dst = np.full((m, m, length), -1, dtype=np.int64)
    reachable = np.isfinite(dist)
    for step in range(length):
        active = reachable & (cur != jj)
        # pred[j, v] is the node before v on the path j -> v, i.e. the next hop from v towards j
        nxt = np.where(active, pred[jj, cur], -1)
        active &= nxt >= 0
        src[..., step] = np.where(active, cur, -1)
        dst[..., step] = np.where(active, nxt, -1)
        cur = np.where(active, nxt, cur)
    return src, dst


def build_ego_subgraphs(
    adj: sp.spmatrix,
    hops: int = 2,
    max_nodes: int = 24,
    max_dist: int = 4,
    with_paths: bool = False,
    seed: int = 0,
) -> EgoSubgraphs:
    adj = sp.csr_matrix(adj, dtype=np.float32, copy=True)
    adj.setdiag(0)
    adj.eliminate_zeros()
    n = adj.shape[0]
    rng = np.random.default_rng(seed)
    nodes = np.full((n, max_nodes), -1, dtype=np.int64)
    sub_adj = np.zeros((n, max_nodes, max_nodes), dtype=bool)
    spd = np.full((n, max_nodes, max_nodes), max_dist + 1, dtype=np.int64)
    psrc = np.full((n, max_nodes, max_nodes, max_dist), -1, dtype=np.int64) if with_paths else None
    pdst = np.full_like(psrc, -1) if with_paths else None
    for c in range(n):
        ids = ego_nodes(adj, c, hops, max_nodes, rng)
        m = len(ids)
        nodes[c, :m] = ids
        local = adj[ids][:, ids]
        sub_adj[c, :m, :m] = local.toarray() > 0
        dist, pred = shortest_path(local, unweighted=True, directed=False, return_predecessors=True)
        d = np.where(np.isfinite(dist), np.minimum(dist, max_dist), max_dist + 1)
        spd[c, :m, :m] = d.astype(np.int64)
        if with_paths:
            s, t = _paths(pred, dist, max_dist)
            psrc[c, :m, :m], pdst[c, :m, :m] = s, t
    return EgoSubgraphs(nodes, sub_adj, spd, psrc, pdst, max_dist)
