"""CTR training and evaluation: a learner protocol, the GMT and FM learners, one loop, AUC and LogLoss.

A :class:`CTRLearner` turns (users, items, labels) into a loss and (users, items) into click probabilities.
``GMTLearner`` draws S neighbourhood samples per example (S = 2 by default) for the BCE + consistency loss and
averages the S predicted probabilities at test time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import log_loss, roc_auc_score
from torch import nn

from graph_rec.ctr.fm import FM
from graph_rec.ctr.gmt import GMT, consistency
from graph_rec.ctr.hin import Clicks
from graph_rec.ctr.sampler import NeighbourSampler
from graph_rec.recsys.train import model_device, planned_epochs


class CTRLearner(Protocol):
    def loss(self, users: torch.Tensor, items: torch.Tensor, labels: torch.Tensor) -> torch.Tensor: ...

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor: ...


class GMTLearner(nn.Module):
    def __init__(self, model: GMT, sampler: NeighbourSampler, n_samples: int = 2, lam: float = 0.1) -> None:
        super().__init__()
        self.model, self.sampler, self.n_samples, self.lam = model, sampler, n_samples, lam

    def _runs(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The sampler's CSR lives on the CPU; each sampled neighbourhood moves to the model's device.
        dev, u, i = users.device, users.cpu(), items.cpu()
        outs = [self.model(self.sampler.sample(u, i).to(dev)) for _ in range(self.n_samples)]
        return torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])  # (S, B), (S, B, D)

    def loss(self, users: torch.Tensor, items: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits, hs = self._runs(users, items)
        bce = F.binary_cross_entropy_with_logits(logits, labels.expand_as(logits))
        return bce + self.lam * consistency(hs) if self.n_samples > 1 else bce

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self._runs(users, items)[0]).mean(0)


class FMLearner(nn.Module):
    def __init__(self, model: FM) -> None:
        super().__init__()
        self.model = model

    def loss(self, users: torch.Tensor, items: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self.model(users, items), labels)

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(users, items))


@dataclass
class CTRFitConfig:
    epochs: int = 5
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.0
    max_steps: int = 0  # > 0: stop after exactly this many optimiser steps (an equal budget across models)
    log: Callable[[str], None] = print


def ctr_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    probs = np.clip(probs, 1e-7, 1 - 1e-7)
    return {
        "auc": float(roc_auc_score(labels, probs)),
        "logloss": float(log_loss(labels, probs, labels=[0, 1])),
    }


@dataclass
class CTRFitResult:
    history: list[dict[str, float]]  # one row per epoch: epoch, mean training loss
    steps: int  # optimiser steps taken
    train_seconds: float


@torch.no_grad()
def predict_all(learner: nn.Module, clicks: Clicks, batch_size: int = 4096) -> np.ndarray:
    learner.eval()
    dev = model_device(learner)
    out = []
    for s in range(0, len(clicks.labels), batch_size):
        u = torch.from_numpy(clicks.users[s : s + batch_size]).to(dev)
        i = torch.from_numpy(clicks.items[s : s + batch_size]).to(dev)
        out.append(learner.predict(u, i).cpu())
    return torch.cat(out).numpy()


def fit_ctr(learner: nn.Module, train: Clicks, cfg: CTRFitConfig, seed: int) -> CTRFitResult:
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(learner.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    dev = model_device(learner)
    result = CTRFitResult([], 0, 0.0)
    t0 = time.perf_counter()
    epochs = planned_epochs(cfg.epochs, cfg.max_steps, -(-len(train.labels) // cfg.batch_size))
    for epoch in range(1, epochs + 1):
        learner.train()
        order = rng.permutation(len(train.labels))
        total, steps = 0.0, 0
        for s in range(0, len(order), cfg.batch_size):
            if cfg.max_steps and result.steps + steps >= cfg.max_steps:
                break
            idx = order[s : s + cfg.batch_size]
            loss = learner.loss(
                torch.from_numpy(train.users[idx]).to(dev),
                torch.from_numpy(train.items[idx]).to(dev),
                torch.from_numpy(train.labels[idx]).to(dev),
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        result.steps += steps
        result.history.append({"epoch": epoch, "loss": total / max(steps, 1)})
        cfg.log(f"epoch={epoch} loss={total / max(steps, 1):.4f}")
    result.train_seconds = time.perf_counter() - t0
    return result
