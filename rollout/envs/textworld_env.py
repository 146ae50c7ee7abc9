"""TextWorld (PyPI ``textworld``) as a multi-turn environment, and offline game generation.

Games are generated here, offline, by TextWorld's own generator (``textworld.generator.make_game``), so
the train and held-out tasks are procedurally varied levels with known expert walkthroughs and no data
download::

    python -m rollout.envs.textworld_env make --out runs/textworld/games --train 32 --heldout 16 --seed 0

writes ``games/*.z8`` and ``train.jsonl`` / ``test.jsonl`` (held-out): one row per game with ``id``, ``text`` (the
objective), ``env: textworld``, ``game`` (path relative to the jsonl file), ``expert_actions`` (the
walkthrough), ``max_score`` and the level settings. Train and held-out games come from disjoint generator
seeds, and a game whose walkthrough duplicates an earlier one is skipped, so no held-out game is a train game.

Reward: score / max_score after each step (TextWorld scores subgoals of the quest), so the episode return is
1.0 exactly when the quest is won. An action the parser does not know gets TextWorld's own reply ("That's
not a verb I recognise.") and ``info["valid"] = False`` when it is not among the admissible commands.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from rollout.envs.base import EnvError, Observation, StepResult, write_split

# Procedural variety: the generator cycles through these levels (rooms, objects, quest length).
LEVELS: tuple[tuple[int, int, int], ...] = ((2, 4, 1), (3, 6, 2), (3, 6, 3), (4, 8, 3), (5, 10, 4))

_BANNER_CHARS = set("$|\\/_-=")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # C0 controls but tab and newline, and DEL


def clean_feedback(text: str) -> str:
    """TextWorld's feedback without the ASCII-art banner, the '>' prompt and runs of blank lines."""
    lines = []
    for line in text.splitlines():
        s = line.strip()
        if s in (">", ""):
            lines.append("")
            continue
        if sum(c in _BANNER_CHARS for c in s) > 0.5 * len(s):  # banner art, not prose
            continue
        lines.append(s.rstrip(">").rstrip())
    out = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return out


class TextWorldEnv:
    """One TextWorld game at a time; ``reset`` loads the row's game file (a new z-machine per game)."""

    def __init__(self, max_steps: int = 30, games_root: str | None = None) -> None:
        import textworld  # heavy (spaCy): imported where an episode runs

        self._tw = textworld
        self.max_steps = int(max_steps)
        self.games_root = Path(games_root) if games_root else None
        self._env: Any = None
        self._state: Any = None
        self._steps = 0
        self._max_score = 1
        self._episode_cap = self.max_steps

    def _game_path(self, task: dict[str, Any]) -> Path:
        if "game" not in task:
            raise EnvError(f"textworld task row has no 'game' column (columns: {sorted(task)})")
        p = Path(str(task["game"]))
        if not p.is_absolute():
            base = task.get("games_root") or self.games_root
            p = Path(base) / p if base else p
        if not p.is_file():
            raise EnvError(f"textworld game file not found: {p} (row uid {task.get('uid', '?')})")
        return p

    def reset(self, task: dict[str, Any]) -> Observation:
        path = self._game_path(task)
        self.close()
        infos = self._tw.EnvInfos(
            admissible_commands=True, max_score=True, won=True, lost=True, objective=True
        )
        self._env = self._tw.start(str(path), request_infos=infos)
        self._state = self._env.reset()
        self._steps = 0
        self._max_score = max(int(self._state.max_score or 1), 1)
        self._episode_cap = int(task.get("max_steps") or self.max_steps)  # the row's cap wins
        text = self._state.feedback
        objective = self._state.objective or ""
        if objective and objective in text:  # the intro banner precedes the objective: start there
            text = text[text.index(objective) :]
        return Observation(
            clean_feedback(text),
            {
                "objective": self._state.objective,
                "max_score": self._max_score,
                "admissible_commands": list(self._state.admissible_commands or []),
            },
        )

    def step(self, action: str) -> StepResult:
        if self._env is None:
            raise EnvError("textworld: step() before reset()")
        # A sampled action can hold control bytes: a NUL kills the whole process inside jericho's interpreter
        # (segfault, measured), so control characters become spaces; the parser then answers as it answers any
        # other command it does not understand.
        action = _CONTROL.sub(" ", action)
        valid = action in (self._state.admissible_commands or [])
        self._state, score, done = self._env.step(action)
        self._steps += 1
        won, lost = bool(self._state.won), bool(self._state.lost)
        truncated = not done and self._steps >= self._episode_cap
        return StepResult(
            clean_feedback(self._state.feedback),
            min(max(float(score) / self._max_score, 0.0), 1.0),
            bool(done) or truncated,
            {
                "won": won,
                "lost": lost,
                "valid": valid,
                "truncated": truncated,
                "admissible_commands": list(self._state.admissible_commands or []),
            },
        )

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


def make_game(out_dir: Path, seed: int, level: tuple[int, int, int]) -> dict[str, Any]:
    """Generate and compile one game; return its dataset row (``game`` relative to ``out_dir``'s parent)."""
    import textworld
    from textworld.generator import compile_game
    from textworld.generator import make_game as tw_make_game

    rooms, objects, quest_length = level
    opts = textworld.GameOptions()
    opts.seeds = seed
    opts.nb_rooms, opts.nb_objects, opts.quest_length = rooms, objects, quest_length
    opts.path = str(out_dir / f"tw-{seed}.z8")
    opts.force_recompile = True
    game = tw_make_game(opts)
    path = Path(compile_game(game, opts))
    walkthrough = list(game.metadata.get("walkthrough") or game.main_quest.commands)
    return {
        "id": f"tw-{seed}",
        "text": game.objective,
        "env": "textworld",
        "game": str(path.relative_to(out_dir.parent)),
        "expert_actions": walkthrough,
        "max_score": int(game.max_score),
        "level": {"rooms": rooms, "objects": objects, "quest_length": quest_length},
        "seed": seed,
    }


def make_split(
    out: Path, n_train: int, n_heldout: int, seed: int = 0, levels: tuple[tuple[int, int, int], ...] = LEVELS
) -> dict[str, list[dict]]:
    """``n_train`` + ``n_heldout`` games from disjoint seed ranges, levels cycled, duplicates skipped."""
    games = out / "games"
    games.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    split: dict[str, list[dict]] = {"train": [], "heldout": []}
    for name, n, base in (("train", n_train, 0), ("heldout", n_heldout, 500_000)):
        i = 0
        while len(split[name]) < n:
            if i > 20 * n + 20:
                raise EnvError(f"textworld: could not generate {n} distinct {name} games (levels {levels})")
            s = 1_000_000 * seed + base + i
            row = make_game(games, s, levels[len(split[name]) % len(levels)])
            i += 1
            key = hashlib.sha1(json.dumps([row["text"], row["expert_actions"]]).encode()).hexdigest()
            if key in seen:
                continue
            seen.add(key)
            split[name].append(row)
            print(f"[textworld] {name} {len(split[name])}/{n}: {row['id']} level {row['level']}", flush=True)
        write_split(out, name, split[name])
    return split


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rollout.envs.textworld_env", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make", help="generate a train/held-out split of games")
    mk.add_argument("--out", required=True)
    mk.add_argument("--train", type=int, default=32)
    mk.add_argument("--heldout", type=int, default=16)
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument(
        "--level",
        action="append",
        default=None,
        metavar="ROOMS,OBJECTS,QUEST_LENGTH",
        help="a level to cycle through (repeatable); default: five levels from 2 rooms/1 step to 5 rooms/4 steps",
    )
    a = ap.parse_args(argv)
    levels = LEVELS
    if a.level:
        try:
            levels = tuple(tuple(int(x) for x in lv.split(",")) for lv in a.level)  # type: ignore[misc]
        except ValueError:
            ap.error(f"--level takes ROOMS,OBJECTS,QUEST_LENGTH integers, got {a.level}")
        if any(len(lv) != 3 for lv in levels):
            ap.error(f"--level takes three integers ROOMS,OBJECTS,QUEST_LENGTH, got {a.level}")
    split = make_split(Path(a.out), a.train, a.heldout, a.seed, levels)
    print(f"wrote {len(split['train'])} train and {len(split['heldout'])} held-out games under {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
