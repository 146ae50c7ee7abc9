"""Clustering metrics against hand-computed values and scikit-learn/scipy references."""

from __future__ import annotations

import numpy as np
import pytest

from graph_rec.metrics.clustering import best_map, cluster_acc, clustering_metrics, kmeans, mean_std


def test_permuted_labels_are_perfect() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([2, 2, 0, 0, 1, 1])
    m = clustering_metrics(y, pred)
    for key in ("acc", "nmi", "ari", "f1"):
        assert m[key] == pytest.approx(100.0)


def test_known_values() -> None:
    # contingency [[2,1],[0,3]]: best map cluster0->class0, cluster1->class1 gives 5/6 correct
    y = np.array([0, 0, 0, 1, 1, 1])
    pred = np.array([0, 0, 1, 1, 1, 1])
    m = clustering_metrics(y, pred)
    assert m["acc"] == pytest.approx(500 / 6)
    # per-class F1: class0 P=1 R=2/3 -> 0.8; class1 P=3/4 R=1 -> 6/7
    assert m["f1"] == pytest.approx(100 * (0.8 + 6 / 7) / 2)
    # ARI by hand: sum C(n_ij,2)=1+3=4; rows 3,3 -> 6; cols 2,4 -> 7; C(6,2)=15
    expected_ari = (4 - 6 * 7 / 15) / (0.5 * (6 + 7) - 6 * 7 / 15)
    assert m["ari"] == pytest.approx(100 * expected_ari)
    # NMI by hand (arithmetic mean of entropies)
    p = np.array([[2, 1], [0, 3]]) / 6
    pi, pj = p.sum(1), p.sum(0)
    nz = p > 0
    mi = (p[nz] * np.log(p[nz] / np.outer(pi, pj)[nz])).sum()
    h = lambda q: -(q * np.log(q)).sum()  # noqa: E731
    assert m["nmi"] == pytest.approx(100 * mi / ((h(pi) + h(pj)) / 2))


def test_fewer_clusters_than_classes_never_inflates() -> None:
    y = np.array([0, 1, 2, 3])
    pred = np.zeros(4, dtype=int)
    assert cluster_acc(y, pred) == pytest.approx(25.0)
    assert (best_map(y, pred) >= 0).all()


def test_more_clusters_than_classes_unmatched_are_wrong() -> None:
    y = np.array([0, 0, 1, 1])
    pred = np.array([0, 1, 2, 2])
    assert sorted(best_map(y, pred).tolist()) == [-1, 0, 1, 1]
    assert cluster_acc(y, pred) == pytest.approx(75.0)


def test_kmeans_recovers_blobs_and_mean_std() -> None:
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [10, 0], [0, 10]], dtype=float)
    y = np.repeat(np.arange(3), 30)
    x = centers[y] + rng.normal(size=(90, 2))
    pred, c = kmeans(x, 3, n_init=5, seed=0)
    assert c.shape == (3, 2)
    assert clustering_metrics(y, pred)["acc"] == pytest.approx(100.0)
    agg = mean_std([{"acc": 70.0}, {"acc": 80.0}])
    assert agg == {"acc_mean": 75.0, "acc_std": 5.0}
