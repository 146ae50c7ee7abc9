"""Recommendation data: interaction files -> filtered user–item graph, splits, negatives, normalised adjacency.

Two protocols, both on ../shared/data/graph/amazon_cdr (see its PROVENANCE.md):

* ``split`` (Hgformer's): one domain folder ``amazon_cdr/X_Y`` gives domain X. All its interactions
  (``train.txt`` + ``test_original.txt``) are k-core filtered (k = 5) and split 8:1:1 per user at random; full
  ranking over all items. Departure: the files are already implicit feedback (no ratings), so the paper's
  "rating >= 3" filter has nothing to act on.
* ``loo`` (BiTGCF's / HCTS's): the shipped ``train.txt`` and a leave-one-out test scored against 99 negatives.
  Cell-phones/Electronics ship the negatives (``test_neg_bitgcf.txt``, all 3325 users); Sports/Clothing do not,
  so for them we draw 99 negatives per ``test.txt`` row (items outside the user's train and test items, seeded,
  deterministic) — the DisenCDR loader does the same at load time.

A cross-domain dataset name ``amazon_cdr/X_Y`` means the pair (X, Y): domain A = folder ``X_Y``, domain B =
folder ``Y_X``; user ids are shared (PROVENANCE.md), item ids are per domain.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from graph_rec.data import default_data_root

N_NEG = 99


@dataclass(frozen=True)
class SplitData:
    """One domain split per user into train/valid/test; each matrix is (n_users, n_items) binary CSR."""

    name: str
    n_users: int
    n_items: int
    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix


@dataclass(frozen=True)
class SampledTest:
    """Leave-one-out test rows: ``items[r, 0]`` is user ``users[r]``'s held-out item, ``items[r, 1:]`` negatives."""

    users: np.ndarray  # (R,) int64
    items: np.ndarray  # (R, 1 + N_NEG) int64
    negatives_from: str  # "shipped" or "sampled(seed=S)"
    positives_replaced: int = 0  # shipped negatives equal to the row's positive, replaced by fresh draws


@dataclass(frozen=True)
class LooDomain:
    name: str
    n_users: int
    n_items: int
    train: sp.csr_matrix  # (n_users, n_items) binary
    test: SampledTest


@dataclass(frozen=True)
class CrossDomainPair:
    """Two domains with the same users (ids aligned); A is the folder named by the dataset."""

    a: LooDomain
    b: LooDomain


def resolve_dataset(dataset: str, data_root: str | Path | None = None) -> Path:
    """A dataset name under the data root (``amazon_cdr/sport_cloth``) or a folder path."""
    p = Path(dataset)
    if p.is_dir():
        return p
    root = Path(data_root) if data_root else default_data_root()
    q = root / dataset
    if not q.is_dir():
        raise FileNotFoundError(f"dataset {dataset!r} not found: neither a folder nor under {root}")
    return q


def read_pairs(path: Path) -> np.ndarray:
    """First two integer columns of a tab-separated interaction file, as an (n, 2) int64 array."""
    return np.loadtxt(path, dtype=np.int64, usecols=(0, 1), ndmin=2)


def k_core(pairs: np.ndarray, k: int) -> np.ndarray:
    """Drop users and items with fewer than k interactions, repeatedly, until none remain."""
    pairs = np.unique(pairs, axis=0)
    while True:
        uc = np.bincount(pairs[:, 0])
        ic = np.bincount(pairs[:, 1])
        keep = (uc[pairs[:, 0]] >= k) & (ic[pairs[:, 1]] >= k)
        if keep.all():
            return pairs
        pairs = pairs[keep]


def to_csr(pairs: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    data = np.ones(len(pairs), dtype=np.float32)
    m = sp.csr_matrix((data, (pairs[:, 0], pairs[:, 1])), shape=(n_users, n_items))
    m.data[:] = 1.0  # duplicates collapse to a single edge
    return m


def split_per_user(
    pairs: np.ndarray, ratios: tuple[float, float, float], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random per-user split; every user with >= 3 items gets at least one valid and one test item."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(pairs)), pairs[:, 0]))  # group by user, random order inside
    pairs = pairs[order]
    starts = np.r_[0, np.flatnonzero(np.diff(pairs[:, 0])) + 1]
    counts = np.diff(np.r_[starts, len(pairs)])
    rank = np.arange(len(pairs)) - np.repeat(starts, counts)
    n = np.repeat(counts, counts)
    n_test = np.where(n >= 3, np.maximum(1, np.round(n * ratios[2])), 0)
    n_valid = np.where(n >= 3, np.maximum(1, np.round(n * ratios[1])), 0)
    is_test = rank < n_test
    is_valid = ~is_test & (rank < n_test + n_valid)
    return pairs[~is_test & ~is_valid], pairs[is_valid], pairs[is_test]


def load_split(dataset: str, data_root: str | Path | None = None, core: int = 5, seed: int = 0) -> SplitData:
    """Protocol ``split``: all interactions of domain folder ``dataset``, k-core, 8:1:1 per user."""
    folder = resolve_dataset(dataset, data_root)
    pairs = np.concatenate([read_pairs(folder / "train.txt"), read_pairs(folder / "test_original.txt")])
    pairs = k_core(pairs, core)
    _, pairs[:, 0] = np.unique(pairs[:, 0], return_inverse=True)
    _, pairs[:, 1] = np.unique(pairs[:, 1], return_inverse=True)
    n_users, n_items = int(pairs[:, 0].max()) + 1, int(pairs[:, 1].max()) + 1
    tr, va, te = split_per_user(pairs, (0.8, 0.1, 0.1), seed)
    return SplitData(
        folder.name, n_users, n_items, to_csr(tr, n_users, n_items), to_csr(va, n_users, n_items),
        to_csr(te, n_users, n_items),
    )  # fmt: skip


def _read_shipped_negatives(path: Path) -> tuple[np.ndarray, np.ndarray]:
    users, rows = [], []
    for line in path.read_text().splitlines():
        head, *negs = line.split("\t")
        u, i = (int(t) for t in head.strip("()").split(","))
        users.append(u)
        rows.append([i, *(int(t) for t in negs if t)])
    return np.asarray(users, dtype=np.int64), np.asarray(rows, dtype=np.int64)


def sample_negatives(
    users: np.ndarray, positives: np.ndarray, seen: sp.csr_matrix, n_items: int, n_neg: int, seed: int
) -> np.ndarray:
    """n_neg distinct items per row, none in the user's seen row nor the row's positive (seeded)."""
    rng = np.random.default_rng(seed)
    out = np.empty((len(users), n_neg), dtype=np.int64)
    for r, (u, pos) in enumerate(zip(users, positives)):
        banned = set(seen.indices[seen.indptr[u] : seen.indptr[u + 1]].tolist()) | {int(pos)}
        chosen: list[int] = []
        while len(chosen) < n_neg:
            for c in rng.integers(0, n_items, size=2 * n_neg).tolist():
                if c not in banned:
                    banned.add(c)
                    chosen.append(c)
                    if len(chosen) == n_neg:
                        break
        out[r] = chosen
    return out


def load_loo_domain(folder: Path, n_users: int | None = None, seed: int = 0) -> LooDomain:
    """Protocol ``loo`` for one domain folder: shipped train, leave-one-out test with 99 negatives."""
    train = read_pairs(folder / "train.txt")
    shipped = folder / "test_neg_bitgcf.txt"
    if shipped.exists():
        users, items = _read_shipped_negatives(shipped)
        source = "shipped"
    else:
        test = read_pairs(folder / "test.txt")
        users, items = test[:, 0], test[:, 1:2]
        source = f"sampled(seed={seed})"
    n_items = (
        int(max(train[:, 1].max(), items.max(), read_pairs(folder / "test_original.txt")[:, 1].max())) + 1
    )
    n_users = n_users or int(max(train[:, 0].max(), users.max())) + 1
    train_csr = to_csr(train, n_users, n_items)
    replaced = 0
    if items.shape[1] == 1:
        negs = sample_negatives(users, items[:, 0], train_csr, n_items, N_NEG, seed)
        items = np.concatenate([items, negs], axis=1)
    else:
        items, replaced = clean_negatives(users, items, train_csr, n_items, seed)
    return LooDomain(folder.name, n_users, n_items, train_csr, SampledTest(users, items, source, replaced))


def clean_negatives(
    users: np.ndarray, items: np.ndarray, seen: sp.csr_matrix, n_items: int, seed: int
) -> tuple[np.ndarray, int]:
    """Rows ``[positive, negatives...]`` with every negative equal to the row's positive replaced by a fresh draw
    (not the positive, not in the user's train row, not already in the row; seeded). A positive among its own
    negatives ties with itself and costs the model a rank it never lost (the shipped Phone/Electronics lists
    hold 22 / 7 such rows). Returns (cleaned rows, number replaced)."""
    items = items.copy()
    rng = np.random.default_rng(seed + 7919)
    bad_rows = np.flatnonzero((items[:, 1:] == items[:, :1]).any(1))
    replaced = 0
    for r in bad_rows:
        u, pos = int(users[r]), int(items[r, 0])
        banned = set(seen.indices[seen.indptr[u] : seen.indptr[u + 1]].tolist()) | set(items[r].tolist())
        for j in np.flatnonzero(items[r, 1:] == pos) + 1:
            while True:
                c = int(rng.integers(0, n_items))
                if c not in banned:
                    banned.add(c)
                    items[r, j] = c
                    replaced += 1
                    break
    return items, replaced


def partner_folder(folder_a: Path) -> Path:
    """``.../X_Y`` -> ``.../Y_X`` (the other domain of the pair); fails naming the folder it looked for."""
    x, _, y = folder_a.name.partition("_")
    folder_b = folder_a.parent / f"{y}_{x}"
    if not y or not folder_b.is_dir():
        raise FileNotFoundError(f"cross-domain dataset {folder_a.name!r} needs a partner folder {folder_b}")
    return folder_b


def load_cross_domain(dataset: str, data_root: str | Path | None = None, seed: int = 0) -> CrossDomainPair:
    """``amazon_cdr/X_Y`` -> (A = X_Y, B = Y_X) with a common user count."""
    folder_a = resolve_dataset(dataset, data_root)
    folder_b = partner_folder(folder_a)
    n_users = 1 + max(int(read_pairs(f / "train.txt")[:, 0].max()) for f in (folder_a, folder_b))
    return CrossDomainPair(load_loo_domain(folder_a, n_users, seed), load_loo_domain(folder_b, n_users, seed))


def norm_adj(train: sp.csr_matrix) -> torch.Tensor:
    """D^{-1/2} A D^{-1/2} of the bipartite graph [[0, R], [R^T, 0]] (users first), as a sparse COO tensor."""
    n_users, n_items = train.shape
    a = sp.bmat([[None, train], [train.T, None]], format="csr").astype(np.float32)
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv = np.zeros_like(deg)
    inv[deg > 0] = deg[deg > 0] ** -0.5
    a = (sp.diags(inv) @ a @ sp.diags(inv)).tocoo()
    assert a.shape == (n_users + n_items, n_users + n_items)
    idx = torch.from_numpy(np.vstack([a.row, a.col]).astype(np.int64))
    return torch.sparse_coo_tensor(
        idx, torch.from_numpy(a.data.astype(np.float32)), a.shape, check_invariants=False
    ).coalesce()
