"""The multi-turn environment interface: text in, text out, one episode at a time.

An environment is a plain class (no Ray, no torch) with::

    reset(task: dict) -> Observation          # start the episode described by one dataset row
    step(action: str) -> StepResult           # one agent action (free text; the env parses it)
    close() -> None

``task`` is the dataset row's columns (``Prompt.columns``), e.g. ``{"game": "games/tw-0003.z8"}`` for
TextWorld or ``{"task_name": "boil", "variation": 3}`` for ScienceWorld, so a dataset file says which
episodes exist and the environment says how to play them. Rewards are *final-outcome* rewards in [0, 1]
(``StepResult.reward`` is the running score so far, normalised; the episode's return is the value after
its last step), matching HPL's and ETO's use of the final reward.

An action the environment does not understand is not an error: it answers with its own invalid-action
observation (``info["valid"] = False`` where it can tell), exactly as it would for a person typing it.
An environment that raises, or hangs past the pool's step timeout, ends that episode as failed
(rollout/envs/pool.py); the rest of the batch carries on.

Environments are named in recipes by registry name → ``"module:Class"`` (:data:`ENVIRONMENTS`), imported
only where an episode runs (the env actors), because their packages are heavy (TextWorld pulls spaCy).
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass
class Observation:
    text: str  # what the agent reads (already cleaned of banners/prompt characters)
    info: dict[str, Any] = field(default_factory=dict)  # objective, admissible commands, max_score, ...


@dataclass
class StepResult:
    observation: str
    reward: float  # normalised score so far, in [0, 1]; the last step's value is the episode return
    done: bool
    info: dict[str, Any] = field(default_factory=dict)  # won, lost, valid (action understood), ...


class Environment(Protocol):
    def reset(self, task: dict[str, Any]) -> Observation: ...

    def step(self, action: str) -> StepResult: ...

    def close(self) -> None: ...


# Registered environments: name -> "module:Class" (constructed with the recipe's env options as keywords).
ENVIRONMENTS: dict[str, str] = {
    "textworld": "rollout.envs.textworld_env:TextWorldEnv",
    "scienceworld": "rollout.envs.scienceworld_env:ScienceWorldEnv",
    # Their games / product catalogue are downloads this project cannot make offline: the adapters raise a
    # one-line EnvError saying what is missing and how to get it (rollout/envs/unavailable.py).
    "alfworld": "rollout.envs.unavailable:AlfWorldEnv",
    "webshop": "rollout.envs.unavailable:WebShopEnv",
}


class EnvError(RuntimeError):
    """An environment could not be built or failed in a way that ends the episode (message names which)."""


def make_env(name: str, options: dict[str, Any] | None = None) -> Environment:
    """Build a registered environment (or one named ``module:Class``) with keyword options."""
    target = ENVIRONMENTS.get(name, name)
    if ":" not in target:
        raise EnvError(f"unknown environment {name!r}; registered: {sorted(ENVIRONMENTS)} (or module:Class)")
    mod, _, cls = target.partition(":")
    try:
        factory = getattr(importlib.import_module(mod), cls)
    except ImportError as e:  # the package behind an adapter is optional: say which and how to get it
        raise EnvError(f"environment {name!r} needs a package that is not installed: {e}") from e
    return factory(**(options or {}))


# Task files: the data loader's convention (data.source: DIR/train.jsonl finds DIR/test.jsonl as its eval split).
SPLIT_FILES = {"train": "train.jsonl", "heldout": "test.jsonl"}


def absolute_paths(options: dict[str, Any]) -> dict[str, Any]:
    """Env options with path values (keys ending in _root/_dir/_path) made absolute against this process's working
    directory: env actors, pools and evaluations may run elsewhere (a Ray worker, a submitted job)."""
    return {
        k: str(Path(v).expanduser().resolve()) if k.endswith(("_root", "_dir", "_path")) and v else v
        for k, v in options.items()
    }


def write_split(out: Path, part: str, rows: list[dict[str, Any]]) -> Path:
    """Write one split's task rows (``id``, ``text``, ``env``, ``expert_actions``, env keys) as JSON lines."""
    path = Path(out) / SPLIT_FILES[part]
    with path.open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


def parse_action(text: str) -> str:
    """The action a reply stands for: its first non-empty line, stripped of quotes and a leading '>'.

    Models often echo the game's prompt character or quote the command; anything after the first line is
    ignored (one action per turn). An empty reply is sent as an empty command, which the environment
    answers with its own invalid-action message.
    """
    for line in text.splitlines():
        line = line.strip().lstrip(">").strip().strip("\"'`").strip()
        if line:
            return line
    return ""
