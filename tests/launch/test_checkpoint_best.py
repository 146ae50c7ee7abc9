"""checkpoint.best_metric: config checks (fast), CheckpointManager.keep_best on a real learner group and
the driver with eval.k samples (slow)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

from launch.checkpoint import CheckpointManager
from launch.config import ConfigError, load_recipe

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["eval.k=-1"], "eval.k: -1 must be >= 0"),
        (["eval.k=4", "rollout.temperature=0"], "eval.k: samples need rollout.temperature > 0"),
        (["checkpoint.best_mode=avg"], "checkpoint.best_mode: 'avg' is not max or min"),
        (
            ["checkpoint.best_metric=reward_mean"],
            "checkpoint.best_metric: 'reward_mean' is not an eval metric",
        ),
        (
            ["checkpoint.best_metric=eval/accuracy", "eval.num_prompts=0"],
            "checkpoint.best_metric: needs evaluation",
        ),
        (["checkpoint.best_metric=eval/pass@8", "eval.k=4"], "'eval/pass@8' needs eval.k: 8 (eval.k is 4)"),
    ],
)
def test_bad_eval_and_best_settings_fail_in_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        load_recipe(None, overrides)
    assert "\n" not in str(e.value)


def test_good_eval_and_best_settings_load():
    cfg = load_recipe(None, ["eval.k=8", "checkpoint.best_metric=eval/pass@8", "checkpoint.best_mode=max"])
    assert (cfg.eval.k, cfg.checkpoint.best_metric) == (8, "eval/pass@8")
    assert load_recipe(None, []).checkpoint.best_metric is None and load_recipe(None, []).eval.k == 0


def test_keep_best_without_a_metric_writes_nothing(tmp_path):
    # these paths never reach the learners (None here): nothing to save
    assert CheckpointManager(str(tmp_path)).keep_best(1, {"eval/accuracy": 0.5}, None) == {}
    ckpt = CheckpointManager(str(tmp_path), best_metric="eval/accuracy")
    assert ckpt.keep_best(1, {"eval/reward_mean": 0.5}, None) == {}  # this eval did not log it
    assert ckpt.keep_best(1, {"eval/accuracy": math.nan}, None) == {}  # NaN never wins
    assert not (tmp_path / "checkpoints" / "best").exists()
    low = CheckpointManager(str(tmp_path), best_metric="eval/nll", best_mode="min")
    assert low.is_better(0.3, 0.5) and not low.is_better(0.5, 0.3) and low.is_better(9.0, None)
    assert ckpt.is_better(0.5, 0.3) and not ckpt.is_better(0.3, 0.3)
    with pytest.raises(ValueError, match="best_mode"):
        CheckpointManager(str(tmp_path), best_mode="avg")


def _digest(folder: Path) -> str:
    return hashlib.sha256((folder / "model" / "model.safetensors").read_bytes()).hexdigest()


@pytest.mark.slow
def test_keep_best_copies_the_model_only_when_the_metric_improves(tiny_model, ray_cluster, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.batch import LossTerm, TrainBatch, collate
    from trainer.group import LearnerGroup
    from trainer.learner import LearnerSpec

    learners = LearnerGroup(
        LearnerSpec(model_path=tiny_model, dtype="float32", lr=5e-2, threads=1, micro_batch_size=4), 1
    )
    tok = AutoTokenizer.from_pretrained(tiny_model)
    p = list(tok("<user>What is 12+7?\n<assistant>", add_special_tokens=False)["input_ids"])
    r = list(tok("777777", add_special_tokens=False)["input_ids"])
    col = collate([p, p], [r, r[:3]], pad_id=0)
    batch = TrainBatch(col.input_ids, col.attention_mask, [LossTerm("nll", 1.0, col.response_mask)])
    root = tmp_path / "checkpoints"
    try:
        ckpt = CheckpointManager(
            str(tmp_path), keep_last=1, save_optimizer=False, best_metric="eval/accuracy"
        )
        assert ckpt.keep_best(1, {"eval/accuracy": 0.2}, learners) == {"best/eval/accuracy": 0.2}
        first = _digest(root / "best")
        learners.train(batch, pad_id=0)  # the weights move
        assert ckpt.keep_best(2, {"eval/accuracy": 0.1}, learners) == {"best/eval/accuracy": 0.2}
        assert _digest(root / "best") == first, "a worse eval must not replace the best copy"
        assert ckpt.keep_best(3, {"eval/accuracy": 0.5}, learners) == {"best/eval/accuracy": 0.5}
        assert _digest(root / "best") != first, "a better eval copies the current weights"
        assert json.loads((root / "best" / "best.json").read_text()) == {
            "metric": "eval/accuracy",
            "mode": "max",
            "value": 0.5,
            "step": 3,
        }
        assert sorted(p.name for p in root.iterdir()) == ["best"]  # no temporary folders left
        ckpt.save(4, learners, {})
        ckpt.save(5, learners, {})  # keep_last=1 prunes step checkpoints, never best
        assert (root / "best" / "model").is_dir() and not (root / "step_000004").exists()
        again = CheckpointManager(str(tmp_path), best_metric="eval/accuracy")  # a resumed run
        assert again.keep_best(6, {"eval/accuracy": 0.4}, learners) == {"best/eval/accuracy": 0.5}
        assert again.best()["step"] == 3
        assert AutoModelForCausalLM.from_pretrained(root / "best" / "model").config.vocab_size == len(tok)
    finally:
        learners.shutdown()


@pytest.mark.slow
def test_train_logs_sampled_eval_and_keeps_best(tiny_model, ray_cluster, tmp_path, monkeypatch):
    from launch.train import train
    from tests.conftest import tiny_overrides

    monkeypatch.chdir(ROOT)
    out = tmp_path / "run"
    extra = {
        "total_steps": 2,
        "curriculum.prompts_per_step": 2,
        "curriculum.n_samples": 2,
        "rollout.max_new_tokens": 6,
        "eval.num_prompts": 3,
        "eval.every": 1,
        "eval.k": 2,
        "checkpoint.best_metric": "eval/pass@2",
    }
    train(load_recipe(ROOT / "recipes" / "grpo_default.yaml", tiny_overrides(tiny_model, out, **extra)))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/pass@2" in r]
    assert len(evals) == 3 and all(0 <= r["eval/avg@2"] <= r["eval/pass@2"] <= 1 for r in evals)
    assert all(
        r["best/eval/pass@2"] == max(e["eval/pass@2"] for e in evals[: i + 1]) for i, r in enumerate(evals)
    )
    best = json.loads((out / "checkpoints" / "best" / "best.json").read_text())
    assert best["metric"] == "eval/pass@2" and best["step"] in (0, 1, 2)  # grpo_default evaluates at start
    assert (out / "checkpoints" / "best" / "model" / "config.json").is_file()
    sampled = [
        json.loads(line) for line in (out / "eval" / "step_000001_sampled.jsonl").read_text().splitlines()
    ]
    assert len(sampled) == 3 * 2 and [s["sample"] for s in sampled] == [0, 1] * 3
    assert len((out / "eval" / "step_000001.jsonl").read_text().splitlines()) == 3  # greedy file unchanged
