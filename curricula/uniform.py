"""Uniform curriculum: epochs over a shuffled dataset, the same sample count for every prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from curricula.base import CurriculumContext, register_curriculum
from rollout.types import PromptRequest, RolloutBatch


class EpochSampler:
    """Epochs over a pool of row indices, reshuffled at every epoch; ``state_dict`` makes resume exact.

    The draw loop every epoch-based curriculum shares (``uniform``; ``hpl_buckets`` with one pool per phase)."""

    def __init__(self, pool: list[int], rng: np.random.Generator, shuffle: bool) -> None:
        self.rng, self.shuffle = rng, shuffle
        self.reset(pool)

    def reset(self, pool: list[int]) -> None:
        """Start epoch 0 over ``pool``."""
        self.pool = list(pool)
        self.epoch, self.cursor = 0, 0
        self.order = self._new_order()

    def _new_order(self) -> list[int]:
        idx = np.array(self.pool, dtype=np.int64)
        if self.shuffle:
            self.rng.shuffle(idx)
        return idx.tolist()

    def take(self, k: int) -> list[int]:
        """The next ``k`` indices, starting a new shuffled epoch whenever one runs out."""
        if not self.pool:
            raise ValueError("no rows to draw from (empty dataset or pool)")
        out: list[int] = []
        while len(out) < k:
            if self.cursor >= len(self.order):
                self.epoch += 1
                self.cursor = 0
                self.order = self._new_order()
            out.append(self.order[self.cursor])
            self.cursor += 1
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "cursor": self.cursor,
            "order": list(self.order),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.cursor = int(state["cursor"])
        self.order = [int(i) for i in state["order"]]
        self.rng.bit_generator.state = state["rng"]


@dataclass
class UniformOptions:
    shuffle: bool = True  # reshuffle the dataset at every epoch


class UniformCurriculum:
    def __init__(self, ctx: CurriculumContext, options: UniformOptions) -> None:
        self.dataset = ctx.dataset
        self.k = ctx.prompts_per_step
        self.n = ctx.n_samples
        self.options = options
        self.sampler = EpochSampler(
            list(range(len(self.dataset))), np.random.default_rng(ctx.seed), options.shuffle
        )

    def next_batch(self, step: int) -> list[PromptRequest]:
        return [PromptRequest(self.dataset[i], self.n) for i in self.sampler.take(self.k)]

    def observe(self, batch: RolloutBatch) -> dict[str, float]:
        return {"epoch": float(self.sampler.epoch)}

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)


@register_curriculum("uniform", UniformOptions)
def make_uniform(ctx: CurriculumContext, options: UniformOptions) -> UniformCurriculum:
    return UniformCurriculum(ctx, options)
