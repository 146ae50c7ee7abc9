"""Per-prompt gradient moments (CurES's paper estimator) on a real tiny Llama: parameter subsets, per-sample
gradients against a brute-force backward, the learner entry point split over two ranks, and the curriculum
fed by it."""

import math
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from trainer.batch import LossTerm, TrainBatch, collate
from trainer.grad_stats import prompt_grad_moments, sample_gradient, select_params


def make_model(tied: bool):
    from tests.support.tiny import tiny_llama_module

    return tiny_llama_module(vocab_size=130, layers=3, tied=tied)


@pytest.fixture(scope="module")
def model():
    return make_model(tied=False)


def batch():
    col = collate([[3, 4, 5], [6, 7], [3, 9]], [[8, 9, 9, 10], [11, 12], [13]], pad_id=0)
    return TrainBatch(col.input_ids, col.attention_mask, [LossTerm("nll", 1.0, col.response_mask)])


def test_select_params(model):
    last = [n for n, _ in select_params(model, "last_block")]
    assert last and all(".layers.2." in n or n in ("model.norm.weight", "lm_head.weight") for n in last)
    assert "lm_head.weight" in last and "model.norm.weight" in last
    assert not any(".layers.1." in n or "embed" in n for n in last)
    assert len(select_params(model, ["all"])) == len(list(model.parameters()))
    assert [n for n, _ in select_params(model, ["*mlp.down_proj*"])] == [
        f"model.layers.{i}.mlp.down_proj.weight" for i in range(3)
    ]
    with pytest.raises(ValueError, match="no trained parameter matches"):
        select_params(model, ["nothing*"])
    tied = make_model(tied=True)
    assert "model.embed_tokens.weight" not in [n for n, _ in select_params(tied, "last_block")]
    tied.model.layers[2].requires_grad_(False)  # frozen parameters never count (LoRA: only the adapters)
    names = [n for n, _ in select_params(tied, "last_block")]
    assert "model.norm.weight" in names and all(".layers.1." in n for n in names if n != "model.norm.weight")


def test_sample_gradient_matches_a_padded_batch_backward(model):
    """Row r's gradient from one unpadded forward equals the gradient of row r's masked log-prob sum taken
    through the right-padded batch: the mask lines up with the shifted next-token log-probs."""
    b = batch()
    params = [p for _, p in select_params(model, "last_block")]
    for r in range(b.num_rows):
        keep = b.attention_mask[r].bool()
        got = sample_gradient(model, params, b.input_ids[r][keep], b.terms[0].mask[r][keep])
        logits = model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits[:, :-1].float()
        lp = torch.log_softmax(logits, -1).gather(-1, b.input_ids[:, 1:, None]).squeeze(-1)
        ref = torch.autograd.grad((lp[r] * b.terms[0].mask[r, 1:]).sum(), params)
        ref = torch.cat([g.reshape(-1) for g in ref])
        assert torch.allclose(got, ref, atol=1e-5), r
        assert got.norm() > 0


def learner(model, rank, world=2):
    spec = SimpleNamespace(temperature=1.0, zero_stage=0, micro_batch_size=4)
    return SimpleNamespace(
        rank=rank, world=world, engine=SimpleNamespace(module=model), device="cpu", spec=spec
    )


def test_prompt_grad_moments_over_two_ranks(model):
    b = batch()
    groups, correct = [0, 1, 0], [True, False, False]
    parts = [prompt_grad_moments(learner(model, r), b, groups, correct, ["last_block"]) for r in range(2)]
    assert [g for g, _ in parts[0]] == [0] and [g for g, _ in parts[1]] == [1]  # whole prompts per rank
    params = [p for _, p in select_params(model, "last_block")]
    vec = []
    for r in range(3):
        keep = b.attention_mask[r].bool()
        vec.append(sample_gradient(model, params, b.input_ids[r][keep], b.terms[0].mask[r][keep]))
    m0 = parts[0][0][1]
    assert m0["d2"] == pytest.approx(float((vec[0] - vec[2]).pow(2).sum()), rel=1e-5)
    assert m0["q1"] == pytest.approx(float(vec[0].pow(2).sum()), rel=1e-5)
    m1 = parts[1][0][1]
    assert (m1["n1"], m1["n0"]) == (0, 1) and math.isnan(m1["d2"])
    assert model.training is False
    with pytest.raises(NotImplementedError, match="zero_stage"):
        zero3 = learner(model, 0)
        zero3.spec.zero_stage = 3
        prompt_grad_moments(zero3, b, groups, correct, ["last_block"])


class LocalLearners:
    """Runs ``Learner.run`` functions on stand-in ranks that hold a real model (two ranks, one process)."""

    world = 2

    def __init__(self, model):
        self.model, self.fns = model, []

    def call(self, method, fn, *args):
        from launch.components import import_object

        assert method == "run"
        self.fns.append(fn)
        return [import_object(fn)(learner(self.model, r), *args) for r in range(self.world)]


def test_cures_gradient_estimator_uses_the_vector_cross_term(model):
    from curricula.cures import CuresOptions
    from tests.curricula.test_cures import make, rollout

    learners = LocalLearners(model)
    cur = make(CuresOptions(num_subsets=1, cold_start_samples=6, grad_norms_in_steps=True), learners=learners)
    reqs = cur.next_batch(0)
    assert learners.fns == ["trainer.grad_stats:prompt_grad_moments"]
    both = (cur.est.n1 > 0) & (cur.est.n0 > 0)
    assert both.any() and np.isfinite(cur.est.d2[both]).all() and np.isnan(cur.est.d2[~both]).all()
    assert (cur.est.n1 + cur.est.n0).sum() == 6 * len(cur.subset)
    # The fake generator gives every sample of a prompt the same tokens, so right and wrong samples have the
    # same gradient: the cross term is exactly 0 and σ² = p(1−p)²E₁‖g‖² + p²(1−p)E₀‖g‖² with E₁ = E₀.
    assert np.allclose(cur.est.d2[both], 0.0, atol=1e-8)
    p = cur.est.p_hat()
    sq = (cur.est.q1 + cur.est.q0) / (cur.est.n1 + cur.est.n0)
    assert np.allclose(cur._sigma(), np.sqrt(p * (1 - p) * sq))
    m = cur.observe(rollout(reqs, random.Random(0)))
    assert m["cures/grad_stats_s"] > 0 and len(learners.fns) == 2
