"""How the encoder and the augmentors are updated from L_c (InfoNCE) and L_a (augmentation loss).

L_a = −MSE(X', X) − MSE(Ã, A) rewards augmented views that differ from the original graph.

* ``joint`` (released code, default): every module descends on L_c + α·L_a with one backward pass: the
  augmentors make views the encoder can match (consistency) while moving them away from the input (diversity).
* ``adversarial`` (our reading of the paper's min-max): simultaneous gradient descent-ascent. The encoder
  minimises L_c; the augmentors maximise L_c − α·L_a, i.e. they look for views that are hard for the encoder
  *and* far from the input.

Why ``adversarial`` is not the default (issue 18; Cora, seed 0, fp32, bench/graph_rec_objective_probe.py): the
augmentors win the game. Nothing bounds them — ascending L_c rewards views the encoder cannot match, and L_a
rewards moving away from the input — so InfoNCE never drops below its chance value log(n − 1) = 7.90 (it
rises to 8.0), the encoder chases a moving target and its embedding of the *original* input loses the cluster
structure: k-means ACC of F1 alone 60.8 after one step → 39.9 at epoch 135, of (F1 + F2)/2 68.8 → 55.1,
silhouette 0.10 → 0.01-0.05. With ``joint`` the same run lowers InfoNCE to 7.07 and F1's ACC rises to 72.0.
(The structure augmentor is not the cause: at lr 1e-5 the same-class share of its attention stays 0.825 under
both objectives.) This is an ill-posed game, not a sign error — the gradient signs above are tested — and the
released code, whose numbers the paper reports, trains the joint loss, in which the "adversarial" part is the
−MSE term pushing views away from the input. Kept as an option.

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
