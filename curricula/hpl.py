"""HPL's dual-layer curriculum over training units (METHODS.md §4, step 7).

Group units sit in a 3 × 3 grid of buckets: group length (≤ 3 / 4–6 / > 6 actions) × value gap ΔR (≥ 0.7 /
0.4–0.7 / < 0.4), rollout/hpl.py. Phase 1 trains on the easiest bucket (short groups with a clear preference),
phase 2 adds its two neighbours, phase 3 all nine. The curriculum applies to the group term only: ``bc``,
``traj`` and ``step`` units are in every phase's pool.

Phases are set by step (``phase_steps: [p2, p3]``: phase 2 starts at step p2, phase 3 at p3; steps count from
0). Each phase draws epochs over its own shuffled pool; a saved cursor makes resume exact. Departure: the paper
moves phases by epochs of its fixed bucket sizes; steps let a recipe give every phase the same compute
whatever the bucket sizes turn out to be after the value filter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curricula.base import CurriculumContext, register_curriculum
from curricula.uniform import EpochSampler
from rollout.hpl import active_buckets
from rollout.types import PromptRequest, RolloutBatch


@dataclass
class HPLCurriculumOptions:
    phase_steps: list[int] = field(default_factory=lambda: [10, 20])  # first step of phase 2 and of phase 3
    shuffle: bool = True

    def __post_init__(self) -> None:
        ps = list(self.phase_steps)
        if len(ps) != 2 or ps[0] < 0 or ps[1] < ps[0]:
            raise ValueError(f"phase_steps must be [p2, p3] with 0 <= p2 <= p3, got {ps}")


class HPLCurriculum:
    def __init__(self, ctx: CurriculumContext, options: HPLCurriculumOptions) -> None:
        self.dataset = ctx.dataset
        self.k = ctx.prompts_per_step
        self.o = options
        self.buckets: list[tuple[int, int] | None] = []
        for i in range(len(self.dataset)):
            c = self.dataset[i].columns
            if c.get("kind") == "group":
                b = c.get("bucket")
                if not (isinstance(b, list) and len(b) == 2):
                    raise ValueError(
                        f"data row {self.dataset[i].uid!r}: a group unit needs bucket [length, gap]"
                    )
                self.buckets.append((int(b[0]), int(b[1])))
            else:
                self.buckets.append(None)
        self.phase = 0  # set by the first next_batch
        self.sampler = EpochSampler([], np.random.default_rng(ctx.seed), options.shuffle)

    def phase_at(self, step: int) -> int:
        return 1 + sum(step >= p for p in self.o.phase_steps)

    def pool(self, phase: int) -> list[int]:
        """Row indices a phase draws from: every non-group unit, and the group units of its active buckets."""
        active = active_buckets(phase)
        return [i for i, b in enumerate(self.buckets) if b is None or b in active]

    def next_batch(self, step: int) -> list[PromptRequest]:
        phase = self.phase_at(step)
        if phase != self.phase:  # a new phase: epochs over its own pool, from epoch 0
            self.phase = phase
            self.sampler.reset(self.pool(phase))
        if not self.sampler.pool:
            raise ValueError(f"hpl_buckets: phase {phase} has no units to train on (empty dataset?)")
        return [PromptRequest(self.dataset[i], 1) for i in self.sampler.take(self.k)]

    def observe(self, batch: RolloutBatch) -> dict[str, float]:
        groups = sum(b is not None for b in self.buckets)
        active = sum(b is not None and b in active_buckets(self.phase) for b in self.buckets)
        return {
            "hpl/phase": float(self.phase),
            "hpl/group_units_active": float(active),
            "hpl/group_units": float(groups),
            "epoch": float(self.sampler.epoch),
        }

    def state_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, **self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.phase = int(state["phase"])
        self.sampler.pool = self.pool(self.phase) if self.phase else []
        self.sampler.load_state_dict(state)


@register_curriculum("hpl_buckets", HPLCurriculumOptions)
def make_hpl_curriculum(ctx: CurriculumContext, options: HPLCurriculumOptions) -> HPLCurriculum:
    return HPLCurriculum(ctx, options)
