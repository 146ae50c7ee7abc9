"""Shared training loop for the single-domain recommenders (LightGCN, Hgformer).

A model implements :class:`Recommender`: ``propagate()`` runs the graph encoder once over the whole graph
and returns its representations, ``loss`` and ``score`` read them. One optimiser step = one propagation and
one mini-batch of (user, positive, uniform negative) triples; an epoch covers every training interaction once.
Model selection: the state with the best validation metric is restored before testing (when a validation
callback is given); otherwise the last state is used.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
import torch

from graph_rec.recsys.metrics import ScoreFn


class Recommender(Protocol):
    def propagate(self) -> Any: ...

    def loss(self, reps: Any, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor: ...

    def score(self, reps: Any, users: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor: ...


@dataclass
class FitConfig:
    epochs: int = 50
    batch_size: int = 4096
    lr: float = 1e-3
    weight_decay: float = 0.0  # optimiser weight decay (LightGCN's L2 is inside its loss instead)
    eval_every: int = 5  # epochs between validation runs
    max_steps: int = 0  # > 0: stop after exactly this many optimiser steps (an equal budget across models)
    select_metric: str = "recall@20"
    log: Callable[[str], None] = print


@dataclass
class FitResult:
    best_epoch: int
    best_valid: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    steps: int = 0  # optimiser steps taken


class NegativeSampler:
    """Uniform negatives that avoid the user's training items (rejection, vectorised)."""

    def __init__(self, train: sp.csr_matrix, rng: np.random.Generator) -> None:
        self.n_items = train.shape[1]
        coo = train.tocoo()
        self.users = coo.row.astype(np.int64)
        self.items = coo.col.astype(np.int64)
        self.keys = np.sort(self.users * self.n_items + self.items)
        self.rng = rng

    def negatives(self, users: np.ndarray, n: int = 1) -> np.ndarray:
        neg = self.rng.integers(0, self.n_items, size=(len(users), n))
        for _ in range(100):  # at real densities (<1%) one redraw almost always suffices
            key = users[:, None] * self.n_items + neg
            pos = np.searchsorted(self.keys, key).clip(max=len(self.keys) - 1)
            bad = self.keys[pos] == key
            if not bad.any():
                break
            neg[bad] = self.rng.integers(0, self.n_items, size=int(bad.sum()))
        return neg

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """n training interactions drawn with replacement, each with one negative."""
        idx = self.rng.integers(0, len(self.users), size=n)
        u, p = self.users[idx], self.items[idx]
        return torch.from_numpy(u), torch.from_numpy(p), torch.from_numpy(self.negatives(u)[:, 0])

    def epoch(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        order = self.rng.permutation(len(self.users))
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            u, p = self.users[idx], self.items[idx]
            n = self.negatives(u)[:, 0]
            yield torch.from_numpy(u), torch.from_numpy(p), torch.from_numpy(n)


def model_device(model: object) -> torch.device:
    """The device of a module's parameters (CPU for a parameter-free or non-module model)."""
    if isinstance(model, torch.nn.Module):
        p = next(model.parameters(), None)
        if p is not None:
            return p.device
    return torch.device("cpu")


def score_fn(model: Recommender) -> ScoreFn:
    """Propagate once in eval mode and return a scorer over the frozen representations.

    The scorer takes CPU index tensors and returns CPU scores whatever the model's device (the metrics run on
    the host with numpy)."""
    if isinstance(model, torch.nn.Module):
        model.eval()
    dev = model_device(model)
    with torch.no_grad():
        reps = model.propagate()

    def score(users: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        return model.score(reps, users.to(dev), None if items is None else items.to(dev)).cpu()

    return score


def planned_epochs(epochs: int, max_steps: int, steps_per_epoch: int) -> int:
    """Epochs to run: ``epochs``, or with a step budget as many as ``max_steps`` needs (the last one cut)."""
    if max_steps < 0:
        raise ValueError(f"steps {max_steps}: must be >= 0 (0 = epochs x steps per epoch)")
    return epochs if max_steps == 0 else math.ceil(max_steps / max(steps_per_epoch, 1))


def fit(
    model: torch.nn.Module,
    train: sp.csr_matrix,
    cfg: FitConfig,
    seed: int,
    validate: Callable[[ScoreFn], dict[str, float]] | None = None,
) -> FitResult:
    rng = np.random.default_rng(seed)
    sampler = NegativeSampler(train, rng)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    epochs = planned_epochs(cfg.epochs, cfg.max_steps, math.ceil(train.nnz / cfg.batch_size))
    result = FitResult(best_epoch=epochs, best_valid={})
    best_state, best_val = None, -np.inf
    dev = model_device(model)
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        total, steps = 0.0, 0
        for users, pos, neg in sampler.epoch(cfg.batch_size):
            if cfg.max_steps and result.steps + steps >= cfg.max_steps:
                break
            users, pos, neg = users.to(dev), pos.to(dev), neg.to(dev)
            reps = model.propagate()
            loss = model.loss(reps, users, pos, neg)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        result.steps += steps
        row: dict[str, float] = {"epoch": epoch, "loss": total / max(steps, 1)}
        if validate is not None and (epoch % cfg.eval_every == 0 or epoch == epochs):
            metrics = validate(score_fn(model))
            row.update({f"valid_{k}": v for k, v in metrics.items()})
            if metrics[cfg.select_metric] > best_val:
                best_val, result.best_epoch, result.best_valid = metrics[cfg.select_metric], epoch, metrics
                best_state = copy.deepcopy(model.state_dict())
        result.history.append(row)
        cfg.log(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    result.train_seconds = time.perf_counter() - t0
    if best_state is not None:
        model.load_state_dict(best_state)
    return result
