"""GRPO over multi-turn episodes: each prompt row is an environment task, each sample a whole episode.

A request for n samples of a task plays n episodes of it (rollout/multiturn.py) over a pool of environment
actors (rollout/envs/pool.py); the n episodes form one advantage group. The episode's row is the exact token
sequence the engine saw (actions interleaved with observations) with a target mask on the agent's action
tokens only, so the clipped PG / KL terms never train on observation or template tokens. The reward is
whatever the recipe's reward plugins say, fed with the episode outcome as columns (``env_return`` is the
environment's final reward; see rewards/env.py).

Every rollout writes its episode transcripts to ``OUTPUT_DIR/episodes/rollout_NNNNN.jsonl`` (actions,
observations, rewards, status) so what the agent actually did can be read, not just its reward.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rollout.envs.base import absolute_paths
from rollout.multiturn import (
    DEFAULT_FIRST_TURN,
    DEFAULT_SYSTEM,
    EpisodeLimits,
    EpisodeRunner,
    EpisodeSpec,
    EpisodeStart,
    TurnFormat,
    episode_metrics,
)
from rollout.strategies.base import Generator, Scorer, StrategyContext, register_strategy
from rollout.strategies.common import merge_scores, pg_train_batch, rollout_metrics
from rollout.types import PromptRequest, RolloutBatch
from trainer.batch import TrainBatch

EPISODE_COLUMNS = (
    "episode_return",
    "episode_won",
    "episode_status",
    "episode_turns",
    "episode_invalid_actions",
)


@dataclass
class MultiTurnOptions:
    env: str = "textworld"  # a registered environment (rollout/envs/base.py ENVIRONMENTS) or module:Class
    env_options: dict[str, Any] = field(default_factory=dict)  # keywords for the environment's constructor
    pool: str = "ray"  # ray: one actor per slot (timeouts kill and replace it); local: in this process
    pool_size: int = 8  # episodes played at once (env slots)
    step_timeout_s: float = 60.0  # a reset/step slower than this ends the episode as failed
    env_num_cpus: float = 0.0  # CPU reservation per env actor (they wait on their simulator)
    max_turns: int = 10  # actions per episode
    max_action_tokens: int = 32  # tokens per action
    max_tokens: int = 0  # prompt + actions + observations; 0: rollout.max_model_len
    system_prompt: str | None = DEFAULT_SYSTEM
    first_turn: str = DEFAULT_FIRST_TURN  # the first user message: {task} and {observation}
    use_chat_template: bool = True
    save_episodes: bool = True

    def episode_spec(self, recipe: Any) -> EpisodeSpec:
        """How this recipe plays (the held-out evaluation plays the same way; tasks: ``data.source``)."""
        limits = EpisodeLimits(
            self.max_turns, self.max_action_tokens, self.max_tokens or recipe.rollout.max_model_len
        )
        return EpisodeSpec(
            self.env,
            dict(self.env_options),
            self.pool_size,
            self.step_timeout_s,
            limits,
            self.system_prompt,
            self.first_turn,
            self.use_chat_template,
            recipe.rollout.temperature,
            recipe.data.source,
        )


def make_pool(o: MultiTurnOptions) -> Any:
    from rollout.envs.pool import LocalEnvPool, RayEnvPool

    if o.pool == "ray":
        return RayEnvPool(o.env, o.env_options, o.pool_size, o.step_timeout_s, o.env_num_cpus)
    if o.pool == "local":
        return LocalEnvPool(o.env, o.env_options, o.pool_size, o.step_timeout_s)
    raise ValueError(f"strategy.options.pool: {o.pool!r} is not ray or local")


class MultiTurnGRPOStrategy:
    def __init__(self, ctx: StrategyContext, options: MultiTurnOptions) -> None:
        if options.pool not in ("ray", "local"):
            raise ValueError(f"strategy.options.pool: {options.pool!r} is not ray or local")
        env_options = absolute_paths(options.env_options)
        options = replace(options, env_options=env_options)
        self.ctx, self.o = ctx, options
        self.fmt = TurnFormat(
            ctx.tokenizer, options.system_prompt, options.first_turn, options.use_chat_template
        )
        self.limits = EpisodeLimits(
            options.max_turns, options.max_action_tokens, options.max_tokens or ctx.max_model_len
        )
        self._pool: Any = None
        self.rollouts = 0

    def runner(self) -> EpisodeRunner:
        if self._pool is None:  # built on first use: the env actors start with the first rollout
            self._pool = make_pool(self.o)
        return EpisodeRunner(self._pool, self.fmt, self.limits, self.ctx.sampling)

    def rollout(self, requests: list[PromptRequest], generator: Generator, scorer: Scorer) -> RolloutBatch:
        starts, groups = [], []
        for i, r in enumerate(requests):
            for _ in range(r.n_samples):
                starts.append(EpisodeStart(r.prompt))
                groups.append(f"{i}:{r.prompt.uid}")
        episodes = self.runner().run(starts, generator)
        samples = [ep.to_sample(g) for ep, g in zip(episodes, groups, strict=True)]
        metrics = merge_scores([(scorer.score(samples), len(samples))], samples)
        metrics |= rollout_metrics(samples) | episode_metrics(episodes)
        metrics["env/replaced_actors"] = float(getattr(self._pool, "replaced", 0))
        self._save([ep.record() for ep in episodes])
        self.rollouts += 1
        return RolloutBatch(samples, metrics)

    def _save(self, records: list[dict[str, Any]]) -> None:
        if not (self.o.save_episodes and self.ctx.output_dir):
            return
        d = Path(self.ctx.output_dir) / "episodes"
        d.mkdir(parents=True, exist_ok=True)
        with (d / f"rollout_{self.rollouts:05d}.jsonl").open("w") as fh:
            for r in records:
                fh.write(json.dumps(r) + "\n")

    def make_train_batch(self, batch: RolloutBatch) -> TrainBatch:
        return pg_train_batch(batch.samples, self.ctx.algorithm, self.ctx.pad_id)

    def state_dict(self) -> dict[str, Any]:
        return {"rollouts": self.rollouts}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rollouts = int(state.get("rollouts", 0))


@register_strategy("multiturn_grpo", MultiTurnOptions, columns=EPISODE_COLUMNS)
def make_multiturn_grpo(ctx: StrategyContext, options: MultiTurnOptions) -> MultiTurnGRPOStrategy:
    return MultiTurnGRPOStrategy(ctx, options)
