"""Cog-Rethinker unit tests: stages, buffer, retrieval and the SFT re-mapping, with a scripted generator."""

import json
import re

import pytest
import torch

from launch.config import DynamicSamplingConfig
from rollout.dynamic import collect_rollouts
from rollout.retrieval import BM25Index
from rollout.strategies.cog_rethinker import (
    CogRethinkerOptions,
    CogRethinkerStrategy,
    DemoBuffer,
    sft_rows,
)
from rollout.types import Prompt, PromptRequest
from tests.support.scripted import PAD, CharRenderer, ExactScorer, ScriptedGenerator, strategy_context


def script(text, rng):
    """Direct: only 'easy' problems are solved. Decomposition: 'decomposable' ones. Reflection: 'reflectable'."""
    key = re.findall(r"key (\d+)", text)[-1]
    if "Earlier answers" in text:
        return f"revised\n{key}" if "reflectable" in text.split("Earlier answers")[0] else "still lost\n0"
    if "Sub-problems:" in text:
        own = text.rsplit("Problem: ", 1)[1]
        return f" add the tens\n add the ones\n{key}" if "decomposable" in own else " no idea\n0"
    return key if "easy" in text else "0"


PROBLEMS = [
    ("e", "easy sum of apples, key 11", "11"),
    ("d", "decomposable sum of pears and apples, key 42", "42"),
    ("r", "reflectable product of plums, key 77", "77"),
    ("x", "hopeless riddle about cherries, key 99", "99"),
]


def make(options=None, max_model_len=1024, **algo):
    return CogRethinkerStrategy(strategy_context(max_model_len, **algo), options or CogRethinkerOptions())


def requests(problems=PROBLEMS, n=2):
    return [PromptRequest(Prompt(u, q, a), n) for u, q, a in problems]


def test_stages_run_only_for_zero_accuracy_problems():
    strat, gen = make(), ScriptedGenerator(script)
    batch = strat.rollout(requests(), gen, ExactScorer())
    stages = {(s.prompt.uid, s.meta["stage"]) for s in batch.samples}
    assert stages == {
        ("e", 0),
        ("d", 0),
        ("r", 0),
        ("x", 0),
        ("d", 1),
        ("r", 1),
        ("x", 1),
        ("r", 2),
        ("x", 2),
    }
    m = batch.metrics
    assert m["cog/zero_acc_frac"] == 0.75
    assert m["cog/rescued_decompose"] == pytest.approx(1 / 3) and m["cog/rescued_reflect"] == pytest.approx(
        1 / 3
    )
    assert m["cog/acc_direct"] == 0.25 and m["cog/acc_decompose"] == pytest.approx(1 / 3)
    assert m["num_samples"] == 18
    # One advantage group per (problem, stage).
    assert len(batch.groups()) == 9 and all(len(g) == 2 for g in batch.groups().values())
    # The rescued decomposition entered the buffer (once, though two samples were right).
    assert len(strat.buffer) == 1 and m["cog/buffer_size"] == 1


def test_reflection_prompt_shows_earlier_wrong_answers():
    strat, gen = make(CogRethinkerOptions(reflect_attempts=2)), ScriptedGenerator(script)
    strat.rollout(requests(PROBLEMS[2:3]), gen, ExactScorer())
    reflect = [t for t, _ in gen.calls if "Earlier answers" in t]
    assert len(reflect) == 1
    # Distinct wrong answers, the decomposition's first: " no idea\n0" then the direct "0".
    assert "Answer 1: no idea\n0" in reflect[0] and "Answer 2: 0" in reflect[0]
    assert "reflectable product of plums, key 77" in reflect[0]


def test_retrieved_demonstrations_and_hit_rate():
    strat, gen = make(CogRethinkerOptions(num_demos=2)), ScriptedGenerator(script)
    first = strat.rollout(requests(PROBLEMS[1:2]), gen, ExactScorer())
    assert first.metrics["cog/retrieval_hit_rate"] == 0.0  # empty buffer
    gen.calls.clear()
    similar = [("d2", "decomposable sum of pears and plums, key 55", "55")]
    second = strat.rollout(requests(similar), gen, ExactScorer())
    decompose = next(t for t, _ in gen.calls if "Sub-problems:" in t)
    # The demonstration is the earlier problem with its successful decomposition, before the new problem.
    assert "Problem: decomposable sum of pears and apples, key 42\nSub-problems: add the tens" in decompose
    assert decompose.index("key 42") < decompose.index("key 55")
    assert second.metrics["cog/retrieval_hit_rate"] == 1.0 and len(strat.buffer) == 2


def test_sft_rows_reattach_answers_to_the_direct_prompt_token_by_token():
    strat = make(CogRethinkerOptions(sft_coef=0.1), kl_coef=0.01)
    batch = strat.rollout(requests(), ScriptedGenerator(script), ExactScorer())
    tb = strat.make_train_batch(batch)
    rescued = [s for s in batch.samples if s.meta["stage"] > 0 and s.correct]
    n_roll, n_sft = len(batch.samples), 2  # d: one distinct decomposition; r: one distinct revision
    assert len(rescued) == 4 and tb.input_ids.shape[0] == n_roll + n_sft
    assert tb.metrics["cog/sft_rows"] == n_sft
    pg, kl, nll = (next(t for t in tb.terms if t.loss == name) for name in ("policy_gradient", "kl", "nll"))
    assert nll.weight == 0.1 and nll.options["norm"] == "token"
    renderer = CharRenderer()
    for row, s in zip(range(n_roll, n_roll + n_sft), [rescued[0], rescued[2]]):
        direct = renderer.render(s.prompt)  # "Q: <problem>\nA: ", not the decomposition/reflection prompt
        expect = direct + s.response_ids
        assert tb.input_ids[row, : len(expect)].tolist() == expect
        assert (tb.input_ids[row, len(expect) :] == PAD).all()
        target = torch.zeros(tb.input_ids.shape[1])
        target[len(direct) : len(expect)] = 1
        assert torch.equal(nll.mask[row], target)  # exactly the response tokens
        assert pg.mask[row].sum() == 0 and kl.mask[row].sum() == 0
        assert pg.tensors["advantages"][row] == 0
    assert nll.mask[:n_roll].sum() == 0  # rollouts carry no NLL
    sft_tokens = float(nll.mask.sum())
    assert tb.metrics["cog/sft_token_frac"] == pytest.approx(sft_tokens / (sft_tokens + float(pg.mask.sum())))


def test_sft_rows_dedup_and_cap():
    strat = make()
    batch = strat.rollout(requests(PROBLEMS[1:2], n=3), ScriptedGenerator(script), ExactScorer())
    assert len(sft_rows(batch.samples)) == 1  # three identical right decompositions → one row
    for i, s in enumerate(s for s in batch.samples if s.meta["stage"] == 1):
        s.response_ids, s.logprobs = [*s.response_ids, 50 + i], [*s.logprobs, -0.5]
    assert len(sft_rows(batch.samples)) == 3 and len(sft_rows(batch.samples, per_problem=2)) == 2
    assert make(CogRethinkerOptions(sft_coef=0.0)).make_train_batch(batch).input_ids.shape[0] == 6


def test_dynamic_sampling_keeps_groups_that_feed_the_sft_term():
    strat = make()
    data = [Prompt(u, q, a) for u, q, a in PROBLEMS]

    class Fixed:
        def next_batch(self, step):
            return [PromptRequest(p, 2) for p in data]

        def observe(self, batch):
            return {}

    ds = DynamicSamplingConfig(True, metric="accuracy", max_rounds=1, target_groups=9)
    batch, m = collect_rollouts(Fixed(), strat, ScriptedGenerator(script), ExactScorer(), 0, ds)
    kept = {(s.prompt.uid, s.meta["stage"]) for s in batch.samples}
    # No group varies here; the two rescued groups stay for the SFT term, the rest is dropped.
    assert kept == {("d", 1), ("r", 2)} and m["dynamic/groups_dropped"] == 7


def test_buffer_bounds_dedup_and_exact_state():
    buf = DemoBuffer(max_size=3)
    assert buf.add("sum of 12 and 30", "a") and not buf.add("Sum of  12 and 30", "b")  # same problem
    assert not buf.add("empty one", "   ")
    for i in range(4):
        buf.add(f"product of {10 + i} and {20 + i}", f"p{i}")
    assert len(buf) == 3  # oldest out first: the sum and the first product are gone
    assert [p for p, _ in buf.items.values()] == [
        "product of 11 and 21",
        "product of 12 and 22",
        "product of 13 and 23",
    ]
    copy = DemoBuffer(3)
    copy.load_state_dict(json.loads(json.dumps(buf.state_dict())))
    assert copy.items == buf.items
    assert copy.search("product of 12 and 99", 2) == buf.search("product of 12 and 99", 2)
    assert buf.search("product of 12 and 22", 5)[0][0] != "product of 12 and 22"  # never itself


def test_buffer_seed_file(tmp_path):
    good = tmp_path / "seed.jsonl"
    good.write_text(
        json.dumps({"problem": "sum of 12 and 30", "decomposition": "tens then ones"})
        + "\n\n"
        + json.dumps({"problem": "sum of 12 and 30", "decomposition": "dup"})
        + "\n"
    )
    strat = make(CogRethinkerOptions(buffer_seed_file=str(good)))
    assert len(strat.buffer) == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"problem": "x", "decomposition": "y"}) + "\n" + json.dumps({"problem": "x"}) + "\n"
    )
    with pytest.raises(ValueError, match=r"bad.jsonl: row 2: needs a JSON object"):
        DemoBuffer(4).load_jsonl(str(bad))
    with pytest.raises(ValueError, match="buffer_seed_file"):
        CogRethinkerOptions(buffer_seed_file=str(tmp_path / "missing.jsonl"))


def test_template_options_are_checked():
    with pytest.raises(ValueError, match="reflect_template must contain"):
        CogRethinkerOptions(reflect_template="try again: {question}")
    with pytest.raises(ValueError, match="decompose_template: cannot fill"):
        CogRethinkerOptions(decompose_template="{question} {nope}")


def test_bm25_ranks_by_shared_terms_and_skips_unrelated():
    idx = BM25Index(["apples and pears cost 12", "a train leaves at noon", "pears cost more than plums"])
    hits = idx.search("how much do pears cost", 3)
    assert [i for i, _ in hits][:2] in ([0, 2], [2, 0]) and 1 not in [i for i, _ in hits]
    assert idx.search("zebra", 2) == [] and BM25Index().search("pears", 2) == []


def test_stages_can_be_switched_off():
    gen = ScriptedGenerator(script)
    batch = make(CogRethinkerOptions(decompose=False)).rollout(requests(), gen, ExactScorer())
    assert {s.meta["stage"] for s in batch.samples} == {0, 2}  # reflection straight after the direct round
    assert batch.metrics["cog/rescued_reflect"] == pytest.approx(1 / 3)
    plain = make(CogRethinkerOptions(decompose=False, reflect=False))
    batch = plain.rollout(requests(), gen, ExactScorer())
    assert {s.meta["stage"] for s in batch.samples} == {0} and batch.metrics["cog/zero_acc_frac"] == 0.75
    assert plain.make_train_batch(batch).metrics["cog/sft_rows"] == 0


def test_stage_prompts_fit_the_context_or_are_skipped():
    strat = make(CogRethinkerOptions(num_demos=2))
    for a in range(3):
        strat.buffer.add(f"decomposable sum of pears and apples, key 4{a}", " add the tens\n add the ones")
    prompt = Prompt("d", PROBLEMS[1][1], "42")
    full, used = strat.stage_ids(1, prompt, [])
    assert used == 2
    # Room for one demonstration less: the prompt drops one instead of overflowing.
    strat.ctx.max_model_len = len(full) - 1 + strat.ctx.sampling.max_new_tokens
    ids, used = strat.stage_ids(1, prompt, [])
    assert used == 1 and len(ids) < len(full)
    strat.ctx.max_model_len = 60  # not even the bare template fits: skipped and counted
    assert strat.stage_ids(1, prompt, []) is None
    batch = strat.rollout(requests(PROBLEMS[1:2]), ScriptedGenerator(script), ExactScorer())
    assert {s.meta["stage"] for s in batch.samples} == {0} and batch.metrics["cog/skipped_too_long"] == 2
