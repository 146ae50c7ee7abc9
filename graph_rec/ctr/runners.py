"""CLI runners for CTR: ``gmt`` (graph-masked transformer) and ``fm`` (no-graph baseline).

``--dataset synthetic`` uses the synthetic HIN drawn with ``--split-seed`` (its metrics include ``oracle/auc``
and ``oracle/logloss``, the true click probabilities' scores); ``--dataset amazon_cdr/X_Y`` builds the HIN of
:func:`build_amazon_hin` (target domain X, auxiliary domain Y; training non-clicks drawn with ``--split-seed``).
Metrics: ``test/auc`` and ``test/logloss``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from graph_rec.ctr.fm import FM
from graph_rec.ctr.gmt import GMT, MASKS
from graph_rec.ctr.hin import CTRData, build_amazon_hin
from graph_rec.ctr.sampler import NeighbourSampler
from graph_rec.ctr.synthetic import make_synthetic
from graph_rec.ctr.train import CTRFitConfig, FMLearner, GMTLearner, ctr_metrics, fit_ctr, predict_all
from graph_rec.experiment import ModelSpec, RunContext, SeedOutcome
from graph_rec.recsys.cross_runners import pair_folders
from graph_rec.registry import register_model


@dataclass
class CTRConfig:
    epochs: int = 5
    steps: int = 0  # > 0: exactly this many optimiser steps per seed instead of epochs (equal budgets)
    lr: float = 1e-3
    batch_size: int = 1024  # clicks per optimiser step
    dim: int = 32
    weight_decay: float = 0.0
    test_negs: int = 4  # non-clicks per held-out click (amazon_cdr)


@dataclass
class GMTConfig(CTRConfig):
    layers: int = 2
    heads_per_mask: int = 1
    masks: str = "induced,cross,knn,complete"  # comma list of attention masks, one head group each
    knn: int = 4  # neighbours of the kNN-similarity mask
    n1: int = 6  # one-hop neighbours per side
    n2: int = 6  # two-hop neighbours per side
    samples: int = 2  # neighbourhood samples S for the consistency term
    lam: float = 0.1  # consistency weight
    dropout: float = 0.0


@dataclass
class FMConfig(CTRConfig):
    pass


LearnerBuilder = Callable[[Any, CTRData], torch.nn.Module]


def prepare(cfg: CTRConfig, _: None, ctx: RunContext) -> CTRData:
    if isinstance(cfg, GMTConfig):
        unknown = set(cfg.masks.split(",")) - set(MASKS)
        if unknown:
            raise ValueError(f"masks={cfg.masks!r}: unknown {sorted(unknown)}; choose from {sorted(MASKS)}")
    if ctx.dataset == "synthetic":
        return make_synthetic(seed=ctx.split_seed)
    return build_amazon_hin(ctx.dataset, ctx.data_root, seed=ctx.split_seed, test_negs=cfg.test_negs)


def folders(ctx: RunContext) -> list[Path]:
    return [] if ctx.dataset == "synthetic" else pair_folders(ctx)


def describe(data: CTRData) -> dict[str, Any]:
    return {"name": data.name, "train_clicks": len(data.train.labels), "test_clicks": len(data.test.labels),
            "nodes": data.hin.n_nodes}  # fmt: skip


def run_seed_with(build: LearnerBuilder) -> Callable[[Any, CTRData, int, RunContext], SeedOutcome]:
    def run_seed(cfg: CTRConfig, data: CTRData, seed: int, ctx: RunContext) -> SeedOutcome:
        learner = build(cfg, data).to(ctx.device)
        fit_cfg = CTRFitConfig(
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            max_steps=cfg.steps,
        )
        res = fit_ctr(learner, data.train, fit_cfg, seed)
        metrics = {
            f"test/{k}": v for k, v in ctr_metrics(data.test.labels, predict_all(learner, data.test)).items()
        }
        if data.test.truth is not None:
            metrics.update(
                {f"oracle/{k}": v for k, v in ctr_metrics(data.test.labels, data.test.truth).items()}
            )
        return SeedOutcome(metrics, res.steps, res.history, res.train_seconds)

    return run_seed


def mask_variant(cfg: GMTConfig) -> str:
    """``all_masks`` for the default four heads' masks, else the chosen ones joined by ``+``."""
    return "all_masks" if cfg.masks == GMTConfig.masks else cfg.masks.replace(",", "+")


def _gmt(c: GMTConfig, data: CTRData) -> torch.nn.Module:
    hin = data.hin
    model = GMT(
        hin.n_nodes, len(hin.type_names), torch.from_numpy(hin.node_type), dim=c.dim, layers=c.layers,
        heads_per_mask=c.heads_per_mask, masks=tuple(c.masks.split(",")), knn=c.knn, dropout=c.dropout,
    )  # fmt: skip
    return GMTLearner(model, NeighbourSampler(hin, c.n1, c.n2), n_samples=c.samples, lam=c.lam)


def _fm(c: FMConfig, data: CTRData) -> torch.nn.Module:
    hin = data.hin
    return FMLearner(FM(hin.n_nodes, torch.from_numpy(hin.item_attrs), hin.item_offset, dim=c.dim))


def _spec(
    name: str, help: str, config: type, build: LearnerBuilder, variant: Callable[[Any], str]
) -> ModelSpec:
    return ModelSpec(
        name=name,
        help=help,
        config=config,
        load=lambda ctx: None,
        prepare=prepare,
        run_seed=run_seed_with(build),
        headline=lambda cfg: ("test/auc", "test/logloss"),
        variant=variant,
        describe=describe,
        data_folders=folders,
    )


GMT_SPEC = register_model(
    _spec("gmt", "GMT: graph-masked transformer for CTR (AUC, LogLoss)", GMTConfig, _gmt, mask_variant)
)
FM_SPEC = register_model(
    _spec("fm", "Factorisation machine: no-graph CTR baseline", FMConfig, _fm, lambda cfg: "default")
)
