"""A tiny attributed graph in the graph_rec folder format, for tests that need one on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp


def blob_graph(folder: Path, n_per: int = 20, k: int = 3, seed: int = 0) -> None:
    """k communities of n_per nodes with class-specific words: any working clusterer separates them."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n_per)
    feats = (rng.random((len(y), 30)) < 0.1).astype(np.float32)
    feats[np.arange(len(y)), y * 10 + rng.integers(0, 10, len(y))] = 1  # class-specific words
    same = y[:, None] == y[None]
    p = np.where(same, 0.3, 0.01)
    a = np.triu(rng.random(p.shape) < p, 1)
    a = (a | a.T).astype(np.float32)
    folder.mkdir()
    sp.save_npz(folder / "features.npz", sp.csr_matrix(feats))
    sp.save_npz(folder / "adj.npz", sp.csr_matrix(a))
    np.save(folder / "labels.npy", y)
