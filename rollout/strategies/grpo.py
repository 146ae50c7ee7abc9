"""Plain GRPO: one generation round, group = all samples of one prompt request.

The common variants are algorithm options, not strategies: group-normalised (GRPO) or mean-only
(Dr.GRPO) advantages by ``algorithm.advantage``; DAPO = ``clip_eps_high`` > ``clip_eps_low``, token-level
``loss_norm``, ``dynamic_sampling`` (rollout/dynamic.py), ``overlong_filter`` and the ``overlong`` reward
(recipes/dapo_tiny_cpu.yaml).
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
    pass


class GRPOStrategy:
    def __init__(self, ctx: StrategyContext, options: GRPOOptions) -> None:
        self.ctx = ctx
        self.options = options

    def rollout(self, requests: list[PromptRequest], generator: Generator, scorer: Scorer) -> RolloutBatch:
        return single_round(self.ctx, requests, generator, scorer)

    def make_train_batch(self, batch: RolloutBatch) -> TrainBatch:
        return pg_train_batch(batch.samples, self.ctx.algorithm, self.ctx.pad_id)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@register_strategy("grpo", GRPOOptions)
def make_grpo(ctx: StrategyContext, options: GRPOOptions) -> GRPOStrategy:
    return GRPOStrategy(ctx, options)
