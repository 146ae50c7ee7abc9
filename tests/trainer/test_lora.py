"""LoRA on the learners (trainer/lora.py), real DeepSpeed learners in Ray and the real loop with vLLM.

(a) Only adapters train; the base stays bit-identical; the reference (adapters off) is the initial model; the
    exported weights are the merged ones under the base model's names; checkpoints hold a peft adapter and
    resume restores it. ZeRO-0 (1 rank) and ZeRO-3 (2 ranks); ZeRO-2 runs in the loop test.
(b) The default recipe with ``model.lora.enabled=true`` (ZeRO-2, gradient checkpointing): the vLLM engine's
    greedy answers change after the LoRA updates, the weight-sync probe passes, the checkpoint has the adapter
    (and the merged model).
Fast: the merge equals peft's own ``merge_and_unload`` without touching the model; config errors name the key.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from trainer.batch import LossTerm, TrainBatch, collate

ROOT = Path(__file__).resolve().parents[2]
PROBE = [5, 6, 7, 8, 9, 10, 11, 12]


def _batch(tok) -> TrainBatch:
    prompts = [
        list(tok(f"<user>{a}+{b}\n<assistant>", add_special_tokens=False)["input_ids"])
        for a, b in [(1, 2), (3, 4), (5, 6)]
    ]
    resp = [list(tok(t, add_special_tokens=False)["input_ids"]) for t in ["3", "7!", "11"]]
    col = collate(prompts, resp, pad_id=0)
    terms = [
        LossTerm("policy_gradient", 1.0, col.response_mask, {"advantages": torch.tensor([1.0, -1.0, 0.5])}),
        LossTerm("nll", 0.5, col.response_mask),
        LossTerm("kl", 0.1, col.response_mask),  # needs the reference: the policy with adapters disabled
    ]
    return TrainBatch(col.input_ids, col.attention_mask, terms)


def _optimizer_params(learner) -> tuple[int, int]:
    """(parameters the optimizer holds, adapter parameters) on this rank (runs in the learner actor)."""
    opt = getattr(learner.optimizer, "optimizer", learner.optimizer)
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    adapters = {id(p) for n, p in learner.engine.module.named_parameters() if ".lora_" in n}
    return len(held), len(held & adapters)


def _probe(model, ids: list[int]) -> list[float]:
    from trainer.learner import token_logprobs

    x = torch.tensor([ids])
    with torch.no_grad():
        return token_logprobs(model, x, torch.ones_like(x))[0][0, 1:].tolist()


def test_merged_state_dict_matches_peft_merge_and_leaves_model_alone(tiny_model):
    from transformers import AutoModelForCausalLM

    from trainer.lora import LoraSpec, merged_state_dict, wrap

    torch.manual_seed(0)
    model = wrap(
        AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32), LoraSpec(r=4, alpha=8)
    )
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".lora_B." in n:
                p.normal_(0, 0.05)  # B starts at zero: give the adapters an effect
    assert all(p.requires_grad == (".lora_" in n) for n, p in model.named_parameters())
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    merged = merged_state_dict(model, sd)
    assert all(torch.equal(v, sd[k]) for k, v in model.state_dict().items()), "the merge touched the model"
    reference = model.merge_and_unload().state_dict()
    assert set(merged) == set(reference)
    for k, v in reference.items():
        assert torch.allclose(merged[k], v, atol=1e-6), k


def test_lora_config_errors_name_the_key():
    from launch.config import ConfigError, load_recipe

    default = ROOT / "recipes" / "grpo_default.yaml"
    for key, value in [("r", 0), ("alpha", 0), ("dropout", 1.0), ("target_modules", "[]")]:
        with pytest.raises(ConfigError, match=f"model.lora.{key}:") as e:
            load_recipe(default, ["model.lora.enabled=true", f"model.lora.{key}={value}"])
        assert "\n" not in str(e.value)
    assert load_recipe(default, ["model.lora.r=0"]).model.lora.r == 0  # not checked while disabled


@pytest.mark.slow
@pytest.mark.parametrize("stage,world", [(0, 1), (3, 2)], ids=["zero0", "zero3x2"])
def test_lora_learner_adapters_reference_export_checkpoint(tiny_model, ray_cluster, tmp_path, stage, world):
    import ray
    from peft import PeftModel
    from safetensors.torch import load
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.group import LearnerGroup
    from trainer.learner import LearnerSpec, token_logprobs
    from trainer.lora import LoraSpec

    tok = AutoTokenizer.from_pretrained(tiny_model)
    batch = _batch(tok)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    base_sd = {k: v.clone() for k, v in base.state_dict().items()}
    with torch.no_grad():
        initial_lp = token_logprobs(base, batch.input_ids, batch.attention_mask)[0]
    spec = LearnerSpec(
        model_path=tiny_model,
        dtype="float32",
        zero_stage=stage,
        lr=1e-2,
        micro_batch_size=2,
        need_ref=True,
        threads=1,
        lora=LoraSpec(r=4, alpha=8, target_modules=("q_proj", "v_proj", "up_proj")),
    )
    group = LearnerGroup(spec, num_learners=world)
    try:
        before = group.call("_gathered_state_dict")[0]
        if stage == 0:
            held, adapters = group.call("run", "tests.trainer.test_lora:_optimizer_params")[0]
            assert held == adapters == 2 * 3 * 2, "the optimizer holds exactly the adapters (A, B, 3 × 2)"
        for _ in range(3):
            m = group.train(batch, pad_id=0)
        assert m["nan_skipped"] == 0 and "kl" in m
        after = group.call("_gathered_state_dict")[0]
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        assert changed, "nothing trained"
        assert all(".lora_" in k for k in changed), f"base weights moved: {sorted(changed)[:4]}"
        assert {k for k in after if ".lora_B." in k} <= changed

        # the reference is the initial model (adapters disabled), though the policy has moved
        ref_lp = group.reference_logprobs(batch)
        assert torch.allclose(ref_lp, initial_lp, atol=1e-5)

        # exported weights: merged, under the base model's names, differing exactly in the adapted layers
        blob_ref, learner_probe = group.export_weights(PROBE)
        merged = load(ray.get(blob_ref))
        assert set(merged) - {"lm_head.weight"} == set(base_sd) - {"lm_head.weight"}
        adapted = {k for k in merged if k.endswith(("q_proj.weight", "v_proj.weight", "up_proj.weight"))}
        assert len(adapted) == 6
        for k, v in base_sd.items():
            assert torch.equal(merged[k], v) != (k in adapted), k
        assert learner_probe != pytest.approx(_probe(base, PROBE), abs=1e-4), "the policy did not move"
        hf = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
        hf.load_state_dict(merged, strict=False)
        assert _probe(hf, PROBE) == pytest.approx(learner_probe, abs=1e-5)

        # checkpoint: a peft adapter (no merged model without save_merged) that reproduces the policy
        ckpt = tmp_path / "ckpt"
        group.save(str(ckpt))
        assert (ckpt / "adapter" / "adapter_config.json").is_file()
        assert (ckpt / "adapter" / "adapter_model.safetensors").is_file()
        assert not (ckpt / "model").exists()
        fresh = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
        peft_model = PeftModel.from_pretrained(fresh, str(ckpt / "adapter")).eval()
        assert _probe(peft_model, PROBE) == pytest.approx(learner_probe, abs=1e-5)
        # resume: adapters and optimizer state come back from the DeepSpeed checkpoint
        group.train(batch, pad_id=0)
        assert group.export_weights(PROBE)[1] != pytest.approx(learner_probe, abs=1e-6)
        group.load(str(ckpt))
        assert group.export_weights(PROBE)[1] == pytest.approx(learner_probe, abs=1e-6)
    finally:
        group.shutdown()


@pytest.mark.slow
def test_lora_loop_changes_generations_and_syncs(tiny_model, ray_cluster, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    from launch.config import load_recipe
    from launch.train import train
    from tests.conftest import tiny_overrides

    monkeypatch.chdir(ROOT)
    out = tmp_path / "lora"
    overrides = tiny_overrides(
        tiny_model,
        out,
        **{
            "model.lora.enabled": True,
            "model.lora.save_merged": True,
            "model.gradient_checkpointing": True,  # frozen embeddings: gradients must still reach the adapters
            "trainer.zero_stage": 2,
            "trainer.lr": 3e-2,
            "total_steps": 3,
            "curriculum.prompts_per_step": 2,
            "curriculum.n_samples": 4,
            "eval.num_prompts": 4,
            "eval.at_start": True,
            "eval.every": 0,
        },
    )
    sevens = "rewards.functions=[{name: 'tests/support/toy_reward.py:sevens'}]"  # varies on a random model
    cfg = load_recipe(ROOT / "recipes" / "grpo_default.yaml", [*overrides, sevens])
    assert cfg.model.lora.enabled
    train(cfg)

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "sync/probe_diff" in r]
    assert len(steps) == 3 and all(r["sync/probe_diff"] < 0.01 for r in steps)
    greedy = {
        name: [json.loads(line)["completion"] for line in (out / "eval" / name).read_text().splitlines()]
        for name in ("step_000000.jsonl", "step_000003.jsonl")
    }
    assert greedy["step_000000.jsonl"] != greedy["step_000003.jsonl"], "the engine's answers did not change"

    ckpt = out / "checkpoints" / "step_000003"
    assert (ckpt / "adapter" / "adapter_config.json").is_file()
    assert json.loads((ckpt / "adapter" / "adapter_config.json").read_text())["r"] == 8
    merged = AutoModelForCausalLM.from_pretrained(ckpt / "model")  # save_merged: an HF folder too
    assert merged.config.vocab_size > 0
