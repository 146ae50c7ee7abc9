import math

import pytest
import torch

from trainer.batch import LossTerm, TrainBatch, collate
from trainer.losses import LossInputs, Reducer, get_loss


def _inp(logp, old=None, ref=None):
    logp = torch.tensor(logp, dtype=torch.float32, requires_grad=True)
    old = logp.detach() if old is None else torch.tensor(old)
    return LossInputs(logp, old, None if ref is None else torch.tensor(ref))


def test_pg_on_policy_equals_minus_advantage_weighted():
    inp = _inp([[0.0, -1.0, -2.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0]])
    term = LossTerm("policy_gradient", 1.0, mask, {"advantages": torch.tensor([2.0])})
    loss, m = get_loss("policy_gradient").fn(inp, term, Reducer("token", 2.0, 1.0))
    assert loss.item() == pytest.approx(-2.0)  # ratio 1 on both tokens: -A
    loss.backward()
    assert inp.logprobs.grad[0].tolist() == pytest.approx([0.0, -1.0, -1.0])  # -A / n_tokens
    assert m["clip_frac"].item() == 0.0


def test_pg_clipping_hand_computed():
    # ratio e^{0.5}=1.6487 > 1+0.2 with positive advantage: clipped at 1.2, no gradient through it
    inp = _inp([[0.0, 0.5]], old=[[0.0, 0.0]])
    term = LossTerm(
        "policy_gradient",
        1.0,
        torch.tensor([[0.0, 1.0]]),
        {"advantages": torch.tensor([1.0])},
        {"clip_eps_low": 0.2, "clip_eps_high": 0.2},
    )
    loss, m = get_loss("policy_gradient").fn(inp, term, Reducer("token", 1.0, 1.0))
    assert loss.item() == pytest.approx(-1.2)
    loss.backward()
    assert inp.logprobs.grad[0, 1].item() == 0.0
    assert m["clip_frac"].item() == 1.0
    # negative advantage and ratio below 1-eps: clipped too (max of the two surrogates)
    inp2 = _inp([[0.0, -0.5]], old=[[0.0, 0.0]])
    term2 = LossTerm("policy_gradient", 1.0, torch.tensor([[0.0, 1.0]]), {"advantages": torch.tensor([-1.0])})
    loss2, _ = get_loss("policy_gradient").fn(inp2, term2, Reducer("token", 1.0, 1.0))
    assert loss2.item() == pytest.approx(0.8)


def test_clip_higher_is_asymmetric():
    inp = _inp([[0.0, math.log(1.25)]], old=[[0.0, 0.0]])
    term = LossTerm(
        "policy_gradient",
        1.0,
        torch.tensor([[0.0, 1.0]]),
        {"advantages": torch.tensor([1.0])},
        {"clip_eps_low": 0.2, "clip_eps_high": 0.28},
    )
    loss, _ = get_loss("policy_gradient").fn(inp, term, Reducer("token", 1.0, 1.0))
    assert loss.item() == pytest.approx(-1.25)  # 1.25 < 1.28: not clipped


def test_kl_k3_hand_computed():
    logp, ref = -1.0, -1.5
    inp = _inp([[0.0, logp]], ref=[[0.0, ref]])
    term = LossTerm("kl", 0.1, torch.tensor([[0.0, 1.0]]))
    loss, m = get_loss("kl").fn(inp, term, Reducer("token", 1.0, 1.0))
    d = ref - logp
    assert loss.item() == pytest.approx(math.exp(d) - d - 1)
    assert m["kl"].item() == pytest.approx(math.exp(d) - d - 1)
    assert get_loss("kl").needs_ref


def test_nll_and_reducer_modes():
    inp = _inp([[0.0, -1.0, -3.0], [0.0, -2.0, 0.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    term = LossTerm("nll", 1.0, mask)
    fn = get_loss("nll").fn
    assert fn(inp, term, Reducer("token", 3.0, 2.0))[0].item() == pytest.approx(6.0 / 3)
    assert fn(inp, term, Reducer("sequence", 3.0, 2.0))[0].item() == pytest.approx((2.0 + 2.0) / 2)
    assert fn(inp, term, Reducer("constant", 3.0, 2.0, constant=4.0))[0].item() == pytest.approx(
        6.0 / (2 * 4)
    )


def test_token_norm_over_microbatches_matches_full_batch():
    # Accumulating micro-batch losses normalised by mini-batch totals gives the full-batch loss.
    torch.manual_seed(0)
    logp = torch.randn(4, 5)
    mask = (torch.rand(4, 5) > 0.3).float()
    term = LossTerm("nll", 1.0, mask)
    full = get_loss("nll").fn(_inp(logp.tolist()), term, Reducer("token", float(mask.sum()), 4.0))[0]
    parts = sum(
        get_loss("nll").fn(
            _inp(logp[i : i + 2].tolist()),
            term.select(torch.arange(i, i + 2)),
            Reducer("token", float(mask.sum()), 4.0),
        )[0]
        for i in (0, 2)
    )
    assert parts.item() == pytest.approx(full.item(), rel=1e-6)


def test_collate_and_padding():
    col = collate([[1, 2], [3]], [[4, 5, 6], [7]], pad_id=0, engine_logprobs=[[-0.1, -0.2, -0.3], [-0.4]])
    assert col.input_ids.tolist() == [[1, 2, 4, 5, 6], [3, 7, 0, 0, 0]]
    assert col.response_mask.tolist() == [[0, 0, 1, 1, 1], [0, 1, 0, 0, 0]]
    assert col.engine_logprobs[0, 2:].tolist() == pytest.approx([-0.1, -0.2, -0.3])
    batch = TrainBatch(
        col.input_ids, col.attention_mask, [LossTerm("nll", 1.0, col.response_mask, {"x": torch.ones(2)})]
    )
    padded = batch.pad_rows(4, pad_id=0)
    assert padded.num_rows == 4 and padded.terms[0].mask[2:].sum() == 0
    assert padded.terms[0].tensors["x"].tolist() == [1, 1, 0, 0]
    assert batch.select([1]).input_ids.tolist() == [[3, 7, 0, 0, 0]]


def test_truncated_is_and_sequence_masking_hand_computed():
    """Rollout/training mismatch: token weights min(π_old/π_engine, C), detached; rows whose geometric-mean
    ratio leaves [1/τ, τ] get no loss; metrics on the sampled tokens; identity without engine log-probs."""
    lp = torch.zeros(3, 4, requires_grad=True)
    mask = torch.tensor([[0, 1, 1, 0], [0, 1, 1, 1], [0, 1, 0, 0]], dtype=torch.float32)
    old = torch.zeros(3, 4)
    eng = torch.zeros(3, 4)
    eng[0, 1] = -math.log(3.0)  # ratio 3 → capped at 2
    eng[0, 2] = math.log(2.0)  # ratio 0.5
    eng[1, 1:] = -1.0  # ratio e on every token: geometric mean e > τ = 2 → row masked
    adv = torch.tensor([1.0, 1.0, 1.0])
    opts = {"tis_cap": 2.0, "mismatch_seq_threshold": 2.0}
    term = LossTerm("policy_gradient", 1.0, mask, {"advantages": adv}, opts)
    red = Reducer("token", float(mask.sum()), 3.0)
    loss, m = get_loss("policy_gradient").fn(LossInputs(lp, old, None, eng), term, red)
    # on-policy ratio 1: per-token loss −A·w; row 0: w = 2, 0.5; row 1 masked; row 2: w = 1. Σ / 6 tokens
    assert loss.item() == pytest.approx(-(2.0 + 0.5 + 1.0) / 6.0)
    loss.backward()
    assert lp.grad[0, 1].item() == pytest.approx(-2.0 / 6.0)  # the weight multiplies the gradient too
    assert lp.grad[1].abs().sum().item() == 0.0
    assert m["mismatch/tis_capped_frac"].item() == pytest.approx(4 / 6)  # row 0 token 1 and row 1 (e > 2)
    assert m["mismatch/seq_masked_frac"].item() == pytest.approx(1 / 3)
    assert m["mismatch/ratio_max"].item() == pytest.approx(3.0)
    d = torch.tensor([math.log(3.0), -math.log(2.0), 1.0, 1.0, 1.0, 0.0])
    assert m["mismatch/abs_logprob_diff"].item() == pytest.approx(d.abs().mean().item(), rel=1e-6)
    assert m["mismatch/kl_k3"].item() == pytest.approx((d.exp() - 1 - d).mean().item(), rel=1e-6)
    # without engine log-probs (offline data, or logprobs_source=engine): the plain clipped surrogate
    plain, pm = get_loss("policy_gradient").fn(LossInputs(lp, old, None), term, red)
    assert plain.item() == pytest.approx(-1.0) and not any(k.startswith("mismatch/") for k in pm)
