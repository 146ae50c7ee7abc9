"""The whole loop through real Ray actors: vLLM rollout workers, DeepSpeed learners, reward plugins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from launch.config import load_recipe
from launch.train import train
from tests.conftest import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "recipes" / "grpo_default.yaml"
SEVENS = "rewards.functions=[{name: 'tests/support/toy_reward.py:sevens'}]"


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _run(tiny_model: str, out: Path, *extra: str, **kw: object):
    cfg = load_recipe(DEFAULT, [*tiny_overrides(tiny_model, out, **kw), *extra])
    return train(cfg)


@pytest.mark.slow
def test_learning_reward_rises(tiny_model, ray_cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "learn"
    _run(
        tiny_model,
        out,
        SEVENS,
        **{
            "total_steps": 12,
            "rollout.max_new_tokens": 8,
            "trainer.lr": 3e-3,
            "curriculum.prompts_per_step": 8,
            "curriculum.n_samples": 8,
        },
    )
    rewards = [m["reward_mean"] for m in _metrics(out) if "reward_mean" in m]
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert last > first + 0.2, f"reward did not rise: {rewards}"


@pytest.mark.slow
def test_loop_metrics_checkpoints_and_resume(tiny_model, ray_cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    common = {
        "curriculum.prompts_per_step": 4,
        "curriculum.n_samples": 4,
        "checkpoint.every": 1,
        "checkpoint.keep_last": 2,
        "eval.num_prompts": 8,
        "eval.every": 2,
        "trainer.lr": 1e-3,
    }
    # uninterrupted: 4 steps
    full = tmp_path / "full"
    _run(tiny_model, full, SEVENS, total_steps=4, **common)
    # interrupted after 2 steps, then resumed to 4
    part = tmp_path / "part"
    _run(tiny_model, part, SEVENS, total_steps=2, **common)
    _run(tiny_model, part, SEVENS, "resume=true", total_steps=4, **common)

    rows = _metrics(full)
    step_rows = [r for r in rows if "reward_mean" in r]
    assert [r["step"] for r in step_rows] == [0, 1, 2, 3]
    for key in (
        "reward_mean",
        "accuracy",
        "response_len_mean",
        "entropy",
        "clip_frac",
        "grad_norm",
        "time/generate",
        "time/reward",
        "time/learner",
        "time/weight_sync",
        "sync/probe_diff",
    ):
        assert key in step_rows[0], key
    assert any("eval/accuracy" in r for r in rows)

    ckpts = full / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "step_000004"
    assert sorted(p.name for p in ckpts.glob("step_*")) == ["step_000003", "step_000004"]  # keep_last=2
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(ckpts / "step_000004" / "model")
    assert model.config.vocab_size > 0

    resumed = [r["step"] for r in _metrics(part) if "reward_mean" in r]
    assert resumed == [0, 1, 2, 3], "resume continues at the saved step"
    a = torch.load(full / "checkpoints" / "step_000004" / "state.pt", weights_only=False)
    b = torch.load(part / "checkpoints" / "step_000004" / "state.pt", weights_only=False)
    assert a["curriculum"]["order"] == b["curriculum"]["order"]
    assert a["curriculum"]["cursor"] == b["curriculum"]["cursor"] == 16
    # Exact resume: the resumed steps drew the same samples (sampling is reseeded from (seed, step)) and trained
    # to the same weights and optimizer state as the uninterrupted run, tensor for tensor.
    full_rows = [r for r in _metrics(full) if "reward_mean" in r]
    part_rows = [r for r in _metrics(part) if "reward_mean" in r]
    for key in ("reward_mean", "response_len_mean", "entropy", "grad_norm"):
        assert [r[key] for r in full_rows[2:]] == [r[key] for r in part_rows[2:]], key
    from safetensors.torch import load_file

    wa = load_file(str(full / "checkpoints/step_000004/model/model.safetensors"))
    wb = load_file(str(part / "checkpoints/step_000004/model/model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    moved = load_file(str(full / "checkpoints/step_000003/model/model.safetensors"))
    assert any(
        not torch.equal(wa[k], moved[k]) for k in wa
    )  # the comparison can fail: step 4 moved the weights

    def tensors(obj, out, prefix=""):
        if isinstance(obj, torch.Tensor):
            out[prefix] = obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                tensors(v, out, f"{prefix}/{k}")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                tensors(v, out, f"{prefix}/{i}")
        return out

    for fa in sorted((full / "checkpoints/step_000004/deepspeed").rglob("*.pt")):
        fb = part / fa.relative_to(full)
        ta = tensors(torch.load(fa, weights_only=False), {})
        tb = tensors(torch.load(fb, weights_only=False), {})
        assert ta.keys() == tb.keys() and ta, fa.name
        assert all(torch.equal(ta[k], tb[k]) for k in ta), fa.name  # optimizer moments included


@pytest.mark.slow
def test_failing_reward_plugins_do_not_crash(tiny_model, ray_cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "faults"
    funcs = (
        "rewards.functions=[{name: 'tests/support/toy_reward.py:sevens'}, "
        "{name: 'tests/support/toy_reward.py:flaky', weight: 0.5}]"
    )
    _run(
        tiny_model, out, funcs, total_steps=2, **{"curriculum.prompts_per_step": 2, "curriculum.n_samples": 4}
    )
    rows = [r for r in _metrics(out) if "reward_mean" in r]
    assert len(rows) == 2 and all(r["reward_failures"] == 4 for r in rows)  # half of 8 samples each step
    out2 = tmp_path / "broken"
    _run(
        tiny_model,
        out2,
        "rewards.functions=[{name: 'tests/support/toy_reward.py:broken'}]",
        total_steps=1,
        **{"curriculum.prompts_per_step": 2, "curriculum.n_samples": 2},
    )
    rows = [r for r in _metrics(out2) if "reward_failures" in r]
    assert rows[0]["reward_failures"] == 4


@pytest.mark.slow
def test_zero3_two_learners_with_kl(tiny_model, ray_cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "z3"
    _run(
        tiny_model,
        out,
        SEVENS,
        total_steps=2,
        **{
            "trainer.num_learners": 2,
            "trainer.zero_stage": 3,
            "algorithm.kl_coef": 0.05,
            "curriculum.prompts_per_step": 3,
            "curriculum.n_samples": 3,
            "trainer.micro_batch_size": 2,
        },
    )
    rows = [r for r in _metrics(out) if "reward_mean" in r]
    assert len(rows) == 2 and "kl" in rows[1] and rows[1]["sync/probe_diff"] < 0.01


@pytest.mark.slow
def test_gsm8k_recipe_smoke(tiny_model, ray_cluster, tmp_path, monkeypatch):
    """The real-use GSM8K recipe, shrunk to CPU: file data with the '####' extractor, ZeRO-2, KL, 2 rewards."""
    from tests.conftest import SHARED_DATA

    train_file = SHARED_DATA / "llm" / "gsm8k" / "train.jsonl"
    if not train_file.is_file():
        pytest.skip("shared GSM8K data not present")
    monkeypatch.chdir(ROOT)
    out = tmp_path / "gsm8k"
    overrides = tiny_overrides(
        tiny_model,
        out,
        **{
            "total_steps": 1,
            "data.source": str(train_file),
            "data.max_rows": 8,
            "rollout.num_workers": 1,
            "rollout.gpus_per_worker": 0,
            "trainer.num_learners": 1,
            "trainer.gpus_per_learner": 0,
            "rollout.max_model_len": 1536,
            "rollout.enforce_eager": True,
            "rollout.kv_cache_gb": 0.25,
            "curriculum.prompts_per_step": 2,
            "curriculum.n_samples": 2,
            "model.gradient_checkpointing": False,
            "eval.num_prompts": 2,
            "checkpoint.every": 0,
        },
    )
    train(load_recipe(ROOT / "recipes" / "grpo_gsm8k.yaml", overrides))
    rows = _metrics(out)
    assert rows[0]["num_samples"] == 4 and "kl" in rows[0] and any("eval/accuracy" in r for r in rows)
