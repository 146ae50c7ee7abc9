"""Node-clustering metrics as the deep-graph-clustering literature computes them.

ACC and macro-F1 use the best one-to-one mapping of clusters to classes (Hungarian assignment on the
contingency table, ``scipy.optimize.linear_sum_assignment``); NMI (arithmetic normalisation) and ARI
come from scikit-learn. All values are percentages, as the papers print them.

Departure from the released GraphLearner/DGC code: their ``cluster_acc`` overwrites predictions when
the clustering found fewer clusters than classes; here the assignment is rectangular and a cluster
left without a class simply counts as wrong, which never inflates ACC.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, f1_score, normalized_mutual_info_score, silhouette_score
from threadpoolctl import threadpool_limits


def contingency(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts[c, k] of nodes with class c put in cluster k, plus the class and cluster ids."""
    classes, ti = np.unique(y_true, return_inverse=True)
    clusters, pi = np.unique(y_pred, return_inverse=True)
    counts = np.zeros((len(classes), len(clusters)), dtype=np.int64)
    np.add.at(counts, (ti, pi), 1)
    return counts, classes, clusters


def best_map(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Relabel ``y_pred`` with the class each cluster is matched to (-1 for unmatched clusters)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    counts, classes, clusters = contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(-counts)  # maximise matched nodes
    mapping = dict.fromkeys(clusters.tolist(), -1)
    for r, c in zip(rows, cols):
        mapping[clusters[c].item()] = classes[r].item()
    return np.array([mapping[p] for p in y_pred.tolist()], dtype=np.int64)


def cluster_acc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(best_map(y_true, y_pred) == np.asarray(y_true))) * 100.0


def clustering_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """ACC, NMI, ARI and macro-F1 (all in %) of a clustering against the ground truth."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    mapped = best_map(y_true, y_pred)
    classes = np.unique(y_true)
    return {
        "acc": float(np.mean(mapped == y_true)) * 100.0,
        "nmi": float(normalized_mutual_info_score(y_true, y_pred, average_method="arithmetic")) * 100.0,
        "ari": float(adjusted_rand_score(y_true, y_pred)) * 100.0,
        "f1": float(f1_score(y_true, mapped, labels=classes, average="macro", zero_division=0)) * 100.0,
    }


def kmeans(
    embeddings: np.ndarray, n_clusters: int, n_init: int = 20, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """k-means with ``n_init`` restarts (best inertia kept); returns (labels [n], centers [k, d])."""
    km = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed)
    # One BLAS/OpenMP thread: at these sizes more threads gain little, and on a shared, oversubscribed
    # machine OpenMP spin-waiting made k-means 5x slower.
    with threadpool_limits(1):
        labels = km.fit_predict(np.asarray(embeddings, dtype=np.float64))
    return labels.astype(np.int64), km.cluster_centers_.astype(np.float32)


def silhouette(embeddings: np.ndarray, pred: np.ndarray, seed: int = 0, sample: int = 3000) -> float:
    """Cosine silhouette of a partition (label-free, in [-1, 1]); at most ``sample`` nodes (seeded) so the
    O(n²) distance matrix stays small on large graphs. A partition with one cluster scores -1."""
    if len(np.unique(pred)) < 2:
        return -1.0
    n = len(pred)
    with threadpool_limits(1):
        return float(
            silhouette_score(embeddings, pred, metric="cosine", sample_size=min(n, sample), random_state=seed)
        )


def mean_std(runs: list[dict[str, float]]) -> dict[str, float]:
    """Flatten per-seed metric dicts into ``{name}_mean`` / ``{name}_std`` (population std, as the papers)."""
    out: dict[str, float] = {}
    for key in runs[0]:
        vals = np.array([r[key] for r in runs], dtype=np.float64)
        out[f"{key}_mean"] = float(vals.mean())
        out[f"{key}_std"] = float(vals.std())
    return out
