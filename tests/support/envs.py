"""A scripted text environment for tests of the multi-turn layer (light imports: env actors load it fast)."""

from __future__ import annotations

import time
from typing import Any

from rollout.envs.base import Observation, StepResult


class Corridor:
    """Scripted game: 'go east' twice wins; anything else is not understood. ``fail_on`` raises / hangs."""

    def __init__(self, fail_on: str = "", hang_s: float = 0.0) -> None:
        self.fail_on, self.hang_s, self.pos = fail_on, hang_s, 0

    def reset(self, task: dict[str, Any]) -> Observation:
        self.pos = 0
        if task.get("broken"):
            raise RuntimeError(f"cannot load game {task['uid']}")
        return Observation(f"Room {self.pos}.", {"max_score": 1})

    def step(self, action: str) -> StepResult:
        if self.fail_on and action == self.fail_on:
            if self.hang_s:
                time.sleep(self.hang_s)
            raise RuntimeError("simulator crashed")
        if action != "go east":
            return StepResult("That's not a verb I recognise.", self.pos / 2, False, {"valid": False})
        self.pos += 1
        won = self.pos == 2
        return StepResult(f"Room {self.pos}." + (" You win!" if won else ""), self.pos / 2, won, {"won": won})

    def close(self) -> None:
        pass
