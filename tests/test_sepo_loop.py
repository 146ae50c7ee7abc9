"""SePO's whole chain through the real components (Ray actors, DeepSpeed learners; tiny model): SFT of the
oracle's reference → DPO oracle → the offline scoring pass in Ray actors (resumable, refusing stale settings)
→ policy training on the selected tokens with no reference model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launch.config import ConfigError, load_recipe, needed_roles
from launch.score_tokens import score_tokens
from launch.train import train
from tests.conftest import tiny_overrides
from tests.test_modes import _echo_pairs

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_sepo_chain_runs_on_the_real_learners(tiny_model, ray_cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    data = ROOT / "recipes" / "data"
    pairs = _echo_pairs(data / "arith_solutions_train.jsonl", tmp_path / "pairs_train.jsonl")
    _echo_pairs(data / "arith_solutions_test.jsonl", tmp_path / "pairs_test.jsonl")
    common = {
        "data.source": str(pairs),
        "data.prompt_field": "question",
        "data.max_rows": 24,
        "curriculum.prompts_per_step": 8,
    }
    ref, oracle, masks, policy = (tmp_path / n for n in ("ref", "oracle", "masks", "policy"))
    train(
        load_recipe(
            ROOT / "recipes/sepo_ref_sft_tiny_cpu.yaml",
            tiny_overrides(tiny_model, ref, **common, total_steps=1),
        )
    )
    over = tiny_overrides(str(ref), oracle, **common, total_steps=2, **{"trainer.lr": 1e-3})
    train(load_recipe(ROOT / "recipes/sepo_oracle_dpo_tiny_cpu.yaml", over))  # model.path = a run folder

    sepo_over = tiny_overrides(
        tiny_model,
        policy,
        **common,
        total_steps=2,
        **{
            "strategy.options.masks": str(masks),
            "strategy.options.oracle": str(oracle),
            "strategy.options.oracle_reference": str(ref),
            "strategy.options.shard_rows": 10,
            "strategy.options.score_threads": 1,
            "eval.num_prompts": 8,
            "eval.at_start": True,
        },
    )
    cfg = load_recipe(ROOT / "recipes/sepo_tiny_cpu.yaml", sepo_over)
    assert needed_roles(cfg) == {}  # reference-free: no frozen model is loaded at training time
    score_tokens(cfg)
    manifest = json.loads((masks / "manifest.json").read_text())
    assert manifest["complete"] and manifest["rows"] == {"train": 24}
    shards = sorted(masks.glob("train-*.jsonl"))
    assert len(shards) == 3
    recs = [json.loads(line) for s in shards for line in s.read_text().splitlines()]
    for r in recs:
        for resp in r["responses"]:
            assert (
                len(resp["selected"]) == max(1, int(0.3 * resp["len"])) and len(resp["reward"]) == resp["len"]
            )

    # resumable: a lost shard is rescored alone; other settings are refused unless forced
    lost = shards[1].read_text()
    shards[1].unlink()
    score_tokens(cfg)
    assert shards[1].read_text() == lost  # same models, same tokens: the same records
    changed = load_recipe(ROOT / "recipes/sepo_tiny_cpu.yaml", [*sepo_over, "strategy.options.ratio=0.5"])
    with pytest.raises(ConfigError, match="ratio"):
        score_tokens(changed)

    train(cfg)
    rows = [json.loads(line) for line in (policy / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss/simpo" in r]
    assert len(steps) == 2
    assert all(0.25 <= r["sepo/token_share"] <= 0.4 for r in steps), [r["sepo/token_share"] for r in steps]
    assert not any("time/weight_sync" in r for r in steps)  # offline: no rollout workers
    assert [r for r in rows if "eval/pref/accuracy" in r]  # held-out eval on full responses
