"""Per-sample embedding-gradient norms (CurES's σ) against the embedding table's own gradient."""

from types import SimpleNamespace

import pytest
import torch

from trainer.batch import LossTerm, TrainBatch, collate
from trainer.grad_norms import embedding_grad_norms, sample_grad_norms


@pytest.fixture(scope="module")
def tiny_model():
    from tests.support.tiny import tiny_llama_module

    return tiny_llama_module(vocab_size=40, layers=2)


def batch():
    col = collate([[3, 4, 5], [6, 7]], [[8, 9, 9, 10], [11, 12]], pad_id=0)
    return TrainBatch(col.input_ids, col.attention_mask, [LossTerm("nll", 1.0, col.response_mask)])


def reference_norm(model, ids, mask):
    """Gradient of −Σ masked log π w.r.t. the embedding table (input path only: the head is untied)."""
    model.zero_grad()
    logits = model(input_ids=ids[None]).logits[0, :-1].float()
    lp = torch.log_softmax(logits, -1).gather(-1, ids[1:, None]).squeeze(-1)
    (-(lp * mask[1:]).sum()).backward()
    g = model.get_input_embeddings().weight.grad.norm().item()
    model.zero_grad()
    return g


def test_norms_equal_the_embedding_table_gradient(tiny_model):
    b = batch()
    norms = embedding_grad_norms(tiny_model, b.input_ids, b.attention_mask, b.terms[0].mask)
    for row in range(2):
        n = int(b.attention_mask[row].sum())
        ref = reference_norm(tiny_model, b.input_ids[row, :n], b.terms[0].mask[row, :n])
        assert norms[row] == pytest.approx(ref, rel=1e-4)
    # Padding a row (batched with a longer one) does not change its norm.
    alone = embedding_grad_norms(
        tiny_model, b.input_ids[1:, :4], b.attention_mask[1:, :4], b.terms[0].mask[1:, :4]
    )
    assert alone[0] == pytest.approx(norms[1], rel=1e-4)


def test_no_parameter_gradients_and_rank_split(tiny_model):
    b = batch().pad_rows(2, 0)
    norms = {}
    for rank in range(2):
        learner = SimpleNamespace(
            rank=rank,
            world=2,
            engine=SimpleNamespace(module=tiny_model),
            device=torch.device("cpu"),
            spec=SimpleNamespace(micro_batch_size=1, temperature=1.0),
        )
        for row, g in sample_grad_norms(learner, b):
            norms[row] = g
    assert sorted(norms) == [0, 1]
    assert all(p.grad is None for p in tiny_model.parameters())
    assert norms[0] > 0 and norms[1] > 0
