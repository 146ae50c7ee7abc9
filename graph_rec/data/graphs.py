"""Loader for attributed-graph folders (Cora, CiteSeer, BAT, EAT or a user's own graph).

A dataset folder holds, with no pickles:

* ``features.npz`` - scipy CSR node-feature matrix, ``n x d``;
* ``adj.npz``      - scipy CSR adjacency, ``n x n`` (symmetrised here if it is not);
* ``labels.npy``   - int node labels, ``n`` (used only for evaluation);
* optional ``label_mask.npy`` (bool, ``n``: False for nodes whose label is unknown) and
  ``split.npz`` with ``idx_train`` / ``idx_val`` / ``idx_test`` (the Planetoid split).

``load_graph`` accepts a dataset name (looked up under the data root) or a folder path, so a user
can bring their own graph in the same format. A bad folder raises ``FileNotFoundError`` naming
every missing file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from graph_rec.data import default_data_root

REQUIRED_FILES = ("features.npz", "adj.npz", "labels.npy")


@dataclass(frozen=True)
class AttributedGraph:
    name: str
    features: sp.csr_matrix  # [n, d] float32
    adj: sp.csr_matrix  # [n, n] float32 0/1, symmetric, diagonal as stored in the folder
    labels: np.ndarray  # [n] int64
    label_mask: np.ndarray  # [n] bool, True where the label is known
    split: dict[str, np.ndarray] | None  # idx_train / idx_val / idx_test (int64), if shipped

    @property
    def num_nodes(self) -> int:
        return self.adj.shape[0]

    @property
    def num_features(self) -> int:
        return self.features.shape[1]

    @property
    def num_classes(self) -> int:
        return int(self.labels[self.label_mask].max()) + 1


def resolve_dataset_dir(dataset: str | Path, data_root: str | Path | None = None) -> Path:
    """A folder path is used as is; a bare name is looked up under ``data_root``."""
    path = Path(dataset).expanduser()
    if path.is_dir():
        return path
    root = Path(data_root).expanduser() if data_root else default_data_root()
    candidate = root / str(dataset).lower()
    if candidate.is_dir():
        return candidate
    available = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    raise FileNotFoundError(
        f"graph dataset {dataset!r} not found: neither a folder nor {candidate} exists "
        f"(data root {root}; available: {available or 'none'}; set --data-root or GRAPH_REC_DATA)"
    )


def load_graph(dataset: str | Path, data_root: str | Path | None = None) -> AttributedGraph:
    folder = resolve_dataset_dir(dataset, data_root)
    missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"graph folder {folder} is missing {', '.join(missing)} "
            f"(expected {', '.join(REQUIRED_FILES)}; see graph_rec/data/graphs.py)"
        )
    features = sp.load_npz(folder / "features.npz").tocsr().astype(np.float32)
    adj = sp.load_npz(folder / "adj.npz").tocsr().astype(np.float32)
    labels = np.load(folder / "labels.npy", allow_pickle=False).astype(np.int64).reshape(-1)
    n = adj.shape[0]
    if adj.shape != (n, n) or features.shape[0] != n or labels.shape[0] != n:
        raise ValueError(
            f"graph folder {folder}: inconsistent shapes adj {adj.shape}, features {features.shape}, "
            f"labels {labels.shape} (all must have the same number of nodes)"
        )
    if (adj != adj.T).nnz:  # a directed edge list: clustering and GNNs here assume undirected graphs
        adj = adj.maximum(adj.T).tocsr()
    adj.data[:] = 1.0
    mask_file = folder / "label_mask.npy"
    label_mask = np.load(mask_file, allow_pickle=False).astype(bool) if mask_file.is_file() else None
    split_file = folder / "split.npz"
    split = None
    if split_file.is_file():
        with np.load(split_file, allow_pickle=False) as z:
            split = {k: z[k].astype(np.int64) for k in z.files}
    return AttributedGraph(
        name=folder.name,
        features=features,
        adj=adj,
        labels=labels,
        label_mask=label_mask if label_mask is not None else np.ones(n, dtype=bool),
        split=split,
    )
