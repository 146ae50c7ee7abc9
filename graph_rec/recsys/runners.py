"""CLI runners for the single-domain recommenders: ``lightgcn`` and ``hgformer``.

``--dataset amazon_cdr/X_Y`` means domain X (folder ``X_Y``). ``--protocol split`` (default): k-core, 8:1:1
per user, model selected on validation Recall@20, full-ranking test metrics. ``--protocol loo``: shipped train,
leave-one-out test against 99 negatives, fixed epoch count (no validation set exists), HR/NDCG@K.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from graph_rec.recsys.data import load_loo_domain, load_split, norm_adj, resolve_dataset
from graph_rec.recsys.hgformer import Hgformer
from graph_rec.recsys.lightgcn import LightGCN
from graph_rec.recsys.metrics import full_ranking, sampled_ranking
from graph_rec.recsys.train import FitConfig, fit, score_fn
from graph_rec.registry import register_model

# (args, n_users, n_items, adj) -> model
ModelBuilder = Callable[[argparse.Namespace, int, int, torch.Tensor], torch.nn.Module]


def add_common_args(p: argparse.ArgumentParser, epochs: int, lr: float) -> None:
    p.add_argument("--protocol", choices=["split", "loo"], default="split")
    p.add_argument("--core", type=int, default=5, help="k-core filter (split protocol)")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the CPU is shared)")


def run_single_domain(args: argparse.Namespace, build: ModelBuilder) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    cfg = FitConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, eval_every=args.eval_every)
    t0 = time.perf_counter()
    out: dict[str, Any] = {"model": args.model, "dataset": args.dataset, "protocol": args.protocol}
    if args.protocol == "split":
        data = load_split(args.dataset, args.data_root, core=args.core, seed=args.seed)
        model = build(args, data.n_users, data.n_items, norm_adj(data.train))

        def validate(score):
            return full_ranking(score, data.valid, exclude=[data.train], ks=(20,))

        res = fit(model, data.train, cfg, args.seed, validate)
        test = full_ranking(score_fn(model), data.test, exclude=[data.train, data.valid])
        out.update(
            best_epoch=res.best_epoch, valid_recall_at_20=res.best_valid.get("recall@20", float("nan"))
        )
    else:
        dom = load_loo_domain(resolve_dataset(args.dataset, args.data_root), seed=args.seed)
        model = build(args, dom.n_users, dom.n_items, norm_adj(dom.train))
        res = fit(model, dom.train, cfg, args.seed)
        test = sampled_ranking(score_fn(model), dom.test)
        out["negatives"] = dom.test.negatives_from
        out["negatives_positives_replaced"] = dom.test.positives_replaced
        data = dom
    out.update({f"test_{k}": v for k, v in test.items()})
    out.update(
        n_users=data.n_users, n_items=data.n_items, n_train=int(data.train.nnz), epochs=args.epochs,
        train_seconds=round(res.train_seconds, 1), wall_seconds=round(time.perf_counter() - t0, 1),
    )  # fmt: skip
    return out


def _lightgcn_args(p: argparse.ArgumentParser) -> None:
    add_common_args(p, epochs=100, lr=5e-3)
    p.add_argument("--reg", type=float, default=1e-4)


@register_model("lightgcn", "LightGCN (Euclidean baseline), split or leave-one-out protocol", _lightgcn_args)
def run_lightgcn(args: argparse.Namespace) -> dict[str, Any]:
    return run_single_domain(
        args, lambda a, nu, ni, adj: LightGCN(nu, ni, adj, dim=a.dim, layers=a.layers, reg=a.reg)
    )


def _hgformer_args(p: argparse.ArgumentParser) -> None:
    add_common_args(p, epochs=100, lr=5e-3)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--tau", type=float, default=1.0, help="attention temperature")
    p.add_argument("--alpha", type=float, default=0.2, help="weight of the transformer branch in the fusion")
    p.add_argument("--margin", type=float, default=0.1)
    p.add_argument("--attention", choices=["linear", "exact"], default="linear")
    p.add_argument("--n-features", type=int, default=64, help="random features of the linear attention")


@register_model("hgformer", "Hgformer: LHGCN + hyperbolic cross-attention, margin loss", _hgformer_args)
def run_hgformer(args: argparse.Namespace) -> dict[str, Any]:
    def build(a: argparse.Namespace, nu: int, ni: int, adj: torch.Tensor) -> torch.nn.Module:
        return Hgformer(
            nu, ni, adj, dim=a.dim, layers=a.layers, heads=a.heads, tau=a.tau, alpha=a.alpha, margin=a.margin,
            attention=a.attention, n_features=a.n_features, seed=a.seed,
        )  # fmt: skip

    return run_single_domain(args, build)
