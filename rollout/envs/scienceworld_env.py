"""ScienceWorld (PyPI ``scienceworld``, a bundled Java simulator) as a multi-turn environment, and task files.

One JVM per environment object: ``ScienceWorldEnv`` starts the simulator once (seconds) and every ``reset``
loads the row's ``(task_name, variation)`` into it (``load`` + ``reset``, about a second), so an env actor
plays many episodes on one simulator. Tasks are ETO's (task, variation) splits shipped in the shared data
folder (``llm/scienceworld``, see its PROVENANCE.md)::

    python -m rollout.envs.scienceworld_env make-tasks --out runs/sciworld --train 16 --heldout 8 --seed 0

writes ``train.jsonl`` (drawn from ETO's train indices) and ``test.jsonl`` (held-out, from ETO's test indices),
one row per (task, variation): ``uid``, ``text`` (the task description), ``env: scienceworld``,
``task_name`` (ETO's name, e.g. ``task-1-boil``; the simulator strips the ``task-N-`` prefix),
``variation``, ``simplification``, ``expert_actions`` (the simulator's gold action sequence, trailing actions
after the task is complete dropped), ``max_steps`` (ETO's per-task cap) and ``expert_return`` (the return the
expert actions reach when replayed under that cap: 1.0 when they win within it).

Reward: ScienceWorld's score (0-100, -100 when the agent does something that fails the task) / 100, clipped
to [0, 1], after every step, so a failed episode returns 0 and a completed one 1.0. An action the parser
does not know gets the simulator's own reply ("No known action matches that input.", "Unknown action. ...")
with ``info["valid"] = False``; an ambiguous one gets its numbered-choices question (the agent may answer
with the number), ``info["ambiguous"] = True`` and ``valid = False`` because nothing happened in the world.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from rollout.envs.base import EnvError, Observation, StepResult, write_split

# The simulator's replies to input it could not act on (scienceworld 1.2.3's jar, checked by hand).
_INVALID_PREFIXES = ("No known action matches that input.", "Unknown action.")
_AMBIGUOUS_PREFIX = "Ambiguous request"
_GOLD_ERROR_PREFIX = "ERROR:"

# Above ETO's largest per-task max_steps (120, melting point), so the episode cap that ends an ETO episode
# is max_steps and the simulator's own move counter only backs it up for rows without one.
DEFAULT_ENV_STEP_LIMIT = 200


def shared_data_dir() -> Path:
    """The shared data folder: ``$FORGE_SHARED_DATA``, else ``../shared/data`` beside the repository."""
    env = os.environ.get("FORGE_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def scienceworld_data_dir() -> Path:
    return shared_data_dir() / "llm" / "scienceworld"


def _load_data(name: str, data_dir: Path | None = None) -> Any:
    path = (data_dir or scienceworld_data_dir()) / name
    if not path.is_file():
        raise EnvError(
            f"ScienceWorld data file not found: {path} (set FORGE_SHARED_DATA to the folder holding "
            "llm/scienceworld/, see its PROVENANCE.md)"
        )
    with path.open() as fh:
        return json.load(fh)


def _row_label(task: dict[str, Any]) -> str:
    # Rows carry long expert_actions lists: name the row by uid where it has one.
    if "uid" in task:
        return f"row uid {task['uid']!r}"
    text = repr(task)
    return f"row {text[:200]}{'...' if len(text) > 200 else ''}"


def _task_key(task: dict[str, Any]) -> tuple[str, int]:
    """``(task_name, variation)`` of a dataset row, or an EnvError naming the bad key and the row."""
    for key in ("task_name", "variation"):
        if task.get(key) in (None, ""):
            raise EnvError(f"scienceworld task has no {key!r} (columns: {sorted(task)}; {_row_label(task)})")
    name = task["task_name"]
    if not isinstance(name, str):
        raise EnvError(f"scienceworld task 'task_name' must be a string, got {name!r} ({_row_label(task)})")
    try:
        variation = int(task["variation"])
    except (TypeError, ValueError):
        raise EnvError(
            f"scienceworld task 'variation' must be an integer, got {task['variation']!r} "
            f"({_row_label(task)})"
        ) from None
    return name, variation


class ScienceWorldEnv:
    """One ScienceWorld episode at a time on one long-lived simulator (JVM).

    ``simplification``: ScienceWorld's simplification string for rows without their own ``simplification``
    ("easy", as ETO uses, = teleportAction, openDoors, selfWateringFlowerPots, noElectricalAction).
    ``max_steps``: the episode cap (agent actions) for rows without their own ``max_steps``; None = only the
    simulator's ``env_step_limit`` (moves; "No known action matches" input is not one).
    ``admissible_commands``: also return the simulator's valid action-object combinations (about 0.2 s a
    call, so off by default).
    ``java_options``: JVM flags for this simulator (e.g. ``-XX:ActiveProcessorCount=1`` when many env actors
    share few cores), passed as JAVA_TOOL_OPTIONS to the JVM launch only.
    """

    def __init__(
        self,
        simplification: str = "easy",
        max_steps: int | None = None,
        jar_path: str | None = None,
        env_step_limit: int = DEFAULT_ENV_STEP_LIMIT,
        admissible_commands: bool = False,
        java_options: str | None = None,
    ) -> None:
        from scienceworld import ScienceWorldEnv as _Simulator  # JVM wrapper: imported where episodes run

        self.simplification = simplification
        self.max_steps = int(max_steps) if max_steps is not None else None
        self.env_step_limit = int(env_step_limit)
        self.admissible_commands = bool(admissible_commands)
        saved = os.environ.get("JAVA_TOOL_OPTIONS")
        try:
            if java_options:
                os.environ["JAVA_TOOL_OPTIONS"] = java_options
            self._sim = _Simulator("", serverPath=jar_path, envStepLimit=self.env_step_limit)
        except Exception as e:  # no java on PATH, a bad jar: say what the simulator needs
            raise EnvError(
                f"could not start the ScienceWorld simulator (needs Java on PATH, 17 tested, and the jar "
                f"{jar_path or 'bundled with the scienceworld package'}): {type(e).__name__}: {e}"
            ) from e
        finally:
            if java_options:
                if saved is None:
                    os.environ.pop("JAVA_TOOL_OPTIONS", None)
                else:
                    os.environ["JAVA_TOOL_OPTIONS"] = saved
        self._active = False
        self._done = False
        self._steps = 0
        self._cap: int | None = None

    # -- loading ----------------------------------------------------------------------------------------

    def _load(
        self, name: str, variation: int, task: dict[str, Any], simplification: str, gold: bool = False
    ) -> None:
        from scienceworld.utils import infer_task  # the package's own name normalisation ("task-1-boil")

        known = list(self._sim.get_task_names())
        if infer_task(name) not in known:
            raise EnvError(f"scienceworld: unknown task_name {name!r} ({_row_label(task)}); known: {known}")
        n_variations = int(self._sim.get_max_variations(name))
        if not 0 <= variation < n_variations:  # the simulator would fail later with a Java IndexOutOfBounds
            raise EnvError(
                f"scienceworld: variation {variation} out of range 0..{n_variations - 1} for task_name "
                f"{name!r} ({_row_label(task)})"
            )
        try:
            self._sim.load(name, variation, simplification, generateGoldPath=gold)
        except ValueError as e:  # a bad simplification string, in the package's words
            raise EnvError(f"scienceworld: {e} ({_row_label(task)})") from e

    def reset(self, task: dict[str, Any]) -> Observation:
        name, variation = _task_key(task)
        self._active = False
        # A row written by make-tasks says which simplification its expert actions were made under.
        self._load(name, variation, task, str(task.get("simplification") or self.simplification))
        _, info = self._sim.reset()  # the package's reset plays "look around": its info has look and taskDesc
        self._active, self._done, self._steps = True, False, 0
        cap = task.get("max_steps")
        self._cap = int(cap) if cap not in (None, "") else self.max_steps
        obs_info: dict[str, Any] = {
            "objective": self._sim.get_task_description(),
            "max_score": 100,
            "task_name": name,
            "variation": variation,
            "max_steps": self._cap,
        }
        if self.admissible_commands:
            obs_info["admissible_commands"] = list(info["valid"])  # computed by reset() anyway
        return Observation(f"{info['taskDesc'].strip()}\n\n{info['look'].strip()}", obs_info)

    # -- playing ----------------------------------------------------------------------------------------

    def step(self, action: str) -> StepResult:
        if not self._active:
            raise EnvError("scienceworld: step() before reset()")
        if self._done:
            raise EnvError("scienceworld: step() after the episode ended; reset() starts the next one")
        # The simulator directly, not the package's step(): that one also lists every valid action-object
        # combination, looks and takes inventory on each call (~0.25 s against ~0.02 s for the step itself).
        server = self._sim.server
        text = str(server.step(action))
        score = round(100 * float(server.getScore()))  # the package's 0-100 scale
        completed = bool(server.getCompleted())
        moves = int(server.getNumMoves())
        self._steps += 1
        ambiguous = text.startswith(_AMBIGUOUS_PREFIX)
        valid = not ambiguous and not text.startswith(_INVALID_PREFIXES)
        lost = score < 0  # ScienceWorld's failure score (e.g. focusing on the wrong object): the episode ends
        won = completed and not lost
        over_moves = moves > self.env_step_limit  # the package ends episodes past envStepLimit the same way
        over_cap = self._cap is not None and self._steps >= self._cap
        done = completed or lost or over_moves or over_cap
        truncated = done and not (completed or lost)
        self._done = done
        info: dict[str, Any] = {
            "won": won,
            "lost": lost,
            "valid": valid,
            "ambiguous": ambiguous,
            "truncated": truncated,
            "score": score,
            "moves": moves,
            "steps": self._steps,
        }
        if self.admissible_commands:
            info["admissible_commands"] = list(self._sim.get_valid_action_object_combinations())
        return StepResult(text, min(max(score / 100.0, 0.0), 1.0), done, info)

    def gold_actions(self, task_name: str, variation: int) -> list[str]:
        """The simulator's gold action sequence for ``(task_name, variation)``, this env's simplification.

        Generating it plays the task inside the simulator (seconds per task), so the current episode ends.
        """
        task = {"task_name": task_name, "variation": variation}
        name, var = _task_key(task)
        self._active = False
        self._load(name, var, task, self.simplification, gold=True)
        actions = [str(a) for a in self._sim.get_gold_action_sequence()]
        if not actions or actions[0].startswith(_GOLD_ERROR_PREFIX):
            raise EnvError(
                f"scienceworld: no gold path for {task_name!r} variation {variation}: {actions[:1]}"
            )
        return actions

    def task_description(self) -> str:
        """The loaded task's description (after ``reset`` or ``gold_actions``)."""
        return str(self._sim.get_task_description())

    def close(self) -> None:
        self._active = False
        sim, self._sim = getattr(self, "_sim", None), None
        if sim is not None:
            sim.close()


def gold_actions(
    task_name: str, variation: int, simplification: str = "easy", *, env: ScienceWorldEnv | None = None
) -> list[str]:
    """ScienceWorld's gold action sequence for one (task, variation); ``env`` reuses a running simulator."""
    own = env is None
    sim = env if env is not None else ScienceWorldEnv(simplification=simplification)
    if sim.simplification != simplification:
        raise EnvError(
            f"gold_actions: env plays simplification {sim.simplification!r}, asked for {simplification!r}"
        )
    try:
        return sim.gold_actions(task_name, variation)
    finally:
        if own:
            sim.close()


def replay_expert(env: ScienceWorldEnv, row: dict[str, Any]) -> tuple[list[str], float]:
    """Play a row's ``expert_actions``: (the actions up to the episode's own end, the return they reach).

    ScienceWorld's gold paths often carry a trailing "wait1" or "look around" after the task is complete;
    an episode is over then, so those are dropped. A path the row's ``max_steps`` cuts short (grow-plant's
    gold paths run past ETO's cap of 30) keeps all its actions; its return is what the cap lets it reach.
    """
    env.reset(row)
    actions = list(row["expert_actions"])
    reward = 0.0
    for i, action in enumerate(actions):
        result = env.step(action)
        reward = result.reward
        if result.done:
            return (actions if result.info["truncated"] else actions[: i + 1]), reward
    return actions, reward


# -- task files ---------------------------------------------------------------------------------------------


def _stratified_sample(pairs: list[tuple[str, int]], n: int, rng: random.Random) -> list[tuple[str, int]]:
    """``n`` pairs cycling over task types in a seeded order, a seeded random variation each time.

    ETO's splits hold 1-300 variations per task type, so a plain sample of 16 would be a few task types;
    cycling gives every type a row before any gets a second.
    """
    by_task: dict[str, list[int]] = defaultdict(list)
    for name, var in pairs:
        by_task[name].append(var)
    for vs in by_task.values():
        rng.shuffle(vs)
    order = sorted(by_task)
    rng.shuffle(order)
    out: list[tuple[str, int]] = []
    while len(out) < n and any(by_task.values()):
        for name in order:
            if len(out) < n and by_task[name]:
                out.append((name, by_task[name].pop()))
    if len(out) < n:
        raise EnvError(
            f"scienceworld: asked for {n} tasks, the split has only {len(out)} (task, variation) pairs"
        )
    return out


def make_tasks(
    out: Path,
    n_train: int = 16,
    n_heldout: int = 8,
    seed: int = 0,
    simplification: str = "easy",
    task_names: list[str] | None = None,
    data_dir: Path | None = None,
    env: ScienceWorldEnv | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Write ``out/train.jsonl`` (ETO train indices) and ``out/test.jsonl`` (held-out: ETO test indices).

    ``task_names`` keeps only those ETO task types (e.g. ``["task-3-find-plant"]``). ``env`` reuses a
    running simulator for the gold paths (one JVM start instead of one per call).
    """
    train_idx = {(str(t), int(v)) for t, v in _load_data("eto_train_indices.json", data_dir)}
    test_idx = {(str(t), int(v)) for t, v in _load_data("eto_test_indices.json", data_dir)}
    max_steps: dict[str, int] = _load_data("eto_max_steps.json", data_dir)
    name2id: dict[str, int] = _load_data("eto_taskname2id.json", data_dir)
    overlap = train_idx & test_idx
    if overlap:  # ETO's splits are disjoint; a changed data file must not leak held-out tasks into training
        raise EnvError(
            f"scienceworld: ETO train and test indices share {len(overlap)} pairs, e.g. {min(overlap)}"
        )
    if task_names:
        unknown = sorted(set(task_names) - {t for t, _ in train_idx | test_idx})
        if unknown:
            raise EnvError(f"scienceworld: task names not in ETO's splits: {unknown}")
        train_idx = {p for p in train_idx if p[0] in task_names}
        test_idx = {p for p in test_idx if p[0] in task_names}
    rng = random.Random(seed)
    picks = {
        "train": _stratified_sample(sorted(train_idx), n_train, rng),
        "heldout": _stratified_sample(sorted(test_idx), n_heldout, rng),
    }
    out.mkdir(parents=True, exist_ok=True)
    own = env is None
    sim = env if env is not None else ScienceWorldEnv(simplification=simplification)
    split: dict[str, list[dict[str, Any]]] = {}
    try:
        for part, pairs in picks.items():
            rows = []
            for name, var in pairs:
                row: dict[str, Any] = {
                    "id": f"sciworld-{name2id.get(name, name)}_{var}",  # ETO's task_id, prefixed
                    "text": "",
                    "env": "scienceworld",
                    "task_name": name,
                    "variation": var,
                    "simplification": simplification,
                    "expert_actions": gold_actions(name, var, simplification, env=sim),
                    "max_steps": max_steps.get(name),
                }
                row["text"] = sim.task_description()
                row["expert_actions"], row["expert_return"] = replay_expert(sim, row)
                rows.append(row)
                print(
                    f"[scienceworld] {part} {len(rows)}/{len(pairs)}: {name} #{var} "
                    f"({len(row['expert_actions'])} expert actions, return {row['expert_return']:.2f} "
                    f"under max_steps {row['max_steps']})",
                    flush=True,
                )
            write_split(out, part, rows)
            split[part] = rows
    finally:
        if own:
            sim.close()
    return split


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rollout.envs.scienceworld_env", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make-tasks", help="write train/held-out task files from ETO's splits")
    mk.add_argument("--out", required=True)
    mk.add_argument("--train", type=int, default=16)
    mk.add_argument("--heldout", type=int, default=8)
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--simplification", default="easy")
    mk.add_argument(
        "--task",
        action="append",
        default=None,
        help="keep only this ETO task type (repeatable), e.g. task-1-boil",
    )
    a = ap.parse_args(argv)
    try:
        split = make_tasks(Path(a.out), a.train, a.heldout, a.seed, a.simplification, a.task)
    except EnvError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(split['train'])} train and {len(split['heldout'])} held-out tasks under {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
