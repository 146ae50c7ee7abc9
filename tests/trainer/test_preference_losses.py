"""Preference losses (trainer/preference_losses.py) against values worked out by hand with math.log/exp."""

import math

import pytest
import torch

from trainer.batch import LossTerm
from trainer.losses import LossInputs, Reducer, get_loss


def _inp(logp, ref=None):
    lp = torch.tensor(logp, dtype=torch.float32, requires_grad=True)
    return LossInputs(lp, lp.detach(), None if ref is None else torch.tensor(ref, dtype=torch.float32))


def _term(name, mask, group, rank, score=None, **options):
    tensors = {"group": torch.tensor(group, dtype=torch.long), "rank": torch.tensor(rank, dtype=torch.long)}
    if score is not None:
        tensors["score"] = torch.tensor(score, dtype=torch.float32)
    return LossTerm(name, 1.0, torch.tensor(mask, dtype=torch.float32), tensors, options)


def _run(inp, term, groups=1.0):
    return get_loss(term.loss).fn(inp, term, Reducer("token", 0.0, 0.0, minibatch_groups=groups))


def _softplus(x):
    """log(1 + e^x); −log σ(z) = softplus(−z)."""
    return math.log(1.0 + math.exp(x))


# One pair: chosen row 0, rejected row 1; column 0 is the (unmasked) first token.
PAIR_LOGP = [[0.0, -1.0, -2.0], [0.0, -2.0, -1.0]]
PAIR_REF = [[0.0, -1.5, -2.5], [0.0, -1.5, -1.2]]
PAIR_MASK = [[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]]
S_W = (-1.0 + 1.5) + (-2.0 + 2.5)  # 1.0
S_L = (-2.0 + 1.5) + (-1.0 + 1.2)  # -0.3


def test_needs_ref_flags():
    assert get_loss("dpo").needs_ref
    assert not get_loss("simpo").needs_ref
    assert get_loss("plackett_luce").needs_ref
    assert get_loss("lipo").needs_ref


def test_dpo_sigmoid_hand_computed_with_gradient_and_metrics():
    beta = 0.1
    inp = _inp(PAIR_LOGP, PAIR_REF)
    loss, m = _run(inp, _term("dpo", PAIR_MASK, [0, 0], [0, 1], beta=beta))
    z = beta * (S_W - S_L)  # 0.13
    assert loss.item() == pytest.approx(_softplus(-z), rel=1e-6)
    assert m["pref/accuracy"].item() == 1.0
    assert m["pref/margin"].item() == pytest.approx(z, rel=1e-5)
    assert m["pref/chosen_reward"].item() == pytest.approx(beta * S_W, rel=1e-5)
    assert m["pref/rejected_reward"].item() == pytest.approx(beta * S_L, rel=1e-5)
    loss.backward()
    g = beta / (1.0 + math.exp(z))  # |d/dz softplus(-z)| · dz/dlogp
    assert inp.logprobs.grad[0].tolist() == pytest.approx([0.0, -g, -g], rel=1e-5)  # chosen: pushed up
    assert inp.logprobs.grad[1].tolist() == pytest.approx([0.0, g, g], rel=1e-5)  # rejected: pushed down
    assert (inp.logprobs.grad[0, 1:] < 0).all()


def test_dpo_row_order_does_not_matter():
    beta = 0.1
    loss, _ = _run(_inp(PAIR_LOGP[::-1], PAIR_REF[::-1]), _term("dpo", PAIR_MASK, [0, 0], [1, 0], beta=beta))
    assert loss.item() == pytest.approx(_softplus(-beta * (S_W - S_L)), rel=1e-6)


def test_dpo_tokens_outside_the_mask_are_ignored_and_span_masks():
    beta = 0.1
    base, _ = _run(_inp(PAIR_LOGP, PAIR_REF), _term("dpo", PAIR_MASK, [0, 0], [0, 1], beta=beta))
    # an extra unmasked column with a wild (even -inf) log-prob changes nothing, and gets no gradient
    logp = [[*row, v] for row, v in zip(PAIR_LOGP, [-50.0, float("-inf")])]
    ref = [[*row, v] for row, v in zip(PAIR_REF, [3.0, -7.0])]
    mask = [[*row, 0.0] for row in PAIR_MASK]
    inp = _inp(logp, ref)
    loss, _ = _run(inp, _term("dpo", mask, [0, 0], [0, 1], beta=beta))
    assert loss.item() == pytest.approx(base.item(), rel=1e-6)
    loss.backward()
    assert inp.logprobs.grad[:, 3].tolist() == [0.0, 0.0]
    # span mask (HPL step/group DPO): only token 2 of each row counts
    span = [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
    loss, _ = _run(_inp(PAIR_LOGP, PAIR_REF), _term("dpo", span, [0, 0], [0, 1], beta=beta))
    h = (-2.0 + 2.5) - (-1.0 + 1.2)  # 0.3
    assert loss.item() == pytest.approx(_softplus(-beta * h), rel=1e-6)


def test_dpo_label_smoothing_cdpo():
    beta, eps = 0.5, 0.2
    loss, _ = _run(
        _inp(PAIR_LOGP, PAIR_REF), _term("dpo", PAIR_MASK, [0, 0], [0, 1], beta=beta, label_smoothing=eps)
    )
    z = beta * (S_W - S_L)  # 0.65
    assert loss.item() == pytest.approx((1 - eps) * _softplus(-z) + eps * _softplus(z), rel=1e-6)


def test_dpo_ipo_uses_per_token_mean_log_ratios():
    beta = 0.4
    mask = [[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]]  # chosen: 2 tokens, rejected: 1 token
    inp = _inp(PAIR_LOGP, PAIR_REF)
    loss, m = _run(inp, _term("dpo", mask, [0, 0], [0, 1], beta=beta, loss_type="ipo"))
    h = S_W / 2 - (-2.0 + 1.5) / 1  # 0.5 - (-0.5) = 1.0
    assert loss.item() == pytest.approx((h - 1 / (2 * beta)) ** 2, rel=1e-5)  # (1 - 1.25)^2
    assert m["pref/margin"].item() == pytest.approx(beta * h, rel=1e-5)
    loss.backward()
    d = 2 * (h - 1 / (2 * beta))  # -0.5
    assert inp.logprobs.grad[0].tolist() == pytest.approx([0.0, d / 2, d / 2], rel=1e-5)
    assert inp.logprobs.grad[1].tolist() == pytest.approx([0.0, -d, 0.0], rel=1e-5)
    with pytest.raises(ValueError):
        _run(inp, _term("dpo", mask, [0, 0], [0, 1], loss_type="ipo", label_smoothing=0.1))
    with pytest.raises(ValueError):
        _run(inp, _term("dpo", mask, [0, 0], [0, 1], loss_type="hinge"))


# A list of three, rows not in rank order: one token (column 1) each.
#   row 0: rank 1, s = -1.0 - (-1.2) = 0.2;  row 1: rank 0, s = 1.0;  row 2: rank 2, s = 0.6
LIST_LOGP = [[0.0, -1.0], [0.0, -0.5], [0.0, -0.4]]
LIST_REF = [[0.0, -1.2], [0.0, -1.5], [0.0, -1.0]]
LIST_MASK = [[0.0, 1.0]] * 3
LIST_RANK = [1, 0, 2]
S0, S1, S2 = 0.2, 1.0, 0.6


def test_dpo_group_of_three_pairs_best_with_each_other_and_averages():
    beta = 0.1
    loss, m = _run(_inp(LIST_LOGP, LIST_REF), _term("dpo", LIST_MASK, [5, 5, 5], LIST_RANK, beta=beta))
    # pairs (row1, row0) and (row1, row2) only — not (row0, row2); averaged so the group counts once
    expected = 0.5 * (_softplus(-beta * (S1 - S0)) + _softplus(-beta * (S1 - S2)))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert m["pref/accuracy"].item() == 1.0
    assert m["pref/margin"].item() == pytest.approx(beta * ((S1 - S0) + (S1 - S2)) / 2, rel=1e-5)
    assert m["pref/chosen_reward"].item() == pytest.approx(beta * S1, rel=1e-5)
    assert m["pref/rejected_reward"].item() == pytest.approx(beta * (S0 + S2) / 2, rel=1e-5)


def test_rows_outside_the_term_and_degenerate_groups_are_ignored():
    beta = 0.1
    base = _softplus(-beta * (S_W - S_L))
    extra_logp = [[0.0, -3.0, -0.1], [0.0, -0.2, -5.0], [0.0, -0.7, -0.9], [0.0, -0.3, -0.6]]
    extra_ref = [[0.0, -1.0, -1.0]] * 4
    # rows 2, 5: group -1 (two of them, with different ranks: still no pair); row 3: a group with one
    # member; row 4: member of group 0 with an empty mask
    mask = [*PAIR_MASK, [0.0, 1.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 1.0]]
    for name in ("dpo", "simpo", "plackett_luce", "lipo"):
        term = _term(name, mask, [0, 0, -1, 3, 0, -1], [0, 1, 0, 0, 2, 1], beta=beta)
        alone, m_alone = _run(_inp(PAIR_LOGP, PAIR_REF), _term(name, PAIR_MASK, [0, 0], [0, 1], beta=beta))
        inp = _inp(PAIR_LOGP + extra_logp, PAIR_REF + extra_ref)
        loss, m = _run(inp, term)
        assert loss.item() == pytest.approx(alone.item(), rel=1e-6), name
        assert {k: v.item() for k, v in m.items()} == pytest.approx({k: v.item() for k, v in m_alone.items()})
        loss.backward()
        assert inp.logprobs.grad[2:].abs().sum().item() == 0.0, name
        # a micro-batch with no usable group: zero loss that still back-propagates, no metrics
        inp2 = _inp(extra_logp, extra_ref)
        loss2, m2 = _run(inp2, _term(name, mask[2:], [-1, 3, 0, -1], [0, 0, 2, 1]))
        assert loss2.item() == 0.0 and m2 == {}, name
        loss2.backward()
        assert inp2.logprobs.grad.abs().sum().item() == 0.0
    loss, m = _run(
        _inp(PAIR_LOGP + extra_logp, PAIR_REF + extra_ref),
        _term("dpo", mask, [0, 0, -1, 3, 0, -1], [0, 1, 0, 0, 2, 1], beta=beta),
    )
    assert loss.item() == pytest.approx(base, rel=1e-6)
    assert m["pref/chosen_reward"].item() == pytest.approx(beta * S_W, rel=1e-5)


def test_reducer_groups_microbatches_sum_to_full_minibatch():
    beta = 0.1
    # second pair: rows 2 (rank 1, s=0.2) and 3 (rank 0, s=1.0), padded to width 3
    logp = [PAIR_LOGP[0], PAIR_LOGP[1], LIST_LOGP[0] + [0.0], LIST_LOGP[1] + [0.0]]
    ref = [PAIR_REF[0], PAIR_REF[1], LIST_REF[0] + [0.0], LIST_REF[1] + [0.0]]
    mask = [*PAIR_MASK, [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
    term = _term("dpo", mask, [0, 0, 1, 1], [0, 1, 1, 0], beta=beta)
    full, _ = _run(_inp(logp, ref), term, groups=2.0)
    expected = (_softplus(-beta * (S_W - S_L)) + _softplus(-beta * (S1 - S0))) / 2
    assert full.item() == pytest.approx(expected, rel=1e-6)
    parts = 0.0
    for rows in ([0, 1], [2, 3]):
        idx = torch.tensor(rows)
        part, _ = _run(_inp([logp[i] for i in rows], [ref[i] for i in rows]), term.select(idx), groups=2.0)
        assert part.item() == pytest.approx(
            (_softplus(-beta * (S_W - S_L)) if rows[0] == 0 else _softplus(-beta * (S1 - S0))) / 2, rel=1e-6
        )
        parts += part.item()
    assert parts == pytest.approx(full.item(), rel=1e-6)


def test_simpo_reference_free_length_normalised_with_selected_tokens():
    logp = [[0.0, -1.0, -2.0, -3.0], [0.0, -0.5, -4.0, -9.0]]
    mask = [[0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]]  # SePO: selected tokens only
    r_w = (-1.0 - 3.0) / 2  # -2.0
    r_l = (-0.5 - 4.0) / 2  # -2.25
    inp = _inp(logp)  # no reference log-probs at all
    loss, m = _run(inp, _term("simpo", mask, [0, 0], [0, 1], scale=2.0, margin=0.3))
    z = 2.0 * (r_w - r_l) - 0.3  # 0.2
    assert loss.item() == pytest.approx(_softplus(-z), rel=1e-6)
    assert m["pref/accuracy"].item() == 1.0
    assert m["pref/margin"].item() == pytest.approx(2.0 * (r_w - r_l), rel=1e-5)
    assert m["pref/chosen_reward"].item() == pytest.approx(2.0 * r_w, rel=1e-5)
    loss.backward()
    g = 2.0 / 2 / (1.0 + math.exp(z))  # scale / n_selected · σ(−z)
    assert inp.logprobs.grad[0].tolist() == pytest.approx([0.0, -g, 0.0, -g], rel=1e-5)
    assert inp.logprobs.grad[1].tolist() == pytest.approx([0.0, g, g, 0.0], rel=1e-5)
    # defaults: scale 2, margin 0; label smoothing
    loss, _ = _run(_inp(logp), _term("simpo", mask, [0, 0], [0, 1]))
    assert loss.item() == pytest.approx(_softplus(-2.0 * (r_w - r_l)), rel=1e-6)
    loss, _ = _run(
        _inp(logp), _term("simpo", mask, [0, 0], [0, 1], scale=2.0, margin=0.3, label_smoothing=0.1)
    )
    assert loss.item() == pytest.approx(0.9 * _softplus(-z) + 0.1 * _softplus(z), rel=1e-6)
    # an unselected token does not matter
    logp2 = [[0.0, -1.0, -100.0, -3.0], [0.0, -0.5, -4.0, 0.0]]
    loss2, _ = _run(_inp(logp2), _term("simpo", mask, [0, 0], [0, 1], scale=2.0, margin=0.3))
    assert loss2.item() == pytest.approx(_softplus(-z), rel=1e-6)


def test_plackett_luce_list_of_three():
    beta = 0.5
    inp = _inp(LIST_LOGP, LIST_REF)
    loss, m = _run(inp, _term("plackett_luce", LIST_MASK, [2, 2, 2], LIST_RANK, beta=beta))
    u1, u0, u2 = beta * S1, beta * S0, beta * S2  # ranking: row1 > row0 > row2
    first = u1 - math.log(math.exp(u1) + math.exp(u0) + math.exp(u2))
    second = u0 - math.log(math.exp(u0) + math.exp(u2))
    assert loss.item() == pytest.approx(-(first + second), rel=1e-6)
    # ordered pairs (1,0) ok, (1,2) ok, (0,2) wrong: u0 = 0.1 < u2 = 0.3
    assert m["pref/accuracy"].item() == pytest.approx(2 / 3)
    assert m["pref/margin"].item() == pytest.approx(((u1 - u0) + (u1 - u2) + (u0 - u2)) / 3, rel=1e-5)
    assert m["pref/chosen_reward"].item() == pytest.approx(u1, rel=1e-5)
    assert m["pref/rejected_reward"].item() == pytest.approx((u0 + u2) / 2, rel=1e-5)
    loss.backward()
    # d/du1 of -(first+second) = -(1 - p1), p1 = softmax share of u1 among all three; times β
    p1 = math.exp(u1) / (math.exp(u1) + math.exp(u0) + math.exp(u2))
    assert inp.logprobs.grad[1, 1].item() == pytest.approx(-beta * (1 - p1), rel=1e-5)


def test_plackett_luce_pair_equals_dpo_and_ties_keep_row_order():
    beta = 0.1
    pl, _ = _run(_inp(PAIR_LOGP, PAIR_REF), _term("plackett_luce", PAIR_MASK, [0, 0], [0, 1], beta=beta))
    assert pl.item() == pytest.approx(_softplus(-beta * (S_W - S_L)), rel=1e-6)
    # ranks (1, 0, 1): row1 first, then tied rows 0 and 2 in row order
    beta = 0.5
    loss, m = _run(
        _inp(LIST_LOGP, LIST_REF), _term("plackett_luce", LIST_MASK, [0, 0, 0], [1, 0, 1], beta=beta)
    )
    u0, u1, u2 = beta * S0, beta * S1, beta * S2
    first = u1 - math.log(math.exp(u1) + math.exp(u0) + math.exp(u2))
    second = u0 - math.log(math.exp(u0) + math.exp(u2))
    assert loss.item() == pytest.approx(-(first + second), rel=1e-6)
    assert m["pref/accuracy"].item() == 1.0  # the tied pair (0, 2) is not a pair


SCORE = [0.5, 1.0, 0.0]  # rows 0, 1, 2 (consistent with LIST_RANK)


def _lipo_pair_losses(beta):
    # strictly ordered pairs: (1, 0), (1, 2), (0, 2)
    return [_softplus(-beta * (S1 - S0)), _softplus(-beta * (S1 - S2)), _softplus(-beta * (S0 - S2))]


def test_lipo_uniform_and_gap_weighting():
    beta = 0.5
    la, lb, lc = _lipo_pair_losses(beta)
    term = _term("lipo", LIST_MASK, [0, 0, 0], LIST_RANK, SCORE, beta=beta)
    loss, m = _run(_inp(LIST_LOGP, LIST_REF), term)
    assert loss.item() == pytest.approx((la + lb + lc) / 3, rel=1e-6)
    assert m["pref/accuracy"].item() == pytest.approx(2 / 3)
    term.options["weighting"] = "gap"
    loss, _ = _run(_inp(LIST_LOGP, LIST_REF), term)
    wa, wb, wc = abs(1.0 - 0.5), abs(1.0 - 0.0), abs(0.5 - 0.0)
    assert loss.item() == pytest.approx((wa * la + wb * lb + wc * lc) / (wa + wb + wc), rel=1e-6)


def test_lipo_lambda_weighting_policy_and_label_positions():
    beta = 0.5
    la, lb, lc = _lipo_pair_losses(beta)
    gain = [2.0**s - 1.0 for s in SCORE]

    def disc(tau):
        return 1.0 / math.log2(1.0 + tau)

    def expected(tau):  # tau: 1-based position of rows 0, 1, 2
        w = [
            abs(gain[1] - gain[0]) * abs(disc(tau[1]) - disc(tau[0])),
            abs(gain[1] - gain[2]) * abs(disc(tau[1]) - disc(tau[2])),
            abs(gain[0] - gain[2]) * abs(disc(tau[0]) - disc(tau[2])),
        ]
        return (w[0] * la + w[1] * lb + w[2] * lc) / sum(w)

    term = _term("lipo", LIST_MASK, [0, 0, 0], LIST_RANK, SCORE, beta=beta, weighting="lambda")
    policy, _ = _run(_inp(LIST_LOGP, LIST_REF), term)
    # the policy's rewards order the rows 1 (s=1.0), 2 (0.6), 0 (0.2): τ = (3, 1, 2)
    assert policy.item() == pytest.approx(expected((3, 1, 2)), rel=1e-5)
    term.options["lambda_positions"] = "label"
    label, _ = _run(_inp(LIST_LOGP, LIST_REF), term)
    assert label.item() == pytest.approx(expected((2, 1, 3)), rel=1e-5)
    assert abs(policy.item() - label.item()) > 1e-3


def test_lipo_options_are_checked_and_pair_equals_dpo():
    beta = 0.1
    loss, _ = _run(_inp(PAIR_LOGP, PAIR_REF), _term("lipo", PAIR_MASK, [0, 0], [0, 1], beta=beta))
    assert loss.item() == pytest.approx(_softplus(-beta * (S_W - S_L)), rel=1e-6)
    with pytest.raises(KeyError, match="needs tensors"):
        _run(_inp(PAIR_LOGP, PAIR_REF), _term("lipo", PAIR_MASK, [0, 0], [0, 1], weighting="gap"))
    with pytest.raises(ValueError):
        _run(
            _inp(PAIR_LOGP, PAIR_REF), _term("lipo", PAIR_MASK, [0, 0], [0, 1], [1.0, 0.0], weighting="ndcg")
        )
    with pytest.raises(KeyError, match="needs tensors"):
        _run(_inp(PAIR_LOGP, PAIR_REF), LossTerm("dpo", 1.0, torch.tensor(PAIR_MASK)))
