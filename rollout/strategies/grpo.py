"""Plain GRPO: one generation round, group = all samples of one prompt request.

Options cover the common variants: group-normalised (GRPO) or mean-only (Dr.GRPO) advantages are
chosen by ``algorithm.advantage``; ``filter_uniform_groups`` drops groups whose rewards are all equal
(DAPO's dynamic sampling without the resampling loop: they carry zero advantage anyway, dropping
them only saves learner compute).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rollout.strategies.base import Generator, Scorer, StrategyContext, register_strategy
from rollout.strategies.common import pg_train_batch, single_round
from rollout.types import PromptRequest, RolloutBatch
from trainer.batch import TrainBatch


@dataclass
class GRPOOptions:
    filter_uniform_groups: bool = False  # drop zero-variance groups before the learner


class GRPOStrategy:
    def __init__(self, ctx: StrategyContext, options: GRPOOptions) -> None:
        self.ctx = ctx
        self.options = options

    def rollout(self, requests: list[PromptRequest], generator: Generator, scorer: Scorer) -> RolloutBatch:
        return single_round(self.ctx, requests, generator, scorer)

    def make_train_batch(self, batch: RolloutBatch) -> TrainBatch:
        samples = batch.samples
        if self.options.filter_uniform_groups:
            keep = {
                g
                for g, ss in batch.groups().items()
                if len({s.reward for s in ss if s.reward is not None}) > 1
            }
            samples = [s for s in samples if s.group_id in keep] or samples[:1]
        return pg_train_batch(samples, self.ctx.algorithm, self.ctx.pad_id)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@register_strategy("grpo", GRPOOptions)
def make_grpo(ctx: StrategyContext, options: GRPOOptions) -> GRPOStrategy:
    return GRPOStrategy(ctx, options)
