"""Why does GraphLearner's adversarial objective degrade the clustering? (issue 18 item 5)

    python bench/graph_rec_objective_probe.py --dataset cora --epochs 200 --eval-every 20 --threads 2

Trains one seed per objective (the dataset's config, fp32) and prints, at every evaluation epoch, the k-means
ACC of the embedding the protocol clusters, (F1 + F2)/2, next to the ACC of each view alone (F1 = encoder of
the smoothed input, F2 = encoder of the augmented view), the share of the structure augmentor's attention on
same-class edges, the InfoNCE value and the label-free silhouette. If the augmented view loses the class
structure while F1 keeps it, the degradation comes from the augmentors, not from the encoder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, however this script is loaded
from graph_rec.clustering.config import config_path, load_config
from graph_rec.clustering.preprocess import ClusteringInputs, prepare_inputs
from graph_rec.clustering.trainer import GraphLearner, Views, score, train_seed
from graph_rec.data.graphs import load_graph


def view_probe(labels: np.ndarray, k: int, seed: int):
    def probe(
        model: GraphLearner, inp: ClusteringInputs, views: Views, multiplier: torch.Tensor | None
    ) -> dict[str, float]:
        f1, f2 = (v.detach().float().cpu().numpy() for v in (views.f1, views.f2))
        return {
            "acc_f1": score(f1, labels, k, 3, seed)["acc"],
            "acc_f2": score(f2, labels, k, 3, seed)["acc"],
        }

    return probe


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="cora")
    p.add_argument("--objectives", nargs="+", default=["adversarial", "joint"])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides (JSON values)")
    p.add_argument("--out", default=None, help="also write the rows as JSON here")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    graph = load_graph(a.dataset)
    rows = []
    for objective in a.objectives:
        overrides = {"objective": objective, "epochs": a.epochs, "eval_every": a.eval_every, "bf16": False}
        overrides.update({k: json.loads(v) for k, v in (s.split("=", 1) for s in a.set)})
        cfg = load_config(config_path(a.dataset), overrides)
        with threadpool_limits(a.threads):
            inp = prepare_inputs(graph, cfg.pca_dim, cfg.smooth_steps)
            r = train_seed(inp, graph.labels, cfg, a.seed, view_probe(graph.labels, cfg.n_clusters, a.seed))
        for h in r.history:
            if "acc" in h:
                rows.append({"objective": objective, **h})
        print(f"{objective}: selected (silhouette) epoch {r.selected_epoch} ACC {r.selected['acc']:.2f}, "
              f"best (labels) epoch {r.best_epoch} ACC {r.best['acc']:.2f}, last ACC {r.last['acc']:.2f}",
              flush=True)  # fmt: skip
    cols = ["acc", "acc_f1", "acc_f2", "s_homophily", "loss_c", "loss_a", "silhouette"]
    print("| objective | epoch | " + " | ".join(cols) + " |")
    print("|---|---:|" + "---:|" * len(cols))
    for r in rows:
        print(f"| {r['objective']} | {r['epoch']} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
