"""Online preference optimisation on the normal loop: sample k responses per prompt with the current policy,
score them with the reward plugins, and train a preference loss on pairs or lists built from the scores.

``options.pairs``:
- ``best_worst`` (online DPO as in TRL's OnlineDPO with a reward function, and Iterative/RSO-style setups):
  one pair per prompt, the highest- against the lowest-scored sample;
- ``list``: every scored sample of the prompt, ranked by reward (for ``plackett_luce`` and ``lipo``).
Prompts whose samples all score the same carry no preference and are dropped (counted in
``pref/uniform_dropped``); samples without a reward (a plugin failed) are left out.
Departure from TRL's OnlineDPO: TRL samples exactly 2 completions and asks a judge/reward model which is
better; here k samples and the recipe's reward plugins rank them, so a verifiable reward works directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rollout.strategies.base import Generator, Scorer, StrategyContext, register_strategy
from rollout.strategies.common import preference_train_batch, single_round
from rollout.types import PromptRequest, RolloutBatch, Sample
from trainer.batch import TrainBatch
from trainer.losses import LOSSES


@dataclass
class OnlinePreferenceOptions:
    loss: str = "dpo"  # dpo | simpo | plackett_luce | lipo
    loss_options: dict[str, Any] = field(default_factory=dict)
    pairs: str = "best_worst"  # best_worst (one pair per prompt) | list (all samples, ranked by reward)
    nll_coef: float = 0.0  # weight of NLL on each prompt's best sample

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(
                f"strategy.options.loss: unknown loss {self.loss!r}; registered: {sorted(LOSSES)}"
            )
        if self.pairs not in ("best_worst", "list"):
            raise ValueError(f"strategy.options.pairs: {self.pairs!r} is not best_worst or list")


class OnlinePreferenceStrategy:
    def __init__(self, ctx: StrategyContext, options: OnlinePreferenceOptions) -> None:
        self.ctx = ctx
        self.options = options

    def rollout(self, requests: list[PromptRequest], generator: Generator, scorer: Scorer) -> RolloutBatch:
        return single_round(self.ctx, requests, generator, scorer)

    def select(self, batch: RolloutBatch) -> tuple[list[Sample], int]:
        """The ranked samples that form pairs/lists (``meta["rank"]`` set), and how many prompts had none."""
        out: list[Sample] = []
        dropped = 0
        for ss in batch.groups().values():
            scored = sorted((s for s in ss if s.reward is not None), key=lambda s: -float(s.reward))
            if len(scored) < 2 or scored[0].reward == scored[-1].reward:
                dropped += 1
                continue
            chosen = [scored[0], scored[-1]] if self.options.pairs == "best_worst" else scored
            for rank, s in enumerate(chosen):
                s.meta["rank"] = rank
            out += chosen
        return out, dropped

    def make_train_batch(self, batch: RolloutBatch) -> TrainBatch:
        o = self.options
        samples, dropped = self.select(batch)
        if not samples:  # nothing to prefer this step: an all-masked batch keeps the loop uniform
            samples = [batch.samples[0], batch.samples[-1]]
            for rank, s in enumerate(samples):
                s.meta["rank"] = rank
            tb = preference_train_batch(samples, o.loss, o.loss_options, self.ctx.pad_id, o.nll_coef)
            for t in tb.terms:
                t.mask.zero_()
            tb.metrics["pref/lists"] = 0.0
        else:
            tb = preference_train_batch(samples, o.loss, o.loss_options, self.ctx.pad_id, o.nll_coef)
        tb.metrics["pref/uniform_dropped"] = float(dropped)
        return tb

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def _losses(options: OnlinePreferenceOptions, algorithm: Any) -> list[str]:
    return [options.loss] + (["nll"] if options.nll_coef > 0 else [])


@register_strategy("online_preference", OnlinePreferenceOptions, losses=_losses)
def make_online_preference(
    ctx: StrategyContext, options: OnlinePreferenceOptions
) -> OnlinePreferenceStrategy:
    return OnlinePreferenceStrategy(ctx, options)
