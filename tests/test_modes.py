"""Preference and supervised modes through the real loop (Ray actors, DeepSpeed learners, vLLM for online):
offline runs start no rollout workers, DPO on the bundled UltraFeedback pairs raises held-out reward accuracy,
SFT lowers held-out NLL, online DPO runs on the normal loop with weight sync, bad rows fail naming the row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launch.config import load_recipe
from launch.train import train
from tests.conftest import SHARED_DATA, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
UF = SHARED_DATA / "llm" / "ultrafeedback_binarized_500" / "train_prefs.jsonl"


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _evals(out: Path, key: str) -> list[float]:
    return [r[key] for r in _rows(out) if key in r]


def _echo_pairs(src: Path, dst: Path) -> Path:
    """Preference pairs from the bundled worked additions: the worked solution is chosen, the question's own
    expression ("51 + 29", the reward hack the default recipe once learned) is rejected."""
    rows = [json.loads(line) for line in src.read_text().splitlines()]
    out = [
        {"question": r["question"], "chosen": r["solution"], "rejected": r["question"][8:-1]} for r in rows
    ]
    dst.write_text("".join(json.dumps(r) + "\n" for r in out))
    return dst


@pytest.mark.slow
def test_offline_dpo_raises_heldout_reward_accuracy(tiny_model, ray_cluster, tmp_path, monkeypatch):
    """The learning test: DPO on pairs built from the bundled arithmetic data raises the held-out reward
    accuracy (pairs of problems never trained on) from chance to near 1, on the real learners, with no
    rollout workers; the reference log-probs come from the once-per-row cache."""
    monkeypatch.chdir(ROOT)
    data = ROOT / "recipes" / "data"
    train_file = _echo_pairs(data / "arith_solutions_train.jsonl", tmp_path / "pairs_train.jsonl")
    _echo_pairs(data / "arith_solutions_test.jsonl", tmp_path / "pairs_test.jsonl")
    out = tmp_path / "dpo"
    over = tiny_overrides(
        tiny_model,
        out,
        **{
            "total_steps": 8,
            "trainer.lr": 1e-3,
            "data.source": str(train_file),
            "data.prompt_field": "question",
            "curriculum.prompts_per_step": 16,
            "eval.num_prompts": 64,
            "eval.every": 4,
            "eval.at_start": True,
        },
    )
    train(load_recipe(ROOT / "recipes" / "dpo_tiny_cpu.yaml", over))
    steps = [r for r in _rows(out) if "loss/dpo" in r]
    assert len(steps) == 8 and not any("time/weight_sync" in r for r in steps)  # no rollout workers
    acc = _evals(out, "eval/pref/accuracy")
    margin = _evals(out, "eval/pref/margin")
    assert margin[0] == pytest.approx(0.0, abs=1e-6)  # fp32, policy = reference: no pair won yet
    assert acc[0] <= 0.5 and acc[-1] >= 0.9, acc
    assert margin[-1] > 0.5, margin


@pytest.mark.slow
def test_offline_dpo_ultrafeedback_smoke(tiny_model, ray_cluster, tmp_path, monkeypatch):
    """The shipped DPO recipe on the real UltraFeedback pairs (chat message lists, a row with an empty
    response skipped and counted, long answers truncated). A tiny char-level model does not learn these
    preferences (held-out accuracy stays near chance), so this checks the mechanics only."""
    if not UF.is_file():
        pytest.skip("shared UltraFeedback data not present")
    monkeypatch.chdir(ROOT)
    out = tmp_path / "dpo_uf"
    over = tiny_overrides(
        tiny_model,
        out,
        **{
            "total_steps": 2,
            "rollout.max_model_len": 512,
            "data.max_rows": 64,
            "eval.num_prompts": 8,
            "eval.at_start": True,
        },
    )
    train(load_recipe(ROOT / "recipes" / "dpo_tiny_cpu.yaml", over))
    rows = _rows(out)
    assert [r["data/skipped_rows"] for r in rows if "data/skipped_rows" in r] == [1.0]  # row 50 is empty
    steps = [r for r in rows if "loss/dpo" in r]
    assert len(steps) == 2 and all(r["data/truncated_responses"] > 0 for r in steps)
    assert _evals(out, "eval/pref/margin")[0] == pytest.approx(0.0, abs=1e-6)


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_sft_learns_and_strict_eval_catches_an_echoing_policy(tiny_model, ray_cluster, tmp_path, monkeypatch):
    """SFT teaches the tiny model to answer "What is 37 + 45?" with the question's own "37 + 45" (the hack the
    default recipe once learned); the default recipe's held-out metric must score that 0 (the lenient check
    would score it 1) and the guard must flag it."""
    monkeypatch.chdir(ROOT)
    q = "What is 37 + 45?"
    train_file = _jsonl(tmp_path / "echo_train.jsonl", [{"question": q, "response": "37 + 45"}] * 32)
    _jsonl(tmp_path / "echo_test.jsonl", [{"question": q, "response": "37 + 45"}] * 8)
    sft_out = tmp_path / "sft"
    template = "prompt.template='{text} Give the final answer as a number.'"
    over = tiny_overrides(
        tiny_model,
        sft_out,
        **{
            "total_steps": 40,
            "trainer.lr": 1e-3,
            "data.source": str(train_file),
            "data.response_field": "response",
            "eval.num_prompts": 8,
            "eval.every": 20,
        },
    )
    train(load_recipe(ROOT / "recipes" / "sft_tiny_cpu.yaml", [*over, template]))
    nll = _evals(sft_out, "eval/loss/nll")
    assert nll[-1] < 0.1 * nll[0], f"held-out NLL did not fall: {nll}"
    assert not any("time/weight_sync" in r for r in _rows(sft_out))  # offline: no rollout workers
    echo_model = sft_out / "checkpoints" / "step_000040" / "model"

    eval_file = _jsonl(tmp_path / "echo_eval.jsonl", [{"question": q, "answer": "82"}] * 8)
    for strict in (True, False):
        out = tmp_path / f"default_strict_{strict}"
        over = tiny_overrides(
            str(echo_model),
            out,
            **{
                "total_steps": 1,
                "curriculum.prompts_per_step": 2,
                "curriculum.n_samples": 2,
                "eval.num_prompts": 8,
                "eval.source": str(eval_file),
                "eval.at_start": True,
                "eval.answer_check.kwargs.strict": str(strict).lower(),
            },
        )
        train(load_recipe(ROOT / "recipes" / "grpo_default.yaml", over))
        acc = _evals(out, "eval/accuracy")
        copied = _evals(out, "eval/monitor/copied_expression")
        samples = [json.loads(line) for line in (out / "eval" / "step_000000.jsonl").read_text().splitlines()]
        echoed = sum("37 + 45" in s["completion"] for s in samples)
        assert echoed >= 6, [s["completion"] for s in samples]  # the policy does echo
        assert copied[0] >= 0.75
        if strict:  # the default: the echo is wrong
            assert acc[0] == 0.0 and not any(s["correct"] for s in samples)
        else:  # the explicit lenient option shows what the strict check prevents
            assert acc[0] >= 0.75


@pytest.mark.slow
def test_online_dpo_recipe_smoke(tiny_model, ray_cluster, tmp_path, monkeypatch):
    """Online DPO on the normal loop: vLLM samples, the reward ranks, DPO against the initial policy, weight sync."""
    monkeypatch.chdir(ROOT)
    out = tmp_path / "online_dpo"
    over = tiny_overrides(
        tiny_model,
        out,
        **{
            "total_steps": 2,
            "rollout.max_new_tokens": 8,
            "curriculum.prompts_per_step": 4,
            "curriculum.n_samples": 4,
            "trainer.lr": 1e-3,
        },
    )
    sevens = "rewards.functions=[{name: 'tests/support/toy_reward.py:sevens'}]"  # graded, so samples differ
    train(load_recipe(ROOT / "recipes" / "online_dpo_tiny_cpu.yaml", [*over, sevens]))
    steps = [r for r in _rows(out) if "reward_mean" in r]
    assert len(steps) == 2
    for r in steps:
        assert r["sync/probe_diff"] < 0.01  # weights pushed to vLLM and verified
        assert r["pref/lists"] + r["pref/uniform_dropped"] == 4  # one pair per prompt, or dropped (all tied)
    assert any("loss/dpo" in r for r in steps)
