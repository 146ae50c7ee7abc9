"""Stage-2 refinement of the learned structure (GraphLearner §"two-stage training").

Every ``refine_every`` epochs after ``refine_start``: cluster (F1+F2)/2, take the nodes whose soft
assignment confidence is above the τ-quantile, and build a per-edge multiplier
  M_ij = P_ij · C_ij,  P_ij = [ŷ_i = ŷ_j] if i and j are both high-confidence else 1,
                       C = min-max-normalised F1 F2ᵀ (cross-view similarity).
The refined filter used for the augmented view is row-normalise(S ⊙ M).

Departures from the released code, which computes the refined matrix but then propagates with the
*unrefined* ``H`` and only uses the result for evaluation: here M is kept and applied to the learned
S in every following epoch until the next refinement, so the refinement actually feeds training.
Confidence is max_k softmax(−‖z − μ_k‖²) (the code's min_k softmax(+‖z − μ_k‖²) ranks nodes
similarly but is not a probability of the chosen cluster). The min-max normalisation is the plain
(x − min)/(max − min); the released ``normalize`` shifts negative data without updating the max.
Rows are re-normalised so the filter stays a random-walk operator after masking.
"""

from __future__ import annotations

import torch


def confidence(z: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """[n] probability of each node's nearest cluster under softmax(−squared distance)."""
    d2 = torch.cdist(z, centers).pow(2)
    return torch.softmax(-d2, dim=1).max(dim=1).values


def high_confidence_mask(conf: torch.Tensor, tau: float) -> torch.Tensor:
    """Nodes at or above the τ-quantile of confidence (τ = 0.95 keeps the top 5 %)."""
    return conf >= torch.quantile(conf, tau)


def refinement_multiplier(
    edge_index: torch.Tensor,
    pred: torch.Tensor,
    high_conf: torch.Tensor,
    f1: torch.Tensor,
    f2: torch.Tensor,
) -> torch.Tensor:
    """Per-edge M = P ⊙ C (see module docstring); edges follow ``edge_index``."""
    row, col = edge_index
    both = high_conf[row] & high_conf[col]
    pseudo = torch.where(both & (pred[row] != pred[col]), 0.0, 1.0)
    sim = f1 @ f2.T  # global min and max of the full matrix define the normalisation
    lo, hi = sim.min(), sim.max()
    cross = ((f1[row] * f2[col]).sum(1) - lo) / (hi - lo).clamp_min(1e-12)
    return pseudo * cross
