"""launch/episodes_eval.py: held-out multi-turn evaluation. The metrics are counted from the episodes played
(greedy success, sampled avg@k / pass@k, environment failures left out and counted); the command line plays the
recipe's game with a real engine and writes every transcript; bad targets fail with a message naming the cause."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from launch.episodes_eval import evaluate_episodes, load_tasks, main
from rollout.envs.pool import LocalEnvPool
from rollout.multiturn import EpisodeLimits, TurnFormat
from rollout.types import Completion, Prompt, SamplingParams
from tests.support.tiny import build_tokenizer

ROOT = Path(__file__).resolve().parents[2]


class CoinPolicy:
    """Corridor policy: on task "sure" always "go east" (wins); on task "coin" greedy decoding answers "jump"
    (loses) and sampled episodes alternate, the first sampled "coin" episode walking east, the second not."""

    def __init__(self, tok) -> None:
        self.tok, self.coin_starts = tok, 0

    def generate(self, requests):
        out = []
        for r in requests:
            ctx = self.tok.decode(r.prompt_ids)
            if "sure" in ctx or "Room 1." in ctx:  # task "sure", or a coin episode that already moved east
                text = "go east"
            elif r.params.temperature == 0.0 or "That's not a verb" in ctx:  # greedy, or a coin episode lost
                text = "jump"
            else:
                self.coin_starts += 1
                text = "go east" if self.coin_starts % 2 == 1 else "jump"
            ids = [*self.tok(text, add_special_tokens=False)["input_ids"], self.tok.eos_token_id]
            out.append([Completion(ids, [-0.1] * len(ids), "stop", text)])
        return out


def test_metrics_are_counted_from_the_episodes(tmp_path):
    tok = build_tokenizer(tmp_path / "tok")
    fmt = TurnFormat(tok, None, "{task}\n{observation}", use_chat_template=False)
    tasks = [
        Prompt("s", "sure"),
        Prompt("c", "coin"),
        Prompt("x", "sure", columns={"broken": True}),  # the environment cannot load it
    ]
    m, greedy, sampled = _evaluate(tok, fmt, tasks, {})
    assert [(e["uid"], e["won"], e["status"]) for e in greedy] == [
        ("s", True, "done"),
        ("c", False, "max_turns"),
        ("x", False, "env_failure"),
    ]
    assert m["env/success_rate"] == 0.5 and m["env/failures"] == 1.0  # the failed task is no loss
    # Sampled: "sure" wins 2/2, "coin" 1/2; the broken task has no played sample and is left out.
    assert m["env/tasks_scored@2"] == 2.0 and m["env/failures@2"] == 2.0
    assert m["env/success_avg@2"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["env/success_pass@2"] == pytest.approx(1.0)
    assert len(sampled) == 6 and {e["sample"] for e in sampled} == {0, 1}
    assert sum(e["won"] for e in sampled if e["uid"] == "c") == 1
    # The simulator crashes on "jump": coin's losing sample fails, so coin has 1 of 2 samples played and is
    # left out of pass@k (which needs k samples), not scored from one.
    m, _, sampled = _evaluate(tok, fmt, tasks[:2], {"fail_on": "jump"})
    assert m["env/success_rate"] == 1.0 and m["env/failures"] == 1.0
    assert m["env/tasks_scored@2"] == 1.0 and m["env/failures@2"] == 1.0
    assert m["env/success_avg@2"] == 1.0 and m["env/return_mean@2"] == 1.0
    assert [e["status"] for e in sampled if e["uid"] == "c"].count("env_failure") == 1


def _evaluate(tok, fmt, tasks, env_options):
    pool = LocalEnvPool("tests.support.envs:Corridor", env_options, 2, step_timeout_s=5.0)
    try:
        return evaluate_episodes(
            CoinPolicy(tok),
            pool,
            fmt,
            EpisodeLimits(3, 8, 400),
            tasks,
            SamplingParams(8, 0.0),
            SamplingParams(8, 1.0),
            k=2,
            progress=lambda _: None,
        )
    finally:
        pool.close()


def test_load_tasks_names_the_bad_row(tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_text(json.dumps({"id": 1, "text": "a"}) + "\n" + json.dumps({"id": 2}) + "\n")
    with pytest.raises(ValueError, match=r"t.jsonl row 1: no 'text' field"):
        load_tasks(f)
    with pytest.raises(ValueError, match="task file not found"):
        load_tasks(tmp_path / "missing.jsonl")


def _recipe(tmp_path: Path, model: str) -> Path:
    """The shipped TextWorld GRPO recipe on the scripted corridor game, with the tiny model."""
    cfg = yaml.safe_load((ROOT / "recipes" / "textworld_grpo_tiny_cpu.yaml").read_text())
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for split, n in (("train", 2), ("test", 3)):
        rows = [{"id": f"{split}{i}", "text": "Reach room 2."} for i in range(n)]
        (tasks / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg["model"] = {"path": model, "dtype": "float32"}
    cfg["data"]["source"] = str(tasks / "train.jsonl")
    cfg["rollout"].update(engine="hf", max_model_len=256, kv_cache_gb=0.125, threads_per_worker=1)
    cfg["strategy"]["options"].update(
        env="tests.support.envs:Corridor", env_options={}, max_turns=3, max_action_tokens=6, pool_size=4
    )
    cfg["output_dir"] = str(tmp_path / "run")
    out = tmp_path / "grpo.yaml"
    out.write_text(yaml.safe_dump(cfg))
    return out


@pytest.mark.slow
def test_cli_plays_the_recipes_game_and_writes_transcripts(tiny_model, tmp_path, capsys):
    recipe = _recipe(tmp_path, tiny_model)
    out = tmp_path / "eval.json"
    assert main([str(recipe), "--k", "2", "--out", str(out), "--threads", "1"]) == 0
    r = json.loads(out.read_text())
    s = r["settings"]
    assert s["tasks"].endswith("tasks/test.jsonl") and s["num_tasks"] == 3 and s["k"] == 2
    assert s["episode_spec"]["env"] == "tests.support.envs:Corridor" and s["engine"] == "hf"
    assert s["episode_spec"]["limits"] == {"max_turns": 3, "max_action_tokens": 6, "max_tokens": 256}
    assert r["git_commit"] and r["versions"]["torch"]
    eps = r["episodes"]
    assert [e["uid"] for e in eps] == ["test0", "test1", "test2"] and len(r["sampled_episodes"]) == 6
    assert all(e["status"] != "env_failure" and 1 <= len(e["turns"]) <= 3 for e in eps)
    assert r["metrics"]["env/success_rate"] == pytest.approx(sum(e["won"] for e in eps) / 3)
    # Greedy decoding of one model on three identical games: three identical transcripts.
    assert len({json.dumps(e["turns"]) for e in eps}) == 1
    assert "success" in capsys.readouterr().out

    # Bad targets: a bare model has no game to play; a single-turn recipe plays none; no held-out file.
    assert main([tiny_model]) == 2
    assert "no recipe to say how the game is played" in capsys.readouterr().err
    math_recipe = tmp_path / "math.yaml"
    math = yaml.safe_load((ROOT / "recipes" / "dapo_tiny_cpu.yaml").read_text())
    math["model"] = {"path": tiny_model}
    math_recipe.write_text(yaml.safe_dump(math))
    assert main([tiny_model, "--recipe", str(math_recipe)]) == 2
    assert "plays no environment episodes" in capsys.readouterr().err
    assert main([str(recipe), "--tasks", str(tmp_path / "nope.jsonl")]) == 2
    assert "task file not found" in capsys.readouterr().err
