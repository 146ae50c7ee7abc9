"""CLI runners for CTR: ``gmt`` (graph-masked transformer) and ``fm`` (no-graph baseline).

``--dataset synthetic`` uses the synthetic HIN (its metrics include the oracle AUC/LogLoss of the true click
probabilities); ``--dataset amazon_cdr/X_Y`` builds the HIN of :func:`build_amazon_hin` (target domain X,
auxiliary domain Y). Metrics: test AUC and LogLoss.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch

from graph_rec.ctr.fm import FM
from graph_rec.ctr.gmt import GMT, MASKS
from graph_rec.ctr.hin import CTRData, build_amazon_hin
from graph_rec.ctr.sampler import NeighbourSampler
from graph_rec.ctr.synthetic import make_synthetic
from graph_rec.ctr.train import CTRFitConfig, FMLearner, GMTLearner, ctr_metrics, fit_ctr, predict_all
from graph_rec.registry import register_model

LearnerBuilder = Callable[[argparse.Namespace, CTRData], torch.nn.Module]


def load_ctr(args: argparse.Namespace) -> CTRData:
    if args.dataset == "synthetic":
        return make_synthetic(seed=args.seed)
    return build_amazon_hin(args.dataset, args.data_root, seed=args.seed, test_negs=args.test_negs)


def _common(p: argparse.ArgumentParser, epochs: int, lr: float) -> None:
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--test-negs", type=int, default=4, help="non-clicks per held-out click (amazon_cdr)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the CPU is shared)")


def run_ctr(args: argparse.Namespace, build: LearnerBuilder) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = load_ctr(args)
    learner = build(args, data)
    cfg = CTRFitConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay
    )
    train_s = fit_ctr(learner, data.train, cfg, args.seed)
    probs = predict_all(learner, data.test)
    out: dict[str, Any] = {"model": args.model, "dataset": data.name, "epochs": args.epochs}
    out.update({f"test_{k}": v for k, v in ctr_metrics(data.test.labels, probs).items()})
    if data.test.truth is not None:
        out.update({f"oracle_{k}": v for k, v in ctr_metrics(data.test.labels, data.test.truth).items()})
    out.update(
        n_train=len(data.train.labels), n_test=len(data.test.labels), n_nodes=data.hin.n_nodes,
        train_seconds=round(train_s, 1), wall_seconds=round(time.perf_counter() - t0, 1),
    )  # fmt: skip
    return out


def _gmt_args(p: argparse.ArgumentParser) -> None:
    _common(p, epochs=5, lr=1e-3)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads-per-mask", type=int, default=1)
    p.add_argument("--masks", default="induced,cross,knn,complete", help=f"comma list from {sorted(MASKS)}")
    p.add_argument("--knn", type=int, default=4)
    p.add_argument("--n1", type=int, default=6, help="one-hop neighbours per side")
    p.add_argument("--n2", type=int, default=6, help="two-hop neighbours per side")
    p.add_argument("--samples", type=int, default=2, help="neighbourhood samples S for the consistency term")
    p.add_argument("--lam", type=float, default=0.1, help="consistency weight")
    p.add_argument("--dropout", type=float, default=0.0)


@register_model("gmt", "GMT: graph-masked transformer for CTR (AUC, LogLoss)", _gmt_args)
def run_gmt(args: argparse.Namespace) -> dict[str, Any]:
    def build(a: argparse.Namespace, data: CTRData) -> torch.nn.Module:
        hin = data.hin
        model = GMT(
            hin.n_nodes, len(hin.type_names), torch.from_numpy(hin.node_type), dim=a.dim, layers=a.layers,
            heads_per_mask=a.heads_per_mask, masks=tuple(a.masks.split(",")), knn=a.knn, dropout=a.dropout,
        )  # fmt: skip
        return GMTLearner(model, NeighbourSampler(hin, a.n1, a.n2), n_samples=a.samples, lam=a.lam)

    return run_ctr(args, build)


def _fm_args(p: argparse.ArgumentParser) -> None:
    _common(p, epochs=5, lr=1e-3)


@register_model("fm", "Factorisation machine: no-graph CTR baseline", _fm_args)
def run_fm(args: argparse.Namespace) -> dict[str, Any]:
    def build(a: argparse.Namespace, data: CTRData) -> torch.nn.Module:
        hin = data.hin
        return FMLearner(FM(hin.n_nodes, torch.from_numpy(hin.item_attrs), hin.item_offset, dim=a.dim))

    return run_ctr(args, build)
