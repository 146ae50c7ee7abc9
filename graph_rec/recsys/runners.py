"""CLI runners for the single-domain recommenders: ``lightgcn`` and ``hgformer``.

``--dataset amazon_cdr/X_Y`` means domain X (folder ``X_Y``). ``--protocol split`` (default): k-core, 8:1:1
per user (drawn with ``--split-seed``), model selected on validation Recall@20, full-ranking test metrics
(``test/recall@K``, ``test/ndcg@K``, ``test/hr@K``). ``--protocol loo``: shipped train, leave-one-out test
against 99 negatives, fixed epoch count (no validation set exists), ``test/hr@K``, ``test/ndcg@K``, ``test/mrr``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from graph_rec.experiment import ModelSpec, RunContext, SeedOutcome
from graph_rec.recsys.data import LooDomain, SplitData, load_loo_domain, load_split, norm_adj, resolve_dataset
from graph_rec.recsys.hgformer import Hgformer
from graph_rec.recsys.lightgcn import LightGCN
from graph_rec.recsys.metrics import full_ranking, sampled_ranking
from graph_rec.recsys.train import FitConfig, fit, score_fn
from graph_rec.registry import register_model


@dataclass
class RankingConfig:
    # split: k-core, 8:1:1 per user, full ranking; loo: shipped train, 1 positive vs 99 negatives
    protocol: str = field(default="split", metadata={"choices": ("split", "loo")})
    core: int = 5  # k-core filter (split protocol)
    epochs: int = 100  # one epoch covers every training interaction once
    steps: int = 0  # > 0: exactly this many optimiser steps per seed instead of epochs (equal budgets)
    lr: float = 5e-3
    batch_size: int = 4096  # (user, positive, negative) triples per optimiser step
    dim: int = 64  # embedding width
    layers: int = 3  # graph propagation layers
    eval_every: int = 5  # validation period in epochs (split protocol: selects the best epoch)


@dataclass
class LightGCNConfig(RankingConfig):
    reg: float = 1e-4  # L2 on the batch's layer-0 embeddings (LightGCN's code)


@dataclass
class HgformerConfig(RankingConfig):
    heads: int = 2
    tau: float = 1.0  # attention temperature
    alpha: float = 0.2  # weight of the transformer branch in the tangent-space fusion
    margin: float = 0.1  # margin of the distance hinge loss
    attention: str = field(default="linear", metadata={"choices": ("linear", "exact")})
    n_features: int = 64  # random features of the linear attention
    # gcn: attention over LHGCN's output (the paper); embedding: over the input embeddings, parallel to LHGCN
    attention_input: str = field(default="gcn", metadata={"choices": ("gcn", "embedding")})
    learn_curvature: bool = False  # curvature K learnable (softplus, init 1) instead of fixed K = 1


# (cfg, n_users, n_items, adj, seed) -> model
Builder = Callable[[Any, int, int, torch.Tensor, int], torch.nn.Module]


def prepare(cfg: RankingConfig, _: None, ctx: RunContext) -> SplitData | LooDomain:
    if cfg.protocol == "split":
        return load_split(ctx.dataset, ctx.data_root, core=cfg.core, seed=ctx.split_seed)
    return load_loo_domain(resolve_dataset(ctx.dataset, ctx.data_root), seed=ctx.split_seed)


def fingerprint(*mats: sp.csr_matrix) -> str:
    """A short hash of which interactions fell in which part: the same split gives the same fingerprint."""
    h = hashlib.sha256()
    for m in mats:
        coo = m.tocoo()
        order = np.lexsort((coo.col, coo.row))
        h.update(np.stack([coo.row[order], coo.col[order]]).astype(np.int64).tobytes())
    return h.hexdigest()[:16]


def describe(data: SplitData | LooDomain) -> dict[str, Any]:
    out: dict[str, Any] = {
        "users": data.n_users,
        "items": data.n_items,
        "train_interactions": int(data.train.nnz),
    }
    if isinstance(data, SplitData):
        out["split_fingerprint"] = fingerprint(data.train, data.valid, data.test)
    if isinstance(data, LooDomain):
        out.update(
            negatives=data.test.negatives_from, negatives_positives_replaced=data.test.positives_replaced
        )
    return out


def run_seed_with(build: Builder) -> Callable[[RankingConfig, Any, int, RunContext], SeedOutcome]:
    def run_seed(cfg: RankingConfig, data: SplitData | LooDomain, seed: int, ctx: RunContext) -> SeedOutcome:
        model = build(cfg, data.n_users, data.n_items, norm_adj(data.train), seed).to(ctx.device)
        fit_cfg = FitConfig(
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            eval_every=cfg.eval_every,
            max_steps=cfg.steps,
        )
        extra: dict[str, Any] = {}
        if isinstance(data, SplitData):

            def validate(score):
                return full_ranking(score, data.valid, exclude=[data.train], ks=(20,))

            res = fit(model, data.train, fit_cfg, seed, validate)
            test = full_ranking(score_fn(model), data.test, exclude=[data.train, data.valid])
            metrics = {f"valid/{k}": v for k, v in res.best_valid.items()}
            extra["best_epoch"] = res.best_epoch
        else:
            res = fit(model, data.train, fit_cfg, seed)
            test, metrics = sampled_ranking(score_fn(model), data.test), {}
        if isinstance(model, Hgformer):
            extra["curvature"] = float(model.k.item())
        metrics.update({f"test/{k}": v for k, v in test.items()})
        return SeedOutcome(metrics, res.steps, res.history, res.train_seconds, extra)

    return run_seed


def headline(cfg: RankingConfig) -> tuple[str, ...]:
    return ("test/recall@20", "test/ndcg@20") if cfg.protocol == "split" else ("test/hr@10", "test/ndcg@10")


LIGHTGCN = register_model(
    ModelSpec(
        name="lightgcn",
        help="LightGCN (Euclidean baseline), split or leave-one-out protocol",
        config=LightGCNConfig,
        load=lambda ctx: None,
        prepare=prepare,
        run_seed=run_seed_with(
            lambda c, nu, ni, adj, seed: LightGCN(nu, ni, adj, dim=c.dim, layers=c.layers, reg=c.reg)
        ),
        headline=headline,
        variant=lambda cfg: cfg.protocol,
        describe=describe,
    )
)


def _hgformer(c: HgformerConfig, nu: int, ni: int, adj: torch.Tensor, seed: int) -> torch.nn.Module:
    return Hgformer(
        nu, ni, adj, dim=c.dim, layers=c.layers, heads=c.heads, tau=c.tau, alpha=c.alpha, margin=c.margin,
        attention=c.attention, n_features=c.n_features, seed=seed, attention_input=c.attention_input,
        learn_curvature=c.learn_curvature,
    )  # fmt: skip


HGFORMER = register_model(
    ModelSpec(
        name="hgformer",
        help="Hgformer: LHGCN + hyperbolic cross-attention, margin loss",
        config=HgformerConfig,
        load=lambda ctx: None,
        prepare=prepare,
        run_seed=run_seed_with(_hgformer),
        headline=headline,
        variant=lambda cfg: f"{cfg.protocol}_{cfg.attention}_{cfg.attention_input}",
        describe=describe,
    )
)
