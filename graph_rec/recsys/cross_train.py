"""Training loop for cross-domain recommenders (HCTS, BiTGCF): both domains are trained jointly.

A model implements :class:`CrossRecommender`. Each step draws one batch of (user, positive, negative) triples
per domain (with replacement); an epoch is as many steps as the larger domain needs to cover its interactions
once (``FitConfig.max_steps`` > 0 instead stops after exactly that many steps, each one batch per domain, so a
single-domain model given the same ``steps`` sees as many batches of its domain). There is no validation split in the leave-one-out data, so the last state is evaluated.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from graph_rec.recsys.data import CrossDomainPair
from graph_rec.recsys.metrics import ScoreFn, sampled_ranking
from graph_rec.recsys.train import FitConfig, FitResult, NegativeSampler, model_device, planned_epochs

DOMAINS = ("a", "b")


@dataclass
class Triples:
    users: torch.Tensor  # (B,)
    pos: torch.Tensor  # (B,)
    neg: torch.Tensor  # (B,)


class CrossRecommender(Protocol):
    def propagate(self) -> Any: ...

    def loss(self, reps: Any, batch: dict[str, Triples]) -> torch.Tensor: ...

    def score(
        self, reps: Any, domain: str, users: torch.Tensor, items: torch.Tensor | None
    ) -> torch.Tensor: ...


def fit_cross(model: torch.nn.Module, pair: CrossDomainPair, cfg: FitConfig, seed: int) -> FitResult:
    rng = np.random.default_rng(seed)
    samplers = {"a": NegativeSampler(pair.a.train, rng), "b": NegativeSampler(pair.b.train, rng)}
    steps = math.ceil(max(pair.a.train.nnz, pair.b.train.nnz) / cfg.batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    epochs = planned_epochs(cfg.epochs, cfg.max_steps, steps)
    result = FitResult(best_epoch=epochs, best_valid={})
    dev = model_device(model)
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        total = 0.0
        if cfg.max_steps:
            steps = min(steps, cfg.max_steps - result.steps)
        for _ in range(steps):
            batch = {d: Triples(*(t.to(dev) for t in samplers[d].sample(cfg.batch_size))) for d in DOMAINS}
            loss = model.loss(model.propagate(), batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        result.steps += steps
        row = {"epoch": epoch, "loss": total / steps}
        result.history.append(row)
        cfg.log(f"epoch={epoch} loss={row['loss']:.4f}")
    result.train_seconds = time.perf_counter() - t0
    return result


def evaluate_cross(model: torch.nn.Module, pair: CrossDomainPair) -> dict[str, dict[str, float]]:
    """Sampled-negative HR/NDCG@K/MRR per domain: ``{"a": {...}, "b": {...}}``."""
    model.eval()
    dev = model_device(model)
    with torch.no_grad():
        reps = model.propagate()
    out: dict[str, dict[str, float]] = {}
    for d, dom in (("a", pair.a), ("b", pair.b)):

        def score(users: torch.Tensor, items: torch.Tensor | None, d: str = d) -> torch.Tensor:
            return model.score(reps, d, users.to(dev), None if items is None else items.to(dev)).cpu()

        fn: ScoreFn = score
        out[d] = sampled_ranking(fn, dom.test)
    return out
