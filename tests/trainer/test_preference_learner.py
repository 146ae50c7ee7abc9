"""Pairs on the real learners (DeepSpeed over gloo, Ray actors): a pair is never split, the gradient does not
depend on how pairs are packed into micro-batches or spread over ranks, and cached reference log-probs give
the same loss as the reference model computed on the fly."""

from __future__ import annotations

import pytest
import torch

from trainer.batch import LossTerm, TrainBatch, collate

pytestmark = pytest.mark.slow

PAIRS = [("1+2", "3", "4"), ("3+4", "7", "8!"), ("5+6", "11", "12"), ("2+2", "4", "5"), ("9+1", "10", "1")]


def _pair_batch(tok, interleave: bool = False) -> TrainBatch:
    """Five DPO pairs; with ``interleave`` the rows of a pair are not adjacent (all chosen, then all rejected)."""
    rows = []
    for g, (q, good, bad) in enumerate(PAIRS):
        p = list(tok(f"<user>{q}\n<assistant>", add_special_tokens=False)["input_ids"])
        rows += [(g, 0, p, good), (g, 1, p, bad)]
    if interleave:
        rows.sort(key=lambda r: (r[1], r[0]))
    col = collate(
        [r[2] for r in rows], [list(tok(r[3], add_special_tokens=False)["input_ids"]) for r in rows], 0
    )
    group = torch.tensor([r[0] for r in rows])
    rank = torch.tensor([r[1] for r in rows])
    term = LossTerm("dpo", 1.0, col.response_mask, {"group": group, "rank": rank}, {"beta": 0.5})
    return TrainBatch(col.input_ids, col.attention_mask, [term], groups=group)


def _spec(model: str, mbs: int):
    from trainer.learner import LearnerSpec

    return LearnerSpec(
        model_path=model, dtype="float32", lr=1e-2, micro_batch_size=mbs, need_ref=True, threads=1
    )


def _one_step(model: str, tok, mbs: int, world: int, interleave: bool = False) -> tuple[dict, list[float]]:
    from trainer.group import LearnerGroup

    group = LearnerGroup(_spec(model, mbs), num_learners=world)
    try:
        batch = _pair_batch(tok, interleave)
        before = group.evaluate(batch, pad_id=0)
        m = group.train(batch, pad_id=0)
        after = group.evaluate(batch, pad_id=0)
        _, probe = group.export_weights(list(range(5, 20)))
        return {"grad_norm": m["grad_norm"], "before": before, "after": after}, probe
    finally:
        group.shutdown()


def test_pairs_are_never_split(tiny_model, ray_cluster):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    one, probe_one = _one_step(tiny_model, tok, mbs=16, world=1)  # all five pairs in one micro-batch
    # micro_batch_size 1: every pair still forms one micro-batch of its two rows
    split, probe_split = _one_step(tiny_model, tok, mbs=1, world=1, interleave=True)
    assert split["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-4)
    assert probe_split == pytest.approx(probe_one, abs=1e-5)
    # at the start the policy is the reference: every log-ratio is 0, no pair is "won" yet
    assert one["before"]["pref/margin"] == pytest.approx(0.0, abs=1e-6)
    assert one["after"]["pref/margin"] > 0 and one["after"]["pref/accuracy"] > 0.5
    # two ranks with unequal shares (5 pairs + 1 padded unit): same update as one rank, no deadlock
    _, probe_two = _one_step(tiny_model, tok, mbs=1, world=2, interleave=True)
    assert probe_two == pytest.approx(probe_one, abs=1e-4)


def test_cached_reference_equals_on_the_fly(tiny_model, ray_cluster):
    from transformers import AutoTokenizer

    from trainer.group import LearnerGroup

    tok = AutoTokenizer.from_pretrained(tiny_model)
    group = LearnerGroup(_spec(tiny_model, 4), num_learners=1)
    try:
        batch = _pair_batch(tok)
        group.train(batch, pad_id=0)  # move the policy away from the reference
        live = group.evaluate(batch, pad_id=0)
        cached = _pair_batch(tok)
        cached.ref_logprobs = group.reference_logprobs(batch)
        assert group.evaluate(cached, pad_id=0) == pytest.approx(live, rel=1e-6, abs=1e-7)
        assert live["pref/margin"] != pytest.approx(0.0, abs=1e-4)  # the comparison is not vacuous
    finally:
        group.shutdown()
