"""trainer/logprobs.py: the sliced, chunked, trimmed token_logprobs equals the plain full-logits computation
(log-probs, entropies and parameter gradients) on tiny in-memory models; length packing keeps the loss and
the gradient of a GRPO step unchanged."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from tests.support.tiny import tiny_llama_module
from trainer.batch import LossTerm, TrainBatch, collate
from trainer.learner import needed_positions, pack_units
from trainer.logprobs import token_logprobs
from trainer.losses import LossInputs, Reducer, get_loss

V = 61


def reference_logprobs(model, input_ids, attention_mask, temperature=1.0, with_entropy=False, features=None):
    """The previous implementation: full logits, one fp32 log-softmax over [B, T, V]."""
    extra = {"features": features} if features else {}
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **extra)
    logits = logits.logits[:, :-1].float()
    if temperature != 1.0:
        logits = logits / temperature
    lse = torch.logsumexp(logits, -1)
    lp = logits.gather(-1, input_ids[:, 1:, None]).squeeze(-1) - lse
    ent = None
    if with_entropy:
        with torch.no_grad():
            p = torch.softmax(logits, -1)
            ent = F.pad(lse - (p * logits).sum(-1), (1, 0))
    return F.pad(lp, (1, 0)), ent


@functools.cache
def _model(tied: bool = False):
    return tiny_llama_module(V, tied=tied)


def _padded_batch(B: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded rows of varied length, and a response mask (the targets) starting after a prompt."""
    g = torch.Generator().manual_seed(seed)
    prompts = [
        torch.randint(3, V, (int(n),), generator=g).tolist() for n in torch.randint(2, 6, (B,), generator=g)
    ]
    resp = [
        torch.randint(3, V, (int(n),), generator=g).tolist() for n in torch.randint(1, 9, (B,), generator=g)
    ]
    col = collate(prompts, resp, pad_id=0)
    return col.input_ids, col.attention_mask, col.response_mask


def _grads(model, lp: torch.Tensor, weight: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    (lp * weight).sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same_grads(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Equal up to fp32 summation order: the chunked path adds the same terms in another order, so an element
    that is a sum of large cancelling terms (gradients of ~10 here) can differ by more than a fixed 1e-6 (CI
    failed on one such element with a norm-relative difference of 4e-7); the absolute tolerance is scaled to
    the tensor's largest entry instead, and the whole tensor must agree to 1e-5 in norm."""
    assert a.keys() == b.keys() and a
    for k in a:
        scale = float(a[k].abs().max())
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6 + 1e-6 * scale), k
        assert float((a[k] - b[k]).norm()) <= 1e-5 * float(a[k].norm()) + 1e-9, k


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("trim", [False, True])
def test_sliced_chunked_equals_full_logits(temperature, tied, trim):
    model = _model(tied)
    ids, att, needed = _padded_batch()
    if trim:  # no target in the last columns: the model reads fewer columns
        needed[:, -3:] = 0
    weight = torch.randn(ids.shape, generator=torch.Generator().manual_seed(1)) * needed
    lp0, ent0 = reference_logprobs(model, ids, att, temperature, with_entropy=True)
    g0 = _grads(model, lp0, weight)
    m = needed > 0
    assert int(m.sum()) % 5 and int(m.sum()) % 7  # chunks that do not divide the positions
    for chunk_size in (None, 1, 5, 7, 1000):
        lp1, ent1 = token_logprobs(model, ids, att, temperature, True, needed=needed, chunk_size=chunk_size)
        g1 = _grads(model, lp1, weight)
        assert lp1.shape == ent1.shape == ids.shape
        assert torch.allclose(lp1[m], lp0[m], atol=1e-5), chunk_size
        assert torch.allclose(ent1[m], ent0[m], atol=1e-5), chunk_size
        assert torch.all(lp1[~m] == 0) and torch.all(ent1[~m] == 0)
        _assert_same_grads(g0, g1)


def test_default_is_every_position_and_checkpointed_chunks_match():
    model = _model()
    ids, att, needed = _padded_batch(seed=2)
    lp0, ent0 = reference_logprobs(model, ids, att, 0.7, with_entropy=True)
    lp1, ent1 = token_logprobs(model, ids, att, 0.7, True, chunk_size=4)  # padding positions included
    assert torch.allclose(lp1, lp0, atol=1e-5) and torch.allclose(ent1, ent0, atol=1e-5)
    assert torch.all(lp1[:, 0] == 0)
    weight = torch.randn(ids.shape, generator=torch.Generator().manual_seed(2)) * needed
    g0 = _grads(model, lp0, weight)
    lp2, ent2 = token_logprobs(model, ids, att, 0.7, True, needed=needed, chunk_size=5, checkpoint=True)
    _assert_same_grads(g0, _grads(model, lp2, weight))
    m = needed > 0
    assert torch.allclose(lp2[m], lp0[m], atol=1e-5) and torch.allclose(ent2[m], ent0[m], atol=1e-5)


def test_nothing_needed_still_connects_every_parameter():
    """An empty micro-batch (all masks zero) must still give every parameter a (zero) gradient: ZeRO's
    gradient collectives expect the same parameters on every rank."""
    model = _model()
    ids, att, _ = _padded_batch(B=2)
    lp, ent = token_logprobs(model, ids, att, with_entropy=True, needed=torch.zeros_like(ids))
    assert torch.all(lp == 0) and torch.all(ent == 0)
    grads = _grads(model, lp, torch.ones_like(lp))
    assert set(grads) == {n for n, _ in model.named_parameters()}
    assert all(torch.all(g == 0) for g in grads.values())


def test_peft_lora_model_matches_and_trains_adapters():
    from trainer import lora

    model = lora.wrap(tiny_llama_module(V), lora.LoraSpec(r=4, alpha=8))
    with torch.no_grad():  # non-zero B so the adapters change the outputs
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    ids, att, needed = _padded_batch(seed=3)
    weight = torch.randn(ids.shape, generator=torch.Generator().manual_seed(3)) * needed
    lp0, _ = reference_logprobs(model, ids, att, 0.7)
    g0 = _grads(model, lp0, weight)
    lp1, _ = token_logprobs(model, ids, att, 0.7, needed=needed, chunk_size=3)
    g1 = _grads(model, lp1, weight)
    m = needed > 0
    assert torch.allclose(lp1[m], lp0[m], atol=1e-5)
    _assert_same_grads(g0, g1)
    assert all("lora_" in k for k in g1)
    with model.disable_adapter():
        base0, _ = reference_logprobs(model, ids, att)
        base1, _ = token_logprobs(model, ids, att, needed=needed)
    assert torch.allclose(base1[m], base0[m], atol=1e-5)
    assert not torch.allclose(base1[m], lp1[m], atol=1e-3)  # the adapters mattered


def test_pplug_side_module_matches(tiny_model):
    from transformers import AutoModelForCausalLM

    from trainer import side_modules
    from trainer.side_modules import SideModuleSpec

    lm = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    m = side_modules.build(lm, SideModuleSpec("pplug", {"instruction_tokens": 2}))
    ids, att, needed = _padded_batch(B=3, seed=4)
    ids = ids % lm.config.vocab_size
    e = lm.config.hidden_size
    g = torch.Generator().manual_seed(0)
    feats = {"history": torch.randn(3, 4, e, generator=g), "history_mask": torch.ones(3, 4)}
    feats["query"] = torch.randn(3, e, generator=g)
    weight = torch.randn(ids.shape, generator=g) * needed
    lp0, ent0 = reference_logprobs(m, ids, att, 0.7, True, features=feats)
    g0 = _grads(m, lp0, weight)
    lp1, ent1 = token_logprobs(m, ids, att, 0.7, True, feats, needed=needed, chunk_size=2)
    g1 = _grads(m, lp1, weight)
    msk = needed > 0
    assert torch.allclose(lp1[msk], lp0[msk], atol=1e-5) and torch.allclose(ent1[msk], ent0[msk], atol=1e-5)
    _assert_same_grads(g0, g1)


def test_soft_capped_logits_fall_back_to_the_models_own_logits():
    """A model whose logits are not head(hidden) (here: soft-capped) must not take the hidden-state path."""
    from trainer import logprobs

    class Capped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = tiny_llama_module(V)

        def get_output_embeddings(self):
            return self.inner.get_output_embeddings()

        def forward(
            self, input_ids, attention_mask, use_cache=False, output_hidden_states=False, logits_to_keep=0
        ):
            out = self.inner(
                input_ids=input_ids,
                attention_mask=attention_mask,
                output_hidden_states=output_hidden_states,
                logits_to_keep=logits_to_keep,
            )
            out.logits = 3.0 * torch.tanh(out.logits / 3.0)
            return out

    model = Capped()
    ids, att, needed = _padded_batch(seed=5)
    lp0, _ = reference_logprobs(model, ids, att)
    lp1, _ = token_logprobs(model, ids, att, needed=needed)
    m = needed > 0
    assert torch.allclose(lp1[m], lp0[m], atol=1e-5)
    assert logprobs._HEADS[model] == (None, True)
    plain = _model()
    token_logprobs(plain, ids, att, needed=needed)
    assert logprobs._HEADS[plain][0] is plain.lm_head  # the plain model does take it


# ---------------------------------------------------------------- length packing


def _grpo_batch(seed: int = 0) -> TrainBatch:
    g = torch.Generator().manual_seed(seed)
    B = 10
    prompts = [
        torch.randint(3, V, (int(n),), generator=g).tolist() for n in torch.randint(3, 8, (B,), generator=g)
    ]
    resp = [
        torch.randint(3, V, (int(n),), generator=g).tolist() for n in torch.randint(1, 14, (B,), generator=g)
    ]
    col = collate(prompts, resp, pad_id=0)
    adv = torch.randn(B, generator=g)
    terms = [
        LossTerm("policy_gradient", 1.0, col.response_mask, {"advantages": adv}),
        LossTerm("nll", 0.3, col.response_mask * (torch.rand(col.response_mask.shape, generator=g) > 0.5)),
    ]
    return TrainBatch(col.input_ids, col.attention_mask, terms)


def _step(model, batch: TrainBatch, plan: list[list[int]], fn, kw) -> tuple[float, dict[str, torch.Tensor]]:
    """One GRPO-shaped accumulation over ``plan`` (mini-batch reducers): the loss and the gradients."""
    model.zero_grad(set_to_none=True)
    reducers = [Reducer("token", float(t.mask.sum()), float((t.mask.sum(-1) > 0).sum())) for t in batch.terms]
    total = 0.0
    for rows in plan:
        micro = batch.select(rows)
        lp, _ = fn(model, micro.input_ids, micro.attention_mask, 0.7, True, **kw(micro))
        inp = LossInputs(lp, lp.detach(), None)
        loss = sum(t.weight * get_loss(t.loss).fn(inp, t, r)[0] for t, r in zip(micro.terms, reducers))
        loss.backward()
        total += float(loss.detach())
    return total, {n: p.grad.clone() for n, p in model.named_parameters()}


def test_length_packed_trimmed_micro_batches_keep_loss_and_gradient():
    model = _model()
    batch = _grpo_batch()
    units = batch.units()
    lengths = batch.attention_mask.sum(-1).tolist()
    plain = pack_units(units, 3)
    packed = pack_units(units, 3, lengths)
    assert sorted(r for p in packed for r in p) == list(range(batch.num_rows))
    assert [lengths[p[0]] for p in packed] == sorted((lengths[p[0]] for p in packed), reverse=True)
    loss0, g0 = _step(model, batch, plain, reference_logprobs, lambda m: {})
    loss1, g1 = _step(model, batch, packed, token_logprobs, lambda m: {"needed": needed_positions(m)})
    assert loss1 == pytest.approx(loss0, rel=1e-5, abs=1e-7)
    _assert_same_grads(g0, g1)


def test_pack_units_keeps_units_whole_when_sorting():
    units = [[0, 1], [2], [3, 4, 5], [6]]
    lengths = [3, 9, 1, 2, 2, 2, 7]
    assert pack_units(units, 3, lengths) == [[0, 1, 6], [3, 4, 5], [2]]
    assert pack_units(units, 3) == [[0, 1, 2], [3, 4, 5], [6]]
