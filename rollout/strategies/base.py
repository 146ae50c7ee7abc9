"""The RolloutStrategy interface: how one training step turns prompt requests into a train batch.

A strategy may run several generation rounds inside a step (SEELE's hint rounds, Cog-Rethinker's
follow-ups), so it receives the generator *and* the reward scorer and returns a scored
:class:`RolloutBatch`. It then defines the advantage groups and loss terms in ``make_train_batch``.
Strategies register with :func:`register_strategy` together with a dataclass of their options.

Optional hook: ``keeps_group(samples, metric) -> bool`` decides which advantage groups DAPO's dynamic sampling
keeps (rollout/dynamic.py; default: the metric varies inside the group).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from rollout.types import Completion, GenerationRequest, PromptRequest, RolloutBatch, Sample
from trainer.batch import TrainBatch


class Generator(Protocol):
    """What strategies need from the rollout side (rollout.generator.Generator implements it)."""

    def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]: ...


class Scorer(Protocol):
    """What strategies need from rewards (rewards.scorer.RewardScorer implements it)."""

    def score(self, samples: list[Sample]) -> dict[str, float]: ...


class RolloutStrategy(Protocol):
    def rollout(
        self, requests: list[PromptRequest], generator: Generator, scorer: Scorer
    ) -> RolloutBatch: ...

    def make_train_batch(self, batch: RolloutBatch) -> TrainBatch: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class StrategyContext:
    renderer: Any  # rollout.templates.PromptRenderer: Prompt -> token ids
    tokenizer: Any
    algorithm: Any  # launch.config.AlgorithmConfig (advantage, clip, kl, normalisation)
    sampling: Any  # rollout.types.SamplingParams defaults
    seed: int
    pad_id: int
    max_model_len: int = 1024  # prompt + response tokens (offline rows are checked/truncated against it)
    learners: Any = None  # trainer.group.LearnerGroup (offline reference caches); None in pure-logic tests
    skip_invalid: bool = (
        False  # data.skip_invalid: skip and count rows that cannot be used, instead of failing
    )
    # Per-row side-module inputs (trainer/side_modules.py): samples -> TrainBatch.features; None: no side module
    features: Callable[[list[Sample]], dict[str, Any]] | None = None
    output_dir: str | None = (
        None  # the run's output root: strategies that keep records (episodes) write there
    )


StrategyFactory = Callable[[StrategyContext, Any], RolloutStrategy]
LossesFn = Callable[[Any, Any], list[str]]  # (strategy options, algorithm config) -> loss names it emits


def pg_losses(options: Any, algorithm: Any) -> list[str]:
    """Losses of a policy-gradient strategy: clipped PG, plus KL when ``algorithm.kl_coef > 0``."""
    return ["policy_gradient"] + (["kl"] if algorithm.kl_coef > 0 else [])


@dataclass(frozen=True)
class StrategyEntry:
    factory: StrategyFactory
    options: type
    # The loss terms the strategy will emit, known before any actor starts: their frozen-model roles
    # (trainer.losses.LossSpec.roles) decide which auxiliary models the learners load.
    losses: LossesFn = pg_losses
    needs_generator: bool = True  # False: offline (no rollout workers are started, no weight sync runs)
    # Columns the strategy adds to every row before scoring (multi-turn: the episode's outcome), so the reward
    # plugins' signature check knows they will be supplied.
    columns: tuple[str, ...] = ()


STRATEGIES: dict[str, StrategyEntry] = {}


def register_strategy(
    name: str,
    options: type,
    losses: LossesFn = pg_losses,
    needs_generator: bool = True,
    columns: tuple[str, ...] = (),
) -> Callable[[StrategyFactory], StrategyFactory]:
    def deco(factory: StrategyFactory) -> StrategyFactory:
        STRATEGIES[name] = StrategyEntry(factory, options, losses, needs_generator, columns)
        return factory

    return deco
