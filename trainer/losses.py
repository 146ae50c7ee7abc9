"""Loss terms, registered by name. A :class:`~trainer.batch.LossTerm` names one of these.

A loss receives the current policy's per-token log-probs (with grad), the behaviour and reference
log-probs, and a :class:`Reducer` that knows the mini-batch totals (so that gradient accumulation
over micro-batches gives exactly the full-batch gradient). It returns a scalar for this micro-batch
and metrics. Pure torch: no DeepSpeed, Ray or vLLM here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from trainer.batch import LossTerm


@dataclass
class Reducer:
    """Reduces a per-token loss ``[B, T]`` under a mask with mini-batch-wide normalisation.

    ``mode``:
      - ``token``:    Σ L·m / Σ_minibatch m              (DAPO / token-level; the default)
      - ``sequence``: mean over rows of (Σ_t L·m / Σ_t m) (original GRPO)
      - ``constant``: Σ L·m / (rows_minibatch · const)    (Dr.GRPO: a constant, length-unbiased)
    """

    mode: str
    minibatch_tokens: float  # Σ mask over the whole mini-batch on this rank
    minibatch_rows: float  # rows of the mini-batch with any masked token
    constant: float = 1.0
    minibatch_groups: float = 0.0  # pairs/lists of the term in the mini-batch on this rank (preference terms)

    def __call__(self, per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.mode == "token":
            return (per_token * mask).sum() / max(self.minibatch_tokens, 1.0)
        if self.mode == "sequence":
            row = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
            return row.sum() / max(self.minibatch_rows, 1.0)
        if self.mode == "constant":
            return (per_token * mask).sum() / (max(self.minibatch_rows, 1.0) * self.constant)
        raise ValueError(f"unknown loss normalisation {self.mode!r}: use token, sequence or constant")

    def rows(self, per_row: torch.Tensor, row_mask: torch.Tensor) -> torch.Tensor:
        """Mean of a per-row loss ``[B]`` over the mini-batch's active rows (pairwise/DPO-style terms)."""
        return (per_row * row_mask).sum() / max(self.minibatch_rows, 1.0)

    def groups(self, per_group: torch.Tensor) -> torch.Tensor:
        """Mean of a per-pair/per-list loss ``[G]`` (this micro-batch's groups) over the mini-batch's groups."""
        return per_group.sum() / max(self.minibatch_groups, 1.0)


@dataclass
class LossInputs:
    logprobs: torch.Tensor  # [B, T] current policy, with grad; column 0 is 0
    old_logprobs: torch.Tensor  # [B, T] behaviour policy (detached)
    ref_logprobs: torch.Tensor | None  # [B, T] frozen reference, when any term needs it
    # [B, T] the rollout engine's log-probs of the sampled tokens, when the behaviour log-probs above are the
    # learner's own (recompute): the rollout/training mismatch correction reads them. None otherwise.
    engine_logprobs: torch.Tensor | None = None


LossFn = Callable[[LossInputs, LossTerm, Reducer], tuple[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass(frozen=True)
class LossSpec:
    fn: LossFn
    roles: tuple[str, ...] = ()  # frozen models the loss reads ("reference": LossInputs.ref_logprobs)

    @property
    def needs_ref(self) -> bool:
        return "reference" in self.roles


LOSSES: dict[str, LossSpec] = {}


def register_loss(
    name: str, needs_ref: bool = False, roles: tuple[str, ...] = ()
) -> Callable[[LossFn], LossFn]:
    """Register ``fn`` as loss ``name``; ``needs_ref`` is shorthand for ``roles=("reference",)``."""

    def deco(fn: LossFn) -> LossFn:
        LOSSES[name] = LossSpec(fn, tuple(dict.fromkeys((*roles, *(["reference"] if needs_ref else [])))))
        return fn

    return deco


def required_roles(losses: list[str]) -> dict[str, str]:
    """Frozen-model role -> the first loss that needs it."""
    out: dict[str, str] = {}
    for name in losses:
        for role in get_loss(name).roles:
            out.setdefault(role, name)
    return out


def get_loss(name: str) -> LossSpec:
    if name not in LOSSES:
        raise KeyError(f"unknown loss {name!r}; registered: {sorted(LOSSES)}")
    return LOSSES[name]


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def mismatch_stats(
    learner_lp: torch.Tensor, engine_lp: torch.Tensor, mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """How far the engine's sampling distribution is from the learner's on the sampled tokens (detached):
    mean |Δ log p|, KL(π_engine ‖ π_learner) by the k3 estimator on engine samples (r − 1 − log r with
    r = π_learner/π_engine, ≥ 0), and the largest per-token ratio r."""
    with torch.no_grad():
        d = (learner_lp - engine_lp).clamp(-20.0, 20.0)
        r = torch.exp(d)
        has = mask > 0
        return {
            "mismatch/abs_logprob_diff": _masked_mean(d.abs(), mask),
            "mismatch/kl_k3": _masked_mean(r - 1.0 - d, mask),
            "mismatch/ratio_max": r[has].max() if has.any() else r.new_tensor(1.0),
        }


def _mismatch_correction(
    inp: LossInputs, term: LossTerm, mask: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor, dict[str, torch.Tensor]]:
    """(per-token weight or None, mask after sequence masking, metrics) of the rollout/training correction.

    Weight: min(π_old/π_engine, tis_cap), detached (truncated IS; Yao et al. 2025, verl's TIS). Sequence mask:
    rows whose geometric-mean ratio exp(mean_t log π_old/π_engine) lies outside [1/τ, τ] get no loss; they
    still count in the reducer's normaliser (their tokens add zero), so masking never rescales the others."""
    if inp.engine_logprobs is None:
        return None, mask, {}
    cap, tau = term.options.get("tis_cap"), term.options.get("mismatch_seq_threshold")
    out = mismatch_stats(inp.old_logprobs, inp.engine_logprobs, mask)
    d = (inp.old_logprobs - inp.engine_logprobs).detach().clamp(-20.0, 20.0)
    weight = None
    if cap is not None:
        r = torch.exp(d)
        weight = r.clamp(max=float(cap))
        out["mismatch/tis_capped_frac"] = _masked_mean((r > float(cap)).float(), mask)
    if tau is not None:
        rows = mask.sum(-1) > 0
        geo = torch.exp((d * mask).sum(-1) / mask.sum(-1).clamp(min=1.0))
        keep = (geo <= float(tau)) & (geo >= 1.0 / float(tau))
        out["mismatch/seq_masked_frac"] = (rows & ~keep).float().sum() / rows.float().sum().clamp(min=1.0)
        mask = mask * keep.float()[:, None]
    return weight, mask, out


@register_loss("policy_gradient")
def policy_gradient_loss(
    inp: LossInputs, term: LossTerm, reduce: Reducer
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO-style clipped surrogate with asymmetric clip range (DAPO's clip-higher when eps_high > eps_low).

    tensors: ``advantages`` [B] or [B, T]. options: ``clip_eps_low`` (0.2), ``clip_eps_high`` (0.2),
    ``dual_clip`` (None; e.g. 3.0 bounds the loss of negative-advantage tokens with huge ratios),
    ``tis_cap`` / ``mismatch_seq_threshold`` (the rollout/training correction, when ``inp.engine_logprobs``
    is given; see :func:`_mismatch_correction`).
    """
    adv = term.tensors["advantages"]
    if adv.dim() == 1:
        adv = adv[:, None]
    tis_weight, mask, mismatch = _mismatch_correction(inp, term, term.mask)
    eps_low = float(term.options.get("clip_eps_low", 0.2))
    eps_high = float(term.options.get("clip_eps_high", 0.2))
    log_ratio = (inp.logprobs - inp.old_logprobs).clamp(-20.0, 20.0)
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    per_token = torch.maximum(unclipped, clipped)
    dual = term.options.get("dual_clip")
    if dual is not None:
        per_token = torch.where(adv < 0, torch.minimum(per_token, -adv * float(dual)), per_token)
    if tis_weight is not None:
        per_token = per_token * tis_weight
    with torch.no_grad():
        clip_frac = _masked_mean((clipped > unclipped).float(), mask)
        approx_kl = _masked_mean(0.5 * log_ratio.pow(2), mask)
    return reduce(per_token, mask), {"clip_frac": clip_frac, "approx_kl_old": approx_kl, **mismatch}


@register_loss("kl", needs_ref=True)
def kl_loss(inp: LossInputs, term: LossTerm, reduce: Reducer) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """KL(π‖π_ref) with the k3 estimator ``exp(ref - logp) - (ref - logp) - 1`` (unbiased, ≥ 0).

    options: ``estimator`` in {k1, k2, k3} (k3 default, as in GRPO).
    """
    assert inp.ref_logprobs is not None, "kl term needs reference log-probs"
    d = (inp.ref_logprobs - inp.logprobs).clamp(-20.0, 20.0)
    est = term.options.get("estimator", "k3")
    if est == "k3":
        per_token = torch.exp(d) - d - 1.0
    elif est == "k1":
        per_token = -d
    elif est == "k2":
        per_token = 0.5 * d.pow(2)
    else:
        raise ValueError(f"unknown KL estimator {est!r}: use k1, k2 or k3")
    with torch.no_grad():
        kl = _masked_mean(per_token, term.mask)
    return reduce(per_token, term.mask), {"kl": kl}


@register_loss("nll")
def nll_loss(
    inp: LossInputs, term: LossTerm, reduce: Reducer
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Negative log-likelihood of the masked tokens (SFT span, SEELE hint tokens, BC)."""
    per_token = -inp.logprobs
    with torch.no_grad():
        nll = _masked_mean(per_token, term.mask)
    return reduce(per_token, term.mask), {"nll": nll}


# Preference losses (dpo, simpo, plackett_luce, lipo) register themselves on import. Imported last:
# they import register_loss, LossInputs and Reducer from this module.
from trainer import preference_losses as _preference_losses  # noqa: E402, F401
