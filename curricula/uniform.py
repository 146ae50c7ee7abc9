"""Uniform curriculum: epochs over a shuffled dataset, the same sample count for every prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from curricula.base import CurriculumContext, register_curriculum
from rollout.types import PromptRequest, RolloutBatch


@dataclass
class UniformOptions:
    shuffle: bool = True  # reshuffle the dataset at every epoch


class UniformCurriculum:
    def __init__(self, ctx: CurriculumContext, options: UniformOptions) -> None:
        self.dataset = ctx.dataset
        self.k = ctx.prompts_per_step
        self.n = ctx.n_samples
        self.options = options
        self.rng = np.random.default_rng(ctx.seed)
        self.epoch = 0
        self.cursor = 0
        self.order = self._new_order()

    def _new_order(self) -> list[int]:
        idx = np.arange(len(self.dataset))
        if self.options.shuffle:
            self.rng.shuffle(idx)
        return idx.tolist()

    def next_batch(self, step: int) -> list[PromptRequest]:
        out: list[PromptRequest] = []
        while len(out) < self.k:
            if self.cursor >= len(self.order):
                self.epoch += 1
                self.cursor = 0
                self.order = self._new_order()
            out.append(PromptRequest(self.dataset[self.order[self.cursor]], self.n))
            self.cursor += 1
        return out

    def observe(self, batch: RolloutBatch) -> dict[str, float]:
        return {"epoch": float(self.epoch)}

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


@register_curriculum("uniform", UniformOptions)
def make_uniform(ctx: CurriculumContext, options: UniformOptions) -> UniformCurriculum:
    return UniformCurriculum(ctx, options)
