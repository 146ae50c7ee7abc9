"""How the encoder and the augmentors are updated from L_c (InfoNCE) and L_a (augmentation loss).

L_a = −MSE(X', X) − MSE(Ã, A) rewards augmented views that differ from the original graph.

* ``adversarial`` (paper, default): a min-max game solved by simultaneous gradient descent-ascent.
  The encoder minimises L_c (cross-view consistency); the augmentors maximise L_c − α·L_a, i.e. they
  look for views that are hard for the encoder *and* far from the input (diversity).
* ``joint`` (released code): every module descends on L_c + α·L_a with one backward pass.

Departure from the released code: it never calls ``zero_grad``, so gradients accumulate over all
epochs; both objectives here clear them every step (the intended Adam update).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Objective = Callable[["Losses", list[torch.nn.Parameter], list[torch.nn.Parameter]], None]
OBJECTIVES: dict[str, Objective] = {}


@dataclass
class Losses:
    contrastive: torch.Tensor  # L_c, scalar
    augmentation: torch.Tensor  # L_a, scalar (depends on augmentor parameters only)
    alpha: float


def register_objective(name: str) -> Callable[[Objective], Objective]:
    def deco(fn: Objective) -> Objective:
        OBJECTIVES[name] = fn
        return fn

    return deco


@register_objective("joint")
def joint(losses: Losses, encoder_params: list, augmentor_params: list) -> None:
    (losses.contrastive + losses.alpha * losses.augmentation).backward()


@register_objective("adversarial")
def adversarial(losses: Losses, encoder_params: list, augmentor_params: list) -> None:
    losses.contrastive.backward(retain_graph=True)
    for p in augmentor_params:  # ascend on L_c: flip the augmentors' share of the gradient
        if p.grad is not None:
            p.grad.neg_()
    (losses.alpha * losses.augmentation).backward()  # ... and descend on α·L_a


def backward(name: str, losses: Losses, encoder_params: list, augmentor_params: list) -> None:
    if name not in OBJECTIVES:
        raise KeyError(f"unknown GraphLearner objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    OBJECTIVES[name](losses, encoder_params, augmentor_params)
