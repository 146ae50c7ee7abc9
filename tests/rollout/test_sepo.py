"""SePO token selection and masks: k per response, top-k/bottom-k, and — the off-by-one that matters — masks that
select exactly the tokens whose shifted next-token log-probs the oracle raises, end to end through the stored
records and the strategy's train batch."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from launch.score_tokens import row_token_rewards, score_records
from rollout.strategies.sepo import (
    MANIFEST,
    MaskStore,
    SePOOptions,
    SePOStrategy,
    num_selected,
    select_tokens,
)
from rollout.types import Prompt, RolloutBatch, Sample
from trainer.learner import token_logprobs

V = 16


class BigramLM(torch.nn.Module):
    """logits[b, t] = table[input_ids[b, t]]: the next-token distribution depends on the current token only,
    so which tokens an oracle favours is known by construction."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, input_ids, attention_mask=None, use_cache=False):
        return SimpleNamespace(logits=self.table[input_ids])


def _models() -> tuple[BigramLM, BigramLM]:
    ref = BigramLM(torch.zeros(V, V))  # uniform next token
    oracle_table = torch.zeros(V, V)
    oracle_table[5, 7] = 4.0  # the oracle likes "7 after 5" ...
    oracle_table[9, 3] = -4.0  # ... and dislikes "3 after 9"
    return BigramLM(oracle_table), ref


def test_k_and_selection_order():
    assert [num_selected(n, 0.3) for n in (0, 1, 3, 4, 10, 11)] == [0, 1, 1, 1, 3, 3]
    r = [0.5, -1.0, 2.0, 2.0, -3.0, 0.0, 1.0, -1.0, 0.1, 0.2]  # 10 tokens, k = 3
    assert select_tokens(r, 0.3, chosen=True) == [2, 3, 6]  # the three highest
    assert select_tokens(r, 0.3, chosen=False) == [1, 4, 7]  # the three lowest
    assert select_tokens([1.0, 1.0, 1.0], 0.3, chosen=True) == [0]  # ties: the earlier token


def test_token_rewards_belong_to_the_token_they_score():
    """r̂[i] is the reward of response_ids[i] given everything before it — including the prompt's last token
    for i = 0 (the boundary where an off-by-one would shift every mask)."""
    oracle, ref = _models()
    prompt = [1, 2, 5]  # ends with 5: the first response token 7 is favoured by the oracle
    chosen = [7, 4, 5, 7, 6, 8, 2, 1, 4, 6]  # "5 7" at the boundary (i = 0) and at i = 2→3
    rejected = [4, 9, 3, 6, 9, 3, 2, 8, 1, 4]  # "9 3" at i = 1→2 and i = 4→5
    rw = row_token_rewards(oracle, ref, [("r0", prompt, [chosen, rejected])], batch_size=1)[0]
    c, r = rw
    assert len(c) == len(chosen) and len(r) == len(rejected)
    high = sorted(range(len(c)), key=lambda i: -c[i])[:2]
    assert sorted(high) == [0, 3]  # the two 7s that follow a 5
    low = sorted(range(len(r)), key=lambda i: r[i])[:2]
    assert sorted(low) == [2, 5]  # the two 3s that follow a 9
    # and the value is the exact log-ratio of the shifted log-probs: log softmax(table[5])[7] − log(1/V)
    expected = torch.log_softmax(oracle.table[5], -1)[7].item() - torch.log(torch.tensor(1.0 / V)).item()
    assert c[0] == pytest.approx(expected, abs=1e-5)


def _write_store(folder: Path, records: list[dict], ratio: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).write_text(json.dumps({"ratio": ratio, "complete": True}))
    (folder / "train-00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _samples(uid: str, prompt: list[int], responses: list[list[int]]) -> list[Sample]:
    p = Prompt(uid, "q")
    return [
        Sample(p, prompt, r, [], "data", "", f"0:{uid}", reward=float(1 - rank), meta={"rank": rank})
        for rank, r in enumerate(responses)
    ]


def _strategy(folder: Path, ratio: float = 0.2) -> SePOStrategy:
    ctx = SimpleNamespace(tokenizer=SimpleNamespace(eos_token_id=0), skip_invalid=False, pad_id=0)
    return SePOStrategy(ctx, SePOOptions(masks=str(folder), ratio=ratio))


def test_train_batch_masks_select_the_oracle_tokens_in_the_learner_layout(tmp_path):
    """Score → store → strategy → TrainBatch: the mask's positions are exactly the batch positions whose
    learner log-prob (token_logprobs, column t from logits t−1) the oracle raises most (chosen) / least."""
    oracle, ref = _models()
    prompt = [1, 2, 5]
    chosen = [7, 4, 5, 7, 6, 8, 2, 1, 4, 6]
    rejected = [4, 9, 3, 6, 9, 3, 2, 8, 1, 4]
    recs = score_records(oracle, ref, [("r0", prompt, [chosen, rejected])], ratio=0.2, batch_size=2)
    assert recs[0]["responses"][0]["selected"] == [0, 3]
    assert recs[0]["responses"][1]["selected"] == [2, 5]
    _write_store(tmp_path / "masks", recs, ratio=0.2)
    strat = _strategy(tmp_path / "masks")
    tb = strat.make_train_batch(RolloutBatch(_samples("r0", prompt, [chosen, rejected])))
    (term,) = tb.terms
    assert term.loss == "simpo"
    with torch.no_grad():
        lp_o, _ = token_logprobs(oracle, tb.input_ids, tb.attention_mask)
        lp_r, _ = token_logprobs(ref, tb.input_ids, tb.attention_mask)
    d = lp_o - lp_r
    resp = torch.zeros_like(d)
    resp[:, len(prompt) : len(prompt) + 10] = 1
    top_c = set(torch.topk(d[0].masked_fill(resp[0] == 0, -1e9), 2).indices.tolist())
    low_r = set(torch.topk((-d[1]).masked_fill(resp[1] == 0, -1e9), 2).indices.tolist())
    assert set(term.mask[0].nonzero().flatten().tolist()) == top_c == {3, 6}
    assert set(term.mask[1].nonzero().flatten().tolist()) == low_r == {5, 8}
    assert tb.metrics["sepo/token_share"] == pytest.approx(0.2)


def test_changed_tokens_fail_naming_the_row_and_ratio_change_reselects(tmp_path):
    oracle, ref = _models()
    prompt = [1, 2, 5]
    chosen = [7, 4, 5, 7, 6, 8, 2, 1, 4, 6]
    rejected = [4, 9, 3, 6, 9, 3, 2, 8, 1, 4]
    recs = score_records(oracle, ref, [("r0", prompt, [chosen, rejected])], ratio=0.2, batch_size=2)
    _write_store(tmp_path / "m", recs, ratio=0.2)
    other = [7, 4, 5, 7, 6, 8, 2, 1, 4, 9]  # one token differs (e.g. another tokenizer)
    with pytest.raises(ValueError, match=r"row 'r0' \(response 0\).*tokens differ"):
        _strategy(tmp_path / "m").make_train_batch(RolloutBatch(_samples("r0", prompt, [other, rejected])))
    with pytest.raises(KeyError, match="r1"):
        _strategy(tmp_path / "m").make_train_batch(RolloutBatch(_samples("r1", prompt, [chosen, rejected])))
    # ratio 0.1 (k = 1) from the stored rewards, without rescoring: the boundary 7 wins (same r̂ as i=3,
    # the earlier token breaks the tie)
    tb = _strategy(tmp_path / "m", ratio=0.1).make_train_batch(
        RolloutBatch(_samples("r0", prompt, [chosen, rejected]))
    )
    assert tb.terms[0].mask[0].nonzero().flatten().tolist() == [3]
    assert tb.terms[0].mask.sum().item() == 2


def test_missing_or_incomplete_masks_say_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"launch\.score_tokens"):
        MaskStore(tmp_path / "none", 0.3)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / MANIFEST).write_text(json.dumps({"ratio": 0.3, "complete": False}))
    with pytest.raises(ValueError, match="incomplete"):
        MaskStore(tmp_path / "half", 0.3)
    with pytest.raises(ValueError, match="ratio"):
        SePOOptions(ratio=0.0)
