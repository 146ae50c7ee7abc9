"""What the clustering inputs give without any training: k-means on the smoothed features and on degree.

    python bench/graph_rec_input_baselines.py                         # cora citeseer bat eat, t = 0..8
    python bench/graph_rec_input_baselines.py --datasets bat eat --steps 0 4 6 8

For each dataset: ACC of k-means (10 restarts, mean over 3 k-means seeds) on Â^t X (X = the configs' PCA
features, Â the self-looped symmetric normalisation GraphLearner uses), on its row-L2-normalised form (the
direction, which is all a row-normalised encoder keeps), and on log(1 + degree) alone. A trained embedding
should beat the first two; the third shows how much of a dataset's labels is degree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.preprocessing import normalize
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from graph_rec.clustering.config import config_path, load_config
from graph_rec.clustering.preprocess import pca_features, remove_self_loops, sym_norm_with_self_loops
from graph_rec.clustering.trainer import score
from graph_rec.data.graphs import load_graph


def kmeans_acc(z: np.ndarray, labels: np.ndarray, k: int, repeats: int = 3) -> float:
    return float(np.mean([score(z, labels, k, 10, seed)["acc"] for seed in range(repeats)]))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["cora", "citeseer", "bat", "eat"])
    p.add_argument("--steps", nargs="+", type=int, default=[0, 2, 4, 6, 8])
    p.add_argument("--data-root", default=None)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    head = " | ".join(f"t = {t}" for t in args.steps)
    print(f"| dataset | input | {head} |\n|---|---|" + "---:|" * len(args.steps))
    with threadpool_limits(args.threads):
        for name in args.datasets:
            g = load_graph(name, args.data_root)
            cfg_file = config_path(Path(name).name)  # a shipped dataset's PCA size, else the paper's default
            pca_dim = load_config(cfg_file).pca_dim if cfg_file.is_file() else min(500, g.num_features)
            adj = remove_self_loops(g.adj)
            a_hat = sym_norm_with_self_loops(adj)
            z = pca_features(g.features, pca_dim)
            raw, unit = [], []
            for t in range(max(args.steps) + 1):
                if t in args.steps:
                    raw.append(kmeans_acc(z, g.labels, g.num_classes))
                    unit.append(kmeans_acc(normalize(z), g.labels, g.num_classes))
                z = np.asarray(a_hat @ z, dtype=np.float32)
            log_degree = np.log1p(np.asarray(adj.sum(1), dtype=np.float32))
            print(f"| {g.name} | Â^t X | " + " | ".join(f"{v:.1f}" for v in raw) + " |")
            print(f"| {g.name} | rowL2(Â^t X) | " + " | ".join(f"{v:.1f}" for v in unit) + " |")
            print(
                f"| {g.name} | log(1 + degree) | {kmeans_acc(log_degree, g.labels, g.num_classes):.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
