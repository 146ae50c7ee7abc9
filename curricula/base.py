"""The Curriculum interface: which prompts to train on next, and how many samples each.

A curriculum is stateful (Beta counts, hint rates, buffers): ``observe`` updates it from scored
rollouts, and ``state_dict``/``load_state_dict`` round-trip it through checkpoints so a resumed run
continues the same sequence. Implementations register with :func:`register_curriculum` together
with a dataclass of their options (validated when the recipe loads, before any actor starts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from rollout.types import PromptRequest, RolloutBatch


class Curriculum(Protocol):
    def next_batch(self, step: int) -> list[PromptRequest]: ...

    def observe(self, batch: RolloutBatch) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class CurriculumContext:
    """What a curriculum may use. ``learners`` is a LearnerGroup (for gradient-based estimators such as
    CurES's σ); ``generator`` and ``scorer`` allow cold-start estimation rollouts."""

    dataset: Any  # curricula.data.PromptDataset
    prompts_per_step: int
    n_samples: int
    seed: int
    generator: Any = None
    scorer: Any = None
    learners: Any = None
    renderer: Any = None


CurriculumFactory = Callable[[CurriculumContext, Any], Curriculum]


@dataclass(frozen=True)
class CurriculumEntry:
    factory: CurriculumFactory
    options: type  # dataclass of recipe options (curriculum.options)


CURRICULA: dict[str, CurriculumEntry] = {}


def register_curriculum(name: str, options: type) -> Callable[[CurriculumFactory], CurriculumFactory]:
    def deco(factory: CurriculumFactory) -> CurriculumFactory:
        CURRICULA[name] = CurriculumEntry(factory, options)
        return factory

    return deco
