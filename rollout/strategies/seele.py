"""SEELE: capability-adaptive hints. Each problem gets a prefix of its reference solution whose length
keeps the rollout accuracy near a target a* (0.5, where the descent bound a(1−a) peaks).

Per step and problem (METHODS.md §1): ``rounds`` generation rounds; round 1 uses the problem's stored hint
rate (the first time a problem is seen: (|y|−1)/|y|, the cold start); every later round fits the 3PL curve
(rollout/strategies/irt.py) to this step's (hint rate, accuracy) memory plus the anchors (0,0), (1,1), and
inverts it at a*. The prompt is ``render(x) ⊕ y[:l]`` — the hint continues the assistant turn. All m·n
responses of a problem form one advantage group (Dr.GRPO, A = r − mean r, by default). The train batch is
clipped PG on generated tokens, ``nll_coef`` · NLL of the hint tokens (they sit at the end of
``Sample.prompt_ids``; ``Sample.meta["hint_len"]``), and ``algorithm.kl_coef`` · KL on generated tokens.

Departures from the paper:
- The memory records the *realised* hint rate l/|y| (after rounding to whole tokens or lines), not the
  requested p_i, so the fit sees what the model was shown (differs only for short solutions).
- If the fit fails (scipy raises), the round reuses the previous round's rate.
- ``cold_start: false`` starts new problems from the anchors-only fit instead (p ≈ 0.5).
- ``hint_unit: steps`` cuts hints at line boundaries of the solution ([guess] alternative; tokens is the paper).
- ``advantage`` may name any registered estimator (null: ``algorithm.advantage``); the paper is dr_grpo.
- The rate stored for the next visit is the fit to all m rounds of the step (one more inversion after
  the last round), so the last round's accuracy is not wasted.
- Rewards read hint ⊕ response by default (``score_with_hint``), since the response continues the hint and
  the final answer may straddle the cut; ``Sample.response_text`` keeps the generated text only. When the hint
  holds the answer this scores the hint, not the model (bench/RESULTS_seele_cures.md measures it);
  ``score_with_hint: false`` is the paper's verifier on the response alone.
- ``fixed_hint_rate`` (an ablation, not the method) replaces the controller with one constant rate.
- The NLL term is normalised like the PG term (``algorithm.loss_norm``) over the hint tokens of all rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rollout.strategies.base import Generator, Scorer, StrategyContext, pg_losses, register_strategy
from rollout.strategies.common import generate_round, merge_scores, pg_train_batch, rollout_metrics
from rollout.strategies.irt import fit_3pl, invert_3pl, with_anchors
from rollout.types import Prompt, PromptRequest, RolloutBatch, Sample
from trainer.advantages import get_advantage
from trainer.batch import LossTerm, TrainBatch


@dataclass
class SeeleOptions:
    rounds: int = 4  # m: generation rounds per step (each draws the request's n_samples responses)
    target_accuracy: float = 0.5  # a*: the accuracy each problem's hint rate aims at
    nll_coef: float = 0.001  # γ: weight of the NLL of the hint tokens (the KL weight is algorithm.kl_coef)
    hint_unit: str = "tokens"  # tokens (paper: l = round(p·|y|) tokens) | steps (whole lines of the solution)
    cold_start: bool = (
        True  # first sight of a problem: round 1 uses p = (|y|−1)/|y| (else the anchors-only fit)
    )
    advantage: str | None = "dr_grpo"  # estimator over all rounds of a problem; null: algorithm.advantage
    max_hint_rate: float = 1.0  # cap on p (1.0 = paper; lower it to keep the answer itself out of hints)
    score_with_hint: bool = (
        True  # rewards read hint ⊕ response; false: the response only (the paper's verifier)
    )
    fixed_hint_rate: float | None = None  # ablation: every round of every problem at this rate, no IRT fit

    def __post_init__(self) -> None:  # runs when the recipe loads, before any actor starts
        if self.rounds < 1:
            raise ValueError("strategy.options.rounds must be >= 1")
        if not 0.0 < self.target_accuracy < 1.0:
            raise ValueError("strategy.options.target_accuracy must be in (0, 1)")
        if self.hint_unit not in ("tokens", "steps"):
            raise ValueError(f"strategy.options.hint_unit: {self.hint_unit!r} is not tokens or steps")
        if not 0.0 <= self.max_hint_rate <= 1.0:
            raise ValueError("strategy.options.max_hint_rate must be in [0, 1]")
        if self.fixed_hint_rate is not None and not 0.0 <= self.fixed_hint_rate <= 1.0:
            raise ValueError(
                "strategy.options.fixed_hint_rate must be in [0, 1] (or null: the IRT controller)"
            )


@dataclass
class _Hint:
    """The tokenised reference solution of one problem and where hints may be cut."""

    ids: list[int]  # the solution, tokenised once
    cuts: list[int]  # allowed hint lengths in tokens, increasing, from 0 to len(ids)

    def cut(self, p: float) -> tuple[int, float]:
        """(hint length in tokens, realised rate) for the requested rate ``p``."""
        units = len(self.cuts) - 1
        j = min(max(round(p * units), 0), units)
        return self.cuts[j], j / units if units else 0.0


class SeeleStrategy:
    def __init__(self, ctx: StrategyContext, options: SeeleOptions) -> None:
        self.ctx = ctx
        self.options = options
        self.hint_rate: dict[str, float] = {}  # Prompt.uid -> final hint rate of its last step (checkpointed)
        self._hints: dict[str, _Hint] = {}  # tokenised solutions (a cache, rebuilt after a resume)

    # ------------------------------------------------------------------ hints
    def _hint(self, prompt: Prompt) -> _Hint:
        h = self._hints.get(prompt.uid)
        if h is None:
            if not prompt.solution:
                raise ValueError(
                    f"SEELE needs a reference solution for prompt {prompt.uid!r}: set data.solution_field"
                )
            if self.options.hint_unit == "tokens":
                ids = self.ctx.renderer.encode(prompt.solution)
                cuts = list(range(len(ids) + 1))
            else:
                # Tokenise line by line so that every step boundary is a token boundary.
                ids, cuts = [], [0]
                for line in prompt.solution.splitlines(keepends=True):
                    ids += self.ctx.renderer.encode(line)
                    cuts.append(len(ids))
            h = self._hints[prompt.uid] = _Hint(ids, cuts)
        return h

    def _first_rate(self, prompt: Prompt, hint: _Hint) -> float:
        if self.options.fixed_hint_rate is not None:
            return self.options.fixed_hint_rate
        if prompt.uid in self.hint_rate:
            return self.hint_rate[prompt.uid]
        units = len(hint.cuts) - 1
        if self.options.cold_start and units > 0:
            return (units - 1) / units
        return self._fit_rate([], 0.5)

    def _fit_rate(self, memory: list[tuple[float, float]], fallback: float) -> float:
        if self.options.fixed_hint_rate is not None:
            return min(self.options.fixed_hint_rate, self.options.max_hint_rate)
        try:
            p = invert_3pl(fit_3pl(with_anchors(memory)), self.options.target_accuracy)
        except (ValueError, RuntimeError, FloatingPointError):
            p = fallback
        return min(p, self.options.max_hint_rate)

    # ------------------------------------------------------------------ rollout
    def rollout(self, requests: list[PromptRequest], generator: Generator, scorer: Scorer) -> RolloutBatch:
        prompts = [r.prompt for r in requests]
        hints = [self._hint(p) for p in prompts]
        base = [self.ctx.renderer.render(p) for p in prompts]
        groups = [f"{i}:{p.uid}" for i, p in enumerate(prompts)]  # one group per problem, across rounds
        memory: list[list[tuple[float, float]]] = [[] for _ in prompts]
        rates = [min(self._first_rate(p, h), self.options.max_hint_rate) for p, h in zip(prompts, hints)]
        samples: list[Sample] = []
        score_parts: list[tuple[dict[str, float], int]] = []
        metrics: dict[str, float] = {}
        gaps: list[float] = []
        for rnd in range(self.options.rounds):
            if rnd > 0:
                rates = [self._fit_rate(memory[i], rates[i]) for i in range(len(prompts))]
            cuts = [h.cut(p) for h, p in zip(hints, rates)]
            ids = [b + h.ids[:n] for b, h, (n, _) in zip(base, hints, cuts)]
            meta = [{"hint_len": n, "hint_rate": q, "problem": i} for i, (n, q) in enumerate(cuts)]
            new = generate_round(
                generator,
                prompts,
                ids,
                [r.n_samples for r in requests],
                groups,
                round_idx=rnd,
                params=self.ctx.sampling,
                meta=meta,
            )
            score_parts.append((self._score(new, scorer, hints), len(new)))
            accs = self._round_accuracy(new, len(prompts))
            for i, a in enumerate(accs):
                if a is not None:
                    memory[i].append((cuts[i][1], a))
            seen = [a for a in accs if a is not None]
            metrics[f"seele/acc_round_{rnd + 1}"] = sum(seen) / len(seen) if seen else float("nan")
            metrics[f"seele/hint_rate_round_{rnd + 1}"] = sum(q for _, q in cuts) / len(cuts)
            round_gaps = [abs(a - self.options.target_accuracy) for a in seen]
            gaps += round_gaps
            if rnd == self.options.rounds - 1:
                metrics["seele/target_gap_last"] = (
                    sum(round_gaps) / len(round_gaps) if round_gaps else float("nan")
                )
                metrics["seele/hint_rate_last"] = metrics[f"seele/hint_rate_round_{rnd + 1}"]
            samples += new
            rates = [q for _, q in cuts]
        # The next visit starts from the fit to all of this step's rounds (the last round's result included).
        for i, p in enumerate(prompts):
            self.hint_rate[p.uid] = self._fit_rate(memory[i], rates[i]) if memory[i] else rates[i]
        metrics["seele/hint_rate_mean"] = sum(s.meta["hint_rate"] for s in samples) / max(len(samples), 1)
        metrics["seele/target_gap"] = sum(gaps) / len(gaps) if gaps else float("nan")
        metrics["seele/hint_tokens_mean"] = sum(s.meta["hint_len"] for s in samples) / max(len(samples), 1)
        metrics.update(merge_scores(score_parts, samples))
        metrics.update(rollout_metrics(samples))
        return RolloutBatch(samples, metrics)

    def _score(self, samples: list[Sample], scorer: Scorer, hints: list[_Hint]) -> dict[str, float]:
        """Score with the hint text in front of each response, then restore ``response_text``.

        The response continues the reference solution, so a final answer may be split across hint and
        response ("... The answer is 6" + "8"): the verifier must read both."""
        if not self.options.score_with_hint:
            return scorer.score(samples)
        texts = [s.response_text for s in samples]
        for s in samples:
            n = s.meta["hint_len"]
            hint = hints[s.meta["problem"]].ids[:n]
            s.response_text = (self.ctx.tokenizer.decode(hint) if n else "") + s.response_text
        try:
            return scorer.score(samples)
        finally:
            for s, t in zip(samples, texts):
                s.response_text = t

    @staticmethod
    def _round_accuracy(samples: list[Sample], n_prompts: int) -> list[float | None]:
        """Per request index: fraction correct among samples with a verdict (None: no verdict at all)."""
        by: dict[int, list[bool]] = {}
        for s in samples:
            if s.correct is not None:
                by.setdefault(int(s.meta["problem"]), []).append(s.correct)
        return [sum(by[i]) / len(by[i]) if i in by else None for i in range(n_prompts)]

    # ------------------------------------------------------------------ train batch
    def make_train_batch(self, batch: RolloutBatch) -> TrainBatch:
        samples = batch.samples
        name = self.options.advantage or self.ctx.algorithm.advantage
        adv = get_advantage(name)([s.reward for s in samples], [s.group_id for s in samples])
        extra = []
        if self.options.nll_coef > 0:
            extra.append(
                LossTerm(
                    "nll",
                    self.options.nll_coef,
                    hint_mask(samples),
                    {},
                    {"norm": self.ctx.algorithm.loss_norm},
                )
            )
        tb = pg_train_batch(samples, self.ctx.algorithm, self.ctx.pad_id, adv, extra_terms=extra)
        tb.metrics["seele/hint_tokens_frac"] = (
            float(extra[0].mask.sum() / tb.attention_mask.sum()) if extra else 0.0
        )
        return tb

    def state_dict(self) -> dict[str, Any]:
        return {"hint_rate": dict(self.hint_rate)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.hint_rate = {str(k): float(v) for k, v in state.get("hint_rate", {}).items()}


def hint_mask(samples: list[Sample]) -> torch.Tensor:
    """[B, T] mask over the hint tokens (the last ``meta["hint_len"]`` prompt tokens) in collate's layout."""
    T = max((len(s.prompt_ids) + len(s.response_ids) for s in samples), default=1)
    mask = torch.zeros((len(samples), T), dtype=torch.float32)
    for b, s in enumerate(samples):
        n, P = int(s.meta.get("hint_len", 0)), len(s.prompt_ids)
        if n > 0:
            mask[b, max(P - n, 1) : P] = 1.0  # position 0 has no predecessor: never a target
    return mask


def _seele_losses(options: SeeleOptions, algorithm: Any) -> list[str]:
    return pg_losses(options, algorithm) + (["nll"] if options.nll_coef > 0 else [])


@register_strategy("seele", SeeleOptions, losses=_seele_losses)
def make_seele(ctx: StrategyContext, options: SeeleOptions) -> SeeleStrategy:
    return SeeleStrategy(ctx, options)
