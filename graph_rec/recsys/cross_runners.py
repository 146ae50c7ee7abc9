"""CLI runners for the cross-domain recommenders: ``hcts`` and ``bitgcf``.

``--dataset amazon_cdr/X_Y`` names the pair (X, Y): domain A = folder ``X_Y``, domain B = folder ``Y_X``.
Both domains are trained jointly and both are evaluated (leave-one-out against 99 negatives; metric keys are
prefixed by the domain folder, e.g. ``sport_cloth_hr@10`` is the Sports domain). The single-domain LightGCN
reference for the same protocol is ``python -m graph_rec train lightgcn --protocol loo --dataset amazon_cdr/X_Y``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from graph_rec.recsys.bitgcf import BiTGCF
from graph_rec.recsys.cross_train import evaluate_cross, fit_cross
from graph_rec.recsys.data import CrossDomainPair, load_cross_domain, norm_adj
from graph_rec.recsys.hcts import HCTS
from graph_rec.recsys.train import FitConfig
from graph_rec.registry import register_model

CrossBuilder = Callable[[argparse.Namespace, CrossDomainPair], torch.nn.Module]


def _common(p: argparse.ArgumentParser, epochs: int, lr: float) -> None:
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the CPU is shared)")


def run_cross(args: argparse.Namespace, build: CrossBuilder) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    pair = load_cross_domain(args.dataset, args.data_root, seed=args.seed)
    model = build(args, pair)
    cfg = FitConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    res = fit_cross(model, pair, cfg, args.seed)
    out: dict[str, Any] = {"model": args.model, "dataset": args.dataset, "epochs": args.epochs}
    out.update(evaluate_cross(model, pair))
    out.update(
        negatives_a=pair.a.test.negatives_from, negatives_b=pair.b.test.negatives_from,
        negatives_positives_replaced_a=pair.a.test.positives_replaced,
        negatives_positives_replaced_b=pair.b.test.positives_replaced,
        train_seconds=round(res.train_seconds, 1), wall_seconds=round(time.perf_counter() - t0, 1),
    )  # fmt: skip
    if isinstance(model, HCTS):
        out.update(curvature_a=model.enc["a"].k.item(), curvature_b=model.enc["b"].k.item())
    return out


def _graphs(pair: CrossDomainPair) -> dict[str, Any]:
    return {
        "n_users": pair.a.n_users,
        "n_items": (pair.a.n_items, pair.b.n_items),
        "adjs": (norm_adj(pair.a.train), norm_adj(pair.b.train)),
        "trains": (pair.a.train, pair.b.train),
    }


def _hcts_args(p: argparse.ArgumentParser) -> None:
    _common(p, epochs=40, lr=5e-3)
    p.add_argument("--margin", type=float, default=0.1)
    p.add_argument("--lambda-cts", type=float, default=0.01)
    p.add_argument("--tau", type=float, default=0.1)
    p.add_argument("--n-neg", type=int, default=3, help="negatives per contrastive anchor")
    p.add_argument("--lambda-norm", type=float, default=0.1)
    p.add_argument("--cts-batch", type=int, default=1024, help="anchors per step in the contrastive terms")


@register_model(
    "hcts", "HCTS: hyperbolic contrastive cross-domain transfer (both domains of a pair)", _hcts_args
)
def run_hcts(args: argparse.Namespace) -> dict[str, Any]:
    return run_cross(
        args,
        lambda a, pair: HCTS(
            **_graphs(pair),
            dim=a.dim,
            layers=a.layers,
            margin=a.margin,
            lambda_cts=a.lambda_cts,
            tau=a.tau,
            n_neg=a.n_neg,
            lambda_norm=a.lambda_norm,
            cts_batch=a.cts_batch,
        ),
    )


def _bitgcf_args(p: argparse.ArgumentParser) -> None:
    _common(p, epochs=40, lr=5e-3)
    p.add_argument("--reg", type=float, default=1e-4)


@register_model("bitgcf", "BiTGCF-style Euclidean cross-domain transfer baseline", _bitgcf_args)
def run_bitgcf(args: argparse.Namespace) -> dict[str, Any]:
    return run_cross(args, lambda a, pair: BiTGCF(**_graphs(pair), dim=a.dim, layers=a.layers, reg=a.reg))
