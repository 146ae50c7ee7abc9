"""CurES: sample prompts where the gradient signal is largest, and give each a rollout quota by its variance.

Per prompt a Beta(α, β) posterior of its success rate, p̂ = α / (α + β). The data is split into T subsets;
each subset starts with a cold start (``cold_start_samples`` rollouts per prompt through the run's
generator and scorer, plus per-sample gradient norms from the learners) and then runs M steps. Each step
samples m = prompts_per_step prompts without replacement from

    ρ*(x) ∝ exp( √(p̂(1−p̂)) / τ )

and gives prompt i the quota n_i = N · σ_i / Σ_j σ_j (N = prompts_per_step × n_samples unless ``budget``),
clamped to [n_min, n_max] and rounded so the total stays N (largest remainders); ``allocation: uniform``
gives every chosen prompt N/m instead (an ablation). σ_i (``sigma_estimator``):

- ``gradient`` (paper): σ² = p(1−p)²·E₁‖g‖² + p²(1−p)·E₀‖g‖² − p²(1−p)²·‖E₁g − E₀g‖², with g the per-sample
  gradient of log π(response) w.r.t. the parameters chosen by ``grad_params`` (trainer/grad_stats.py:
  ``last_block`` by default, ``all`` for the full model, or name globs), E₁/E₀ over correct/wrong samples. Costs
  one single-row forward and one (partial) backward per sample at each estimate; ``cures/grad_stats_s``
  logs the time. ZeRO ≤ 2 only;
- ``embedding_norm`` (the released code's cheap proxy): the same formula from per-sample norms of the
  gradient w.r.t. the token embeddings (trainer/grad_norms.py), with the cross term approximated by
  (E₁‖g‖ − E₀‖g‖)². Because E‖g‖ ≥ ‖Eg‖ this is *not* a bound in either direction: for correct samples
  g = ±v and a wrong one g = 0 the true cross term is 0 but the proxy subtracts p²(1−p)²‖v‖², so σ is
  under-estimated (down to the clamp at 0); with parallel mean gradients it is exact. Works under ZeRO-3;
- ``bernoulli``: σ = √(p̂(1−p̂)) (no learner calls).

``observe`` adds every verdict to the Beta counts (``Sample.correct``; None is ignored). Estimates reset at
the next subset. After T subsets the data is reshuffled and split again (a new epoch).

Departures from the paper:
- ``gradient`` uses a parameter subset by default (the paper's gradient is over all parameters: ``all``). The
  cross term is the plug-in ‖mean₁g − mean₀g‖² of the latest estimate that saw both classes of a prompt
  (the cold start, or a step with ``grad_norms_in_steps``); without one it is 0, which can only over-estimate
  σ. A class without samples borrows the prompt's pooled E‖g‖² (prompts never rolled out borrow the subset's).
- ``cold_start_prompts`` may cold-start only a random part of a subset (the rest keep the prior) and
  ``grad_norms_in_steps`` refreshes the norm statistics from each step's samples too (one extra backward).
- T is lowered when the data has fewer than T · prompts_per_step prompts (a subset must fill one step).
- τ is a recipe value (paper: τ = α/√(2δ), no released default; 0.1 here [guess]).

Released-code behaviours, as named options (paper defaults first):
- ``temperature_mode: code``: per-prompt τ_i = 100 · (correct_i + 1), which makes sampling almost uniform;
- ``drop_uniform_prompts: true``: prompts whose observed rollouts were all right or all wrong get σ = 0
  and are not sampled (while enough others remain);
- ``beta_updates: cold_start_only``: the counts stay at their cold-start values during the M steps (the
  released code updates them only when group filtering is on).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curricula.base import CurriculumContext, register_curriculum
from rollout.types import Prompt, PromptRequest, RolloutBatch, Sample

log = logging.getLogger(__name__)

GRAD_NORMS_FN = "trainer.grad_norms:sample_grad_norms"
GRAD_MOMENTS_FN = "trainer.grad_stats:prompt_grad_moments"


@dataclass
class CuresOptions:
    num_subsets: int = 15  # T: the data is split into T subsets, each with its own cold start
    steps_per_subset: int = 10  # M: training steps per subset
    tau: float = 0.1  # τ in ρ*(x) ∝ exp(√(p̂(1−p̂))/τ); smaller = greedier towards p̂ ≈ 0.5
    temperature_mode: str = "global"  # global (paper: τ) | code (released code: τ_i = 100·(correct_i+1))
    prior_alpha: float = 1.0  # Beta prior pseudo-counts of successes
    prior_beta: float = 1.0  # ... and of failures
    budget: int | None = None  # N rollouts per step (null: prompts_per_step × n_samples)
    n_min: int = 4  # quota clamp (released code: 4..8); ≥ 2 so every group has a baseline
    n_max: int = 8
    sigma_estimator: str = "gradient"  # gradient (paper) | embedding_norm (released-code proxy) | bernoulli
    grad_params: list[str] = field(
        default_factory=lambda: ["last_block"]
    )  # gradient: last_block | all | globs
    allocation: str = "sigma"  # sigma (paper: n_i ∝ σ_i) | uniform (every chosen prompt N/m: an ablation)
    cold_start_samples: int = 4  # N': rollouts per prompt in a subset's cold start (0: no cold start)
    cold_start_prompts: int | None = None  # cold-start only this many random prompts of a subset (null: all)
    grad_norms_in_steps: bool = False  # also update gradient statistics from each step's samples
    drop_uniform_prompts: bool = False  # released code: all-right/all-wrong prompts get σ=0, not sampled
    beta_updates: str = "always"  # always (paper) | cold_start_only (released code without group filtering)

    def __post_init__(self) -> None:  # runs when the recipe loads, before any actor starts
        _validate(self)


# ---------------------------------------------------------------- the math (pure numpy, unit-tested)


def sampling_probs(p_hat: np.ndarray, tau: float | np.ndarray) -> np.ndarray:
    """ρ*(x) ∝ exp(√(p̂(1−p̂)) / τ), normalised (τ may be per prompt)."""
    score = np.sqrt(np.clip(p_hat * (1.0 - p_hat), 0.0, None)) / np.asarray(tau, dtype=np.float64)
    w = np.exp(score - score.max())
    return w / w.sum()


def allocate_rollouts(sigma: np.ndarray | list[float], total: int, n_min: int, n_max: int) -> list[int]:
    """Integer quotas n_i ∝ σ_i, each clamped to [n_min, n_max], summing to ``total`` (itself clamped to
    [m·n_min, m·n_max]). Finds the scale λ with Σ clip(λσ_i) = total, then rounds by largest remainders."""
    s = np.clip(np.asarray(sigma, dtype=np.float64), 0.0, None)
    m = len(s)
    if m == 0:
        return []
    total = int(min(max(total, m * n_min), m * n_max))
    if s.sum() <= 0:
        s = np.ones(m)  # no information: an even split
    lo, hi = 0.0, total / s[s > 0].min() + 1.0
    for _ in range(200):  # Σ clip(λσ) is monotone in λ: bisection
        lam = 0.5 * (lo + hi)
        if np.clip(lam * s, n_min, n_max).sum() < total:
            lo = lam
        else:
            hi = lam
    x = np.clip(hi * s, n_min, n_max)
    n = np.floor(x + 1e-9).astype(int)
    left = total - int(n.sum())
    for i in np.argsort(-(x - n), kind="stable"):
        if left <= 0:
            break
        if n[i] < n_max:
            n[i] += 1
            left -= 1
    return n.tolist()


def gradient_sigma(p: float, sq1: float, sq0: float, d2: float) -> float:
    """σ from the paper's variance formula: sq = E‖g‖² over correct (1) / wrong (0) samples, d2 = ‖E₁g − E₀g‖²."""
    q = 1.0 - p
    var = p * q * q * sq1 + p * p * q * sq0 - (p * q) ** 2 * d2
    return math.sqrt(max(var, 0.0))


def norm_proxy_sigma(p: float, sq1: float, mean1: float, sq0: float, mean0: float) -> float:
    """The released code's proxy: ``gradient_sigma`` with d2 ≈ (E₁‖g‖ − E₀‖g‖)² (mean = E‖g‖). Exact only when
    the two mean gradients are parallel; otherwise it can under- or over-estimate σ (module docstring)."""
    return gradient_sigma(p, sq1, sq0, (mean1 - mean0) ** 2)


# ---------------------------------------------------------------- per-subset estimates


class _Estimates:
    """Beta counts, observed verdicts and gradient-norm sums of the current subset's prompts."""

    FIELDS = ("alpha", "beta", "right", "wrong", "n1", "s1", "q1", "n0", "s0", "q0", "d2")

    def __init__(self, size: int, prior_alpha: float, prior_beta: float) -> None:
        self.alpha = np.full(size, prior_alpha)
        self.beta = np.full(size, prior_beta)
        self.right = np.zeros(size)  # verdict counts since the subset started (cold start included)
        self.wrong = np.zeros(size)
        # per class c ∈ {1: correct, 0: wrong}: sample count, Σ‖g‖, Σ‖g‖²
        self.n1, self.s1, self.q1 = np.zeros(size), np.zeros(size), np.zeros(size)
        self.n0, self.s0, self.q0 = np.zeros(size), np.zeros(size), np.zeros(size)
        self.d2 = np.full(size, np.nan)  # ‖mean₁g − mean₀g‖² of the latest estimate with both classes

    def p_hat(self) -> np.ndarray:
        return self.alpha / (self.alpha + self.beta)

    def add_norm(self, i: int, correct: bool, g: float) -> None:
        if correct:
            self.n1[i] += 1
            self.s1[i] += g
            self.q1[i] += g * g
        else:
            self.n0[i] += 1
            self.s0[i] += g
            self.q0[i] += g * g

    def add_moments(self, i: int, m: dict[str, float]) -> None:
        """Fold one prompt's gradient moments (trainer/grad_stats.py:group_moments) into its sums."""
        for k in ("n1", "s1", "q1", "n0", "s0", "q0"):
            getattr(self, k)[i] += m[k]
        if not math.isnan(m["d2"]):
            self.d2[i] = m["d2"]

    def sigma_gradient(self, vectors: bool) -> np.ndarray:
        """σ per prompt; ``vectors``: the cross term from ``d2`` (paper), else from the norm means (proxy)."""
        p = self.p_hat()
        n_all = self.n1 + self.n0
        tot = float(n_all.sum())
        # Fallbacks: a prompt's pooled stats for a missing class; the subset's pooled stats for a prompt
        # without any norms.
        g_mean = float((self.s1 + self.s0).sum() / tot) if tot else 1.0
        g_sq = float((self.q1 + self.q0).sum() / tot) if tot else 1.0
        out = np.zeros(len(p))
        for i in range(len(p)):
            if n_all[i]:
                pm, pq = (self.s1[i] + self.s0[i]) / n_all[i], (self.q1[i] + self.q0[i]) / n_all[i]
            else:
                pm, pq = g_mean, g_sq
            m1, q1 = (self.s1[i] / self.n1[i], self.q1[i] / self.n1[i]) if self.n1[i] else (pm, pq)
            m0, q0 = (self.s0[i] / self.n0[i], self.q0[i] / self.n0[i]) if self.n0[i] else (pm, pq)
            if vectors:
                d2 = 0.0 if math.isnan(self.d2[i]) else float(self.d2[i])
                out[i] = gradient_sigma(float(p[i]), q1, q0, d2)
            else:
                out[i] = norm_proxy_sigma(float(p[i]), q1, m1, q0, m0)
        return out

    def state(self) -> dict[str, list[float]]:
        return {f: getattr(self, f).tolist() for f in self.FIELDS}

    def load(self, state: dict[str, list[float]]) -> None:
        for f in self.FIELDS:
            if f in state:  # checkpoints from before the d2 field keep its NaN default
                setattr(self, f, np.asarray(state[f], dtype=np.float64))


# ---------------------------------------------------------------- the curriculum


class CuresCurriculum:
    def __init__(self, ctx: CurriculumContext, options: CuresOptions) -> None:
        self.ctx = ctx
        self.options = options
        self.dataset = ctx.dataset
        self.m = ctx.prompts_per_step
        self.budget = options.budget or ctx.prompts_per_step * ctx.n_samples
        if len(self.dataset) < self.m:
            raise ValueError(f"CurES: {len(self.dataset)} prompts cannot fill prompts_per_step={self.m}")
        self.num_subsets = max(1, min(options.num_subsets, len(self.dataset) // self.m))
        if self.num_subsets < options.num_subsets:
            log.warning(
                "CurES: %d prompts allow only %d subsets of >= %d",
                len(self.dataset),
                self.num_subsets,
                self.m,
            )
        self.rng = np.random.default_rng(ctx.seed)
        self.epoch = 0
        self.subset_idx = 0
        self.step_in_subset = 0
        self.cold_started = False
        self.samples_total = 0  # rollouts spent: cold starts + training steps
        self.cold_start_total = 0
        self.subsets = self._split()
        self.est = _Estimates(len(self.subsets[0]), options.prior_alpha, options.prior_beta)
        self._pending: dict[str, float] = {}  # metrics of next_batch, reported by observe

    # ------------------------------------------------------------------ schedule
    def _split(self) -> list[list[int]]:
        order = self.rng.permutation(len(self.dataset))
        return [part.tolist() for part in np.array_split(order, self.num_subsets)]

    @property
    def subset(self) -> list[int]:
        return self.subsets[self.subset_idx]

    def _advance(self) -> None:
        self.step_in_subset = 0
        self.cold_started = False
        self.subset_idx += 1
        if self.subset_idx >= self.num_subsets:
            self.epoch += 1
            self.subset_idx = 0
            self.subsets = self._split()
        self.est = _Estimates(len(self.subset), self.options.prior_alpha, self.options.prior_beta)

    def _pos(self) -> dict[str, int]:
        return {self.dataset[j].uid: i for i, j in enumerate(self.subset)}

    # ------------------------------------------------------------------ estimates
    def _sigma(self) -> np.ndarray:
        if self.options.sigma_estimator == "bernoulli":
            p = self.est.p_hat()
            sig = np.sqrt(p * (1.0 - p))
        else:
            sig = self.est.sigma_gradient(vectors=self.options.sigma_estimator == "gradient")
        if self.options.drop_uniform_prompts:
            seen = (self.est.right + self.est.wrong) > 0
            sig = np.where(seen & ((self.est.right == 0) | (self.est.wrong == 0)), 0.0, sig)
        return sig

    def _probs(self, sigma: np.ndarray) -> np.ndarray:
        if self.options.temperature_mode == "code":
            tau: float | np.ndarray = 100.0 * (self.est.right + 1.0)
        else:
            tau = self.options.tau
        probs = sampling_probs(self.est.p_hat(), tau)
        if self.options.drop_uniform_prompts:
            probs = np.where(sigma > 0, probs, 0.0)
        return probs

    def _record(self, samples: list[Sample], pos: dict[str, int], counts: bool, norms: bool) -> None:
        judged = [s for s in samples if s.correct is not None and s.prompt.uid in pos]
        if counts:
            for s in judged:
                i = pos[s.prompt.uid]
                if s.correct:
                    self.est.alpha[i] += 1
                    self.est.right[i] += 1
                else:
                    self.est.beta[i] += 1
                    self.est.wrong[i] += 1
        if not (norms and judged):
            return
        t0 = time.perf_counter()
        if self.options.sigma_estimator == "gradient":
            for uid, m in self._grad_moments(judged):
                self.est.add_moments(pos[uid], m)
        else:
            for s, g in zip(judged, self._grad_norms(judged)):
                self.est.add_norm(pos[s.prompt.uid], bool(s.correct), g)
        key = "cures/grad_stats_s"
        self._pending[key] = self._pending.get(key, 0.0) + time.perf_counter() - t0

    def _nll_batch(self, samples: list[Sample]) -> Any:
        from trainer.batch import LossTerm, TrainBatch, collate

        tok = self.ctx.renderer.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        col = collate([s.prompt_ids for s in samples], [s.response_ids for s in samples], pad)
        return TrainBatch(col.input_ids, col.attention_mask, [LossTerm("nll", 1.0, col.response_mask)]), pad

    def _grad_moments(self, samples: list[Sample]) -> list[tuple[str, dict[str, float]]]:
        """Per-prompt gradient moments from the learners (whole prompts per rank, trainer/grad_stats.py)."""
        batch, _ = self._nll_batch(samples)
        uids = sorted({s.prompt.uid for s in samples})
        gid = {u: i for i, u in enumerate(uids)}
        groups = [gid[s.prompt.uid] for s in samples]
        correct = [bool(s.correct) for s in samples]
        parts = self.ctx.learners.call(
            "run", GRAD_MOMENTS_FN, batch, groups, correct, list(self.options.grad_params)
        )
        return [(uids[g], m) for part in parts for g, m in part]

    def _grad_norms(self, samples: list[Sample]) -> list[float]:
        """Per-sample ‖∇_emb −log π(response)‖ from the learners (rows split across ranks)."""
        batch, pad = self._nll_batch(samples)
        batch = batch.pad_rows(self.ctx.learners.world, pad)  # equal forwards per rank (ZeRO-3)
        norms = [0.0] * len(samples)
        for part in self.ctx.learners.call("run", GRAD_NORMS_FN, batch):
            for row, g in part:
                if row < len(samples):
                    norms[row] = float(g)
        return norms

    def _cold_start(self) -> None:
        """N' rollouts for (part of) the subset: initial Beta counts and gradient-norm statistics."""
        self.cold_started = True
        k, n = len(self.subset), self.options.cold_start_samples
        if n <= 0 or self.ctx.generator is None or self.ctx.scorer is None:
            return
        from rollout.strategies.common import generate_round

        picks = list(range(k))
        if self.options.cold_start_prompts is not None and self.options.cold_start_prompts < k:
            picks = sorted(self.rng.choice(k, self.options.cold_start_prompts, replace=False).tolist())
        prompts: list[Prompt] = [self.dataset[self.subset[i]] for i in picks]
        ids = [self.ctx.renderer.render(p) for p in prompts]
        samples = generate_round(
            self.ctx.generator, prompts, ids, [n] * len(prompts), [f"cold:{p.uid}" for p in prompts]
        )
        self.ctx.scorer.score(samples)
        use_grads = self.options.sigma_estimator != "bernoulli" and self.ctx.learners is not None
        self._record(samples, self._pos(), counts=True, norms=use_grads)
        self.cold_start_total += len(samples)
        self.samples_total += len(samples)
        self._pending["cures/cold_start_samples"] = float(len(samples))

    # ------------------------------------------------------------------ the Curriculum interface
    def next_batch(self, step: int) -> list[PromptRequest]:
        if self.step_in_subset >= self.options.steps_per_subset:
            self._advance()
        if not self.cold_started:
            self._cold_start()
        sigma = self._sigma()
        probs = self._probs(sigma)
        chosen = _sample_without_replacement(self.rng, probs, min(self.m, len(self.subset)))
        weights = sigma[chosen] if self.options.allocation == "sigma" else np.ones(len(chosen))
        quotas = allocate_rollouts(weights, self.budget, self.options.n_min, self.options.n_max)
        self.step_in_subset += 1
        p = self.est.p_hat()[chosen]
        self._pending |= {
            "cures/p_hat_mean": float(p.mean()),
            "cures/sigma_mean": float(sigma[chosen].mean()),
            "cures/quota_min": float(min(quotas)),
            "cures/quota_max": float(max(quotas)),
            "cures/rho_max": float(probs.max()),
        }
        return [PromptRequest(self.dataset[self.subset[i]], int(q)) for i, q in zip(chosen, quotas)]

    def observe(self, batch: RolloutBatch) -> dict[str, float]:
        self.samples_total += len(batch.samples)
        pos = self._pos()
        use_grads = (
            self.options.sigma_estimator != "bernoulli"
            and self.options.grad_norms_in_steps
            and self.ctx.learners is not None
        )
        self._record(batch.samples, pos, counts=self.options.beta_updates == "always", norms=use_grads)
        out = {
            **self._pending,
            "cures/subset": float(self.subset_idx),
            "cures/epoch": float(self.epoch),
            "cures/samples_total": float(self.samples_total),
            "cures/cold_start_samples_total": float(self.cold_start_total),
        }
        self._pending = {}
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "epoch": self.epoch,
            "subset_idx": self.subset_idx,
            "step_in_subset": self.step_in_subset,
            "cold_started": self.cold_started,
            "subsets": [list(s) for s in self.subsets],
            "samples_total": self.samples_total,
            "cold_start_total": self.cold_start_total,
            "estimates": self.est.state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.epoch = int(state["epoch"])
        self.subset_idx = int(state["subset_idx"])
        self.step_in_subset = int(state["step_in_subset"])
        self.cold_started = bool(state["cold_started"])
        self.subsets = [[int(i) for i in s] for s in state["subsets"]]
        self.num_subsets = len(self.subsets)
        self.samples_total = int(state["samples_total"])
        self.cold_start_total = int(state["cold_start_total"])
        self.est = _Estimates(len(self.subset), self.options.prior_alpha, self.options.prior_beta)
        self.est.load(state["estimates"])


def _sample_without_replacement(rng: np.random.Generator, probs: np.ndarray, k: int) -> list[int]:
    """k distinct indices drawn by ``probs``; when fewer than k have mass, the rest uniformly from the others."""
    nz = np.flatnonzero(probs > 0)
    if len(nz) >= k:
        return rng.choice(len(probs), size=k, replace=False, p=probs / probs.sum()).tolist()
    rest = np.setdiff1d(np.arange(len(probs)), nz)
    return nz.tolist() + rng.choice(rest, size=k - len(nz), replace=False).tolist()


def _validate(o: CuresOptions) -> None:
    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ValueError(f"curriculum.options.{msg}")

    need(o.num_subsets >= 1, "num_subsets must be >= 1")
    need(o.steps_per_subset >= 1, "steps_per_subset must be >= 1")
    need(o.tau > 0, "tau must be > 0")
    need(o.prior_alpha > 0 and o.prior_beta > 0, "prior_alpha and prior_beta must be > 0")
    need(1 <= o.n_min <= o.n_max, "n_min/n_max: need 1 <= n_min <= n_max")
    need(
        o.sigma_estimator in ("gradient", "embedding_norm", "bernoulli"),
        f"sigma_estimator: {o.sigma_estimator!r} is not gradient, embedding_norm or bernoulli",
    )
    need(o.allocation in ("sigma", "uniform"), f"allocation: {o.allocation!r} is not sigma or uniform")
    need(len(o.grad_params) >= 1, "grad_params: name last_block, all, or parameter-name globs")
    need(o.temperature_mode in ("global", "code"), "temperature_mode: use global or code")
    need(o.beta_updates in ("always", "cold_start_only"), "beta_updates: use always or cold_start_only")
    need(o.cold_start_samples >= 0, "cold_start_samples must be >= 0")


@register_curriculum("cures", CuresOptions)
def make_cures(ctx: CurriculumContext, options: CuresOptions) -> CuresCurriculum:
    return CuresCurriculum(ctx, options)
