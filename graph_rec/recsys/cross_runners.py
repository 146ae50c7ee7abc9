"""CLI runners for the cross-domain recommenders: ``hcts`` and ``bitgcf``.

``--dataset amazon_cdr/X_Y`` names the pair (X, Y): domain A = folder ``X_Y``, domain B = folder ``Y_X``.
Both domains are trained jointly and both are evaluated (leave-one-out against 99 negatives): domain A's
metrics are ``test/hr@K``, ``test/ndcg@K``, ``test/mrr`` — the same keys, on the same test rows, as
``python -m graph_rec train lightgcn --protocol loo --dataset amazon_cdr/X_Y`` — and domain B's are
``test_partner/*``. Sampled negatives (Sports/Clothing) are drawn with ``--split-seed``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from graph_rec.experiment import ModelSpec, RunContext, SeedOutcome
from graph_rec.recsys.bitgcf import BiTGCF
from graph_rec.recsys.cross_train import evaluate_cross, fit_cross
from graph_rec.recsys.data import (
    CrossDomainPair,
    load_cross_domain,
    norm_adj,
    partner_folder,
    resolve_dataset,
)
from graph_rec.recsys.hcts import HCTS
from graph_rec.recsys.train import FitConfig
from graph_rec.registry import register_model


@dataclass
class CrossConfig:
    # An epoch is as many steps as the larger domain needs to cover its interactions once (cross_train.py).
    epochs: int = 40
    # > 0: exactly this many steps per seed (one batch per domain each) instead of epochs; a LightGCN run with
    # the same steps and batch_size sees as many batches of its domain (equal budgets)
    steps: int = 0
    lr: float = 5e-3
    batch_size: int = 4096  # triples per domain per optimiser step
    dim: int = 64
    layers: int = 3


@dataclass
class HCTSConfig(CrossConfig):
    margin: float = 0.1  # hinge margin on squared distance
    lambda_cts: float = 0.01  # weight of the contrastive transfer terms
    tau: float = 0.1  # contrastive temperature
    n_neg: int = 3  # negatives per contrastive anchor
    lambda_norm: float = 0.1  # weight of the tangent-norm regulariser
    cts_batch: int = 1024  # anchors per step in the contrastive terms


@dataclass
class BiTGCFConfig(CrossConfig):
    reg: float = 1e-4  # L2 on the batch's layer-0 embeddings


CrossBuilder = Callable[[Any, CrossDomainPair], torch.nn.Module]


def pair_folders(ctx: RunContext) -> list[Path]:
    a = resolve_dataset(ctx.dataset, ctx.data_root)
    return [a, partner_folder(a)]


def load(ctx: RunContext) -> CrossDomainPair:
    return load_cross_domain(ctx.dataset, ctx.data_root, seed=ctx.split_seed)


def describe(pair: CrossDomainPair) -> dict[str, Any]:
    return {
        "users": pair.a.n_users, "items": [pair.a.n_items, pair.b.n_items],
        "train_interactions": [int(pair.a.train.nnz), int(pair.b.train.nnz)],
        "negatives": [pair.a.test.negatives_from, pair.b.test.negatives_from],
        "negatives_positives_replaced": [pair.a.test.positives_replaced, pair.b.test.positives_replaced],
    }  # fmt: skip


def run_seed_with(build: CrossBuilder) -> Callable[[Any, CrossDomainPair, int, RunContext], SeedOutcome]:
    def run_seed(cfg: CrossConfig, pair: CrossDomainPair, seed: int, ctx: RunContext) -> SeedOutcome:
        model = build(cfg, pair).to(ctx.device)
        res = fit_cross(
            model,
            pair,
            FitConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, max_steps=cfg.steps),
            seed,
        )
        per_domain = evaluate_cross(model, pair)
        metrics = {f"test/{k}": v for k, v in per_domain["a"].items()}
        metrics.update({f"test_partner/{k}": v for k, v in per_domain["b"].items()})
        extra = {}
        if isinstance(model, HCTS):
            extra = {"curvature_a": model.enc["a"].k.item(), "curvature_b": model.enc["b"].k.item()}
        return SeedOutcome(metrics, res.steps, res.history, res.train_seconds, extra)

    return run_seed


def _graphs(pair: CrossDomainPair) -> dict[str, Any]:
    return {
        "n_users": pair.a.n_users,
        "n_items": (pair.a.n_items, pair.b.n_items),
        "adjs": (norm_adj(pair.a.train), norm_adj(pair.b.train)),
        "trains": (pair.a.train, pair.b.train),
    }


def _hcts(c: HCTSConfig, pair: CrossDomainPair) -> torch.nn.Module:
    return HCTS(
        **_graphs(pair), dim=c.dim, layers=c.layers, margin=c.margin, lambda_cts=c.lambda_cts, tau=c.tau,
        n_neg=c.n_neg, lambda_norm=c.lambda_norm, cts_batch=c.cts_batch,
    )  # fmt: skip


def _spec(name: str, help: str, config: type, build: CrossBuilder) -> ModelSpec:
    return ModelSpec(
        name=name,
        help=help,
        config=config,
        load=load,
        run_seed=run_seed_with(build),
        headline=lambda cfg: ("test/hr@10", "test/ndcg@10", "test_partner/hr@10", "test_partner/ndcg@10"),
        variant=lambda cfg: "loo",
        describe=describe,
        data_folders=pair_folders,
    )


HCTS_SPEC = register_model(
    _spec(
        "hcts",
        "HCTS: hyperbolic contrastive cross-domain transfer (both domains of a pair)",
        HCTSConfig,
        _hcts,
    )
)
BITGCF_SPEC = register_model(
    _spec(
        "bitgcf",
        "BiTGCF-style Euclidean cross-domain transfer baseline",
        BiTGCFConfig,
        lambda c, pair: BiTGCF(**_graphs(pair), dim=c.dim, layers=c.layers, reg=c.reg),
    )
)
