"""Async (k-step-off) rollout through the real loop: vLLM actor, DeepSpeed learner, reward plugin."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from launch.config import ConfigError, load_recipe
from launch.train import train
from tests.conftest import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "recipes" / "grpo_default.yaml"
SEVENS = "rewards.functions=[{name: 'tests/support/toy_reward.py:sevens'}]"
COMMON = {
    "curriculum.prompts_per_step": 4,
    "curriculum.n_samples": 4,
    "trainer.lr": 1e-3,
    "eval.num_prompts": 4,
    "eval.every": 2,
}
ASYNC = "algorithm.async_rollout.enabled=true"


def _rows(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "reward_mean" in r]


def _weights(out: Path, step: int) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / f"checkpoints/step_{step:06d}/model/model.safetensors"))


def _run(tiny_model: str, out: Path, *extra: str, **kw: object) -> None:
    train(load_recipe(DEFAULT, [*tiny_overrides(tiny_model, out, **(COMMON | kw)), SEVENS, *extra]))


@pytest.mark.slow
def test_staleness_zero_reproduces_the_synchronous_loop(tiny_model, ray_cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    _run(tiny_model, tmp_path / "sync", total_steps=3)
    _run(tiny_model, tmp_path / "async0", ASYNC, "algorithm.async_rollout.max_staleness=0", total_steps=3)
    a, b = _rows(tmp_path / "sync"), _rows(tmp_path / "async0")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [0, 1, 2]
    for key in ("reward_mean", "response_len_mean", "entropy", "grad_norm", "mismatch/abs_logprob_diff"):
        assert [r[key] for r in a] == [r[key] for r in b], key
    assert [r["async/staleness"] for r in b] == [0.0, 0.0, 0.0]
    wa, wb = _weights(tmp_path / "sync", 3), _weights(tmp_path / "async0", 3)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_one_step_off_trains_checkpoints_and_resumes(tiny_model, ray_cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    full = tmp_path / "full"
    # (this run also takes the collective weight-sync path: learner rank 0 → the vLLM worker over gloo)
    ckpt = {"checkpoint.every": 2, "checkpoint.keep_last": 2, "rollout.weight_sync": "collective"}
    _run(tiny_model, full, ASYNC, total_steps=4, **ckpt)
    rows = _rows(full)
    assert all(r["sync/collective"] == 1.0 and r["sync/probe_diff"] < 0.01 for r in rows)
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    # batch 0 comes from the initial weights; every later one from the weights one update old
    assert [r["async/staleness"] for r in rows] == [0.0, 1.0, 1.0, 1.0]
    assert all(r["time/learner"] > 0 and "mismatch/abs_logprob_diff" in r for r in rows)
    # the importance correction sees stale samples: the learner's log-probs differ from the engine's
    assert max(r["mismatch/abs_logprob_diff"] for r in rows[1:]) > rows[0]["mismatch/abs_logprob_diff"]

    # The step-2 checkpoint holds the curriculum state right after batch 1, not the live state (which had
    # already drawn batch 2's prompts when the checkpoint was written).
    state = torch.load(full / "checkpoints/step_000002/state.pt", weights_only=False)
    assert state["step"] == 2 and state["curriculum"]["cursor"] == 2 * 4
    final = torch.load(full / "checkpoints/step_000004/state.pt", weights_only=False)
    assert final["curriculum"]["cursor"] == 4 * 4

    # Resume from step 2 in another folder: the steps continue, the curriculum reaches the same state.
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    shutil.copytree(full / "checkpoints/step_000002", part / "checkpoints/step_000002")
    (part / "checkpoints/latest").write_text("step_000002\n")
    _run(tiny_model, part, ASYNC, "resume=true", total_steps=4)
    assert [r["step"] for r in _rows(part)] == [2, 3]
    assert _rows(part)[0]["async/staleness"] == 0.0  # the first batch after a resume is fresh
    resumed = torch.load(part / "checkpoints/step_000004/state.pt", weights_only=False)
    assert resumed["curriculum"]["cursor"] == final["curriculum"]["cursor"]
    assert resumed["curriculum"]["order"] == final["curriculum"]["order"]


def test_async_needs_an_importance_correction(tiny_model, tmp_path):
    overrides = [*tiny_overrides(tiny_model, tmp_path), ASYNC, "algorithm.tis_cap=null"]
    with pytest.raises(ConfigError, match=r"algorithm\.async_rollout.*importance correction"):
        load_recipe(DEFAULT, overrides)
    load_recipe(DEFAULT, [*overrides, "algorithm.logprobs_source=engine"])  # the engine as the old policy
    with pytest.raises(ConfigError, match="max_staleness"):
        load_recipe(
            DEFAULT,
            [*tiny_overrides(tiny_model, tmp_path), ASYNC, "algorithm.async_rollout.max_staleness=-1"],
        )
