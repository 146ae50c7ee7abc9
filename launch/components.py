"""Light registries in one place, for config validation and for the driver.

Importing this module imports the pure-logic registries (strategies, curricula, advantages,
rewards, data extractors) but none of ray, vllm or deepspeed: engines are named by import path and
imported only inside the actors.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# Strategy and curriculum modules register themselves on import. Add a method's module here.
STRATEGY_MODULES = [
    "rollout.strategies.grpo",
    "rollout.strategies.seele",
    "rollout.strategies.offline",
    "rollout.strategies.online_preference",
    "rollout.strategies.cog_rethinker",
    "rollout.strategies.sepo",
    "rollout.strategies.multiturn_grpo",
    "rollout.strategies.hpl",
]
CURRICULUM_MODULES = ["curricula.uniform", "curricula.cures", "curricula.hpl"]

# Engines by name → "module:Class" (imported lazily inside the rollout actor).
ENGINES = {
    "vllm": "rollout.engines.vllm_engine:VLLMEngine",
    "hf": "rollout.engines.hf_engine:HFEngine",
}


@dataclass(frozen=True)
class Registries:
    strategies: dict[str, Any]
    curricula: dict[str, Any]
    advantages: dict[str, Any]
    engines: dict[str, str]
    answer_extractors: dict[str, Any]
    builtin_models: dict[str, Any]
    resolve_reward: Any


@lru_cache(maxsize=1)
def load_registries() -> Registries:
    for mod in STRATEGY_MODULES + CURRICULUM_MODULES:
        importlib.import_module(mod)
    from curricula.base import CURRICULA
    from curricula.data import ANSWER_EXTRACTORS
    from launch.prepare_model import BUILTIN_MODELS
    from rewards.registry import resolve_reward
    from rollout.strategies.base import STRATEGIES
    from trainer.advantages import ADVANTAGES

    return Registries(
        STRATEGIES, CURRICULA, ADVANTAGES, ENGINES, ANSWER_EXTRACTORS, BUILTIN_MODELS, resolve_reward
    )


def import_object(path: str) -> Any:
    mod, _, name = path.partition(":")
    return getattr(importlib.import_module(mod), name)
