"""HPL's pure logic (rollout/hpl.py), its training rows (rollout/strategies/hpl.py) and its dual-layer curriculum
(curricula/hpl.py): segmentation strategies, pair rules, buckets and phases, and span masks over multi-turn
transcripts built with a real tokenizer and checked against the episode runner's own replay."""

from __future__ import annotations

import pytest
import torch

from curricula.base import CurriculumContext
from curricula.hpl import HPLCurriculum, HPLCurriculumOptions
from rollout.envs.pool import LocalEnvPool
from rollout.hpl import (
    active_buckets,
    distinct_negatives,
    gap_bucket,
    group_pair,
    length_bucket,
    parse_judge_groups,
    segment,
    step_pair,
    trajectory_pair,
    unit,
)
from rollout.multiturn import EpisodeLimits, EpisodeRunner, EpisodeStart, TurnFormat, transcript_row
from rollout.strategies.base import StrategyContext
from rollout.strategies.hpl import HPLOptions, HPLStrategy
from rollout.types import Prompt, PromptRequest, SamplingParams
from tests.rollout.test_multiturn import EOS_TEMPLATE
from tests.support.tiny import build_tokenizer

# ------------------------------------------------------------------------------------------ segmentation


def test_fixed_length_and_fixed_count_cover_the_trajectory():
    assert segment("fixed_length", 7, k=3) == [(0, 3), (3, 6), (6, 7)]
    assert segment("fixed_length", 3, k=3) == [(0, 3)]
    assert segment("fixed_count", 7, count=3) == [(0, 3), (3, 5), (5, 7)]
    assert segment("fixed_count", 2, count=3) == [(0, 1), (1, 2)]  # fewer actions than groups
    assert segment("fixed_count", 9, count=3) == [(0, 3), (3, 6), (6, 9)]
    with pytest.raises(ValueError, match="segment_k"):
        segment("fixed_length", 4, k=0)
    with pytest.raises(ValueError, match="unknown segmentation 'semantic'"):
        segment("semantic", 4)


def test_entropy_segmentation_opens_a_group_at_each_uncertain_action():
    ents = [2.0, 0.1, 0.2, 1.5, 0.3, 0.1]
    assert segment("entropy", 6, entropies=ents, threshold=1.0) == [(0, 3), (3, 6)]
    # Default threshold: the trajectory's mean entropy (0.7 here): same split.
    assert segment("entropy", 6, entropies=ents) == [(0, 3), (3, 6)]
    assert segment("entropy", 3, entropies=[0.1, 0.1, 0.1], threshold=1.0) == [(0, 3)]
    assert segment("entropy", 3, entropies=[5.0, 5.0, 5.0], threshold=1.0) == [(0, 1), (1, 2), (2, 3)]
    with pytest.raises(ValueError, match="one entropy per action"):
        segment("entropy", 3, entropies=[1.0])


def test_judge_reply_is_parsed_and_checked():
    assert parse_judge_groups("Groups: [[1, 2], [3, 5]]", 5) == [(0, 2), (2, 5)]
    # The last list wins (a model may restate the example first).
    assert parse_judge_groups("e.g. [[1, 2], [3, 4]] so: [[1,1],[2,4]]", 4) == [(0, 1), (1, 4)]
    assert segment("judge", 3, judge_text="[[1,3]]") == [(0, 3)]
    with pytest.raises(ValueError, match="no \\[\\[start, end\\]"):
        parse_judge_groups("first go north, then take the key", 3)
    with pytest.raises(ValueError, match="contiguously"):
        parse_judge_groups("[[1, 2], [4, 5]]", 5)  # action 3 missing
    with pytest.raises(ValueError, match="end at 4"):
        parse_judge_groups("[[1, 2], [3, 4]]", 5)  # action 5 missing
    with pytest.raises(ValueError, match="contiguously"):
        parse_judge_groups("[[2, 1]]", 2)  # empty / reversed group


# ------------------------------------------------------------------------------------------ pair rules


def test_pair_rules_and_thresholds():
    assert trajectory_pair(1.0, 0.0) and trajectory_pair(1.0, 0.98)
    assert not trajectory_pair(1.0, 1.0) and not trajectory_pair(1.0, 0.995)
    assert not trajectory_pair(0.0, 1.0)  # π_ref beating the expert never becomes the chosen side
    assert step_pair(1.0, 0.5) and not step_pair(0.8, 0.5) and not step_pair(0.5, 1.0)
    assert group_pair(0.8, 0.4) and group_pair(1.0, 0.0)
    assert not group_pair(0.79, 0.0)  # chosen value below 0.8
    assert not group_pair(0.9, 0.6)  # gap not above 0.3
    assert not group_pair(1.0, 0.7)  # gap exactly 0.3 is not "greater"


def test_distinct_negatives_differ_from_the_expert_and_each_other():
    expert = ["go east", "take key"]
    cands = [
        ["Go  East", "take key"],  # the expert's group, up to case/spaces
        ["go west", "take key"],
        ["go west", "take key"],  # duplicate
        [],  # the episode ended before acting
        ["look", "look"],
        ["go north", "open door"],
        ["inventory", "look"],
    ]
    assert distinct_negatives(expert, cands, k=3) == [
        ["go west", "take key"],
        ["look", "look"],
        ["go north", "open door"],
    ]
    assert distinct_negatives(expert, cands[:1], k=3) == []


# ------------------------------------------------------------------------------ buckets and the curriculum


def test_buckets_and_phases():
    assert [length_bucket(n) for n in (1, 3, 4, 6, 7, 20)] == [0, 0, 1, 1, 2, 2]
    assert [gap_bucket(g) for g in (1.0, 0.7, 0.69, 0.4, 0.39, 0.0)] == [0, 0, 1, 1, 2, 2]
    assert active_buckets(1) == {(0, 0)}
    assert active_buckets(2) == {(0, 0), (0, 1), (1, 0)}
    assert len(active_buckets(3)) == 9 and active_buckets(3) >= active_buckets(2)
    u = unit("g", "group", "t", "o", [{"action": "a", "observation": "x"}] * 5, [], (0, 5), 1.0, 0.5)
    assert u["length"] == 5 and u["gap"] == 0.5 and u["bucket"] == [1, 1]
    with pytest.raises(ValueError, match="needs a rejected side"):
        unit("s", "step", "t", "o", [])
    with pytest.raises(ValueError, match="kind 'trajectory'"):
        unit("s", "trajectory", "t", "o", [], [])


def _unit_prompts() -> list[Prompt]:
    rows = [unit(f"bc{i}", "bc", "t", "o", []) for i in range(2)]
    rows.append(unit("tr", "traj", "t", "o", [], [], None, 1.0, 0.0))
    # One group unit per bucket, named after it.
    for lb, length in enumerate((2, 5, 8)):
        for gb, gap in enumerate((0.9, 0.5, 0.35)):
            rows.append(unit(f"g{lb}{gb}", "group", "t", "o", [], [], (0, length), 1.0, 1.0 - gap))
    return [Prompt(r["id"], r["text"], None, None, {k: v for k, v in r.items() if k != "id"}) for r in rows]


def _curriculum(prompts, k=4, phase_steps=(2, 4), seed=0) -> HPLCurriculum:
    ctx = CurriculumContext(dataset=prompts, prompts_per_step=k, n_samples=1, seed=seed)
    return HPLCurriculum(ctx, HPLCurriculumOptions(phase_steps=list(phase_steps)))


def test_dual_layer_curriculum_phases_widen_the_group_pool():
    prompts = _unit_prompts()
    cur = _curriculum(prompts, k=6)
    seen: dict[int, set[str]] = {1: set(), 2: set(), 3: set()}
    for step in range(12):
        batch = cur.next_batch(step)
        assert len(batch) == 6 and all(r.n_samples == 1 for r in batch)
        seen[cur.phase_at(step)] |= {r.prompt.uid for r in batch}
        assert cur.observe(None)["hpl/phase"] == cur.phase_at(step)
    non_group = {"bc0", "bc1", "tr"}
    assert seen[1] == non_group | {"g00"}  # phase 1: the easiest bucket only (short, large gap)
    assert seen[2] == non_group | {"g00", "g01", "g10"}
    assert {u for u in seen[3] if u.startswith("g")} <= {f"g{i}{j}" for i in range(3) for j in range(3)}
    assert len(seen[3] - non_group) >= 6  # phase 3 draws from all nine buckets
    with pytest.raises(ValueError, match=r"phase_steps must be \[p2, p3\]"):
        HPLCurriculumOptions(phase_steps=[5, 2])


def test_curriculum_resume_continues_the_same_sequence():
    prompts = _unit_prompts()
    a = _curriculum(prompts)
    for step in range(3):
        a.next_batch(step)
    state = a.state_dict()
    rest_a = [[r.prompt.uid for r in a.next_batch(s)] for s in range(3, 8)]
    b = _curriculum(prompts, seed=123)
    b.load_state_dict(state)
    assert [[r.prompt.uid for r in b.next_batch(s)] for s in range(3, 8)] == rest_a


def test_group_unit_without_bucket_is_rejected():
    p = Prompt("g", "t", None, None, {"kind": "group"})
    with pytest.raises(ValueError, match="'g': a group unit needs bucket"):
        _curriculum([p])


# ------------------------------------------------------------------------ transcripts and training rows


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    t = build_tokenizer(tmp_path_factory.mktemp("tok"))
    t.chat_template = EOS_TEMPLATE
    return t


def test_transcript_row_is_the_runner_replay(tok):
    """An offline row (BC/DPO) is token for token what the agent sees when the episode is replayed."""
    fmt = TurnFormat(tok, "Play.", "{task}\n{observation}")
    pool = LocalEnvPool("tests.support.envs:Corridor", {}, 1, 5.0)
    runner = EpisodeRunner(pool, fmt, EpisodeLimits(6, 16, 400), SamplingParams(16))
    actions = ["dance", "go east", "go east"]
    (ep,) = runner.run(
        [EpisodeStart(Prompt("g", "Reach room 2."), forced=actions, max_policy_actions=0)], None
    )
    pool.close()
    assert ep.status == "done" and ep.won
    turns = [{"action": t.action, "observation": t.observation} for t in ep.turns]
    row = transcript_row(fmt, "Reach room 2.", ep.first_observation, turns)
    assert row.prompt_ids == ep.prompt_ids and row.response_ids == ep.response_ids
    assert row.action_mask() == ep.action_mask(include_forced=True)
    # Span masks: exactly the tokens of the chosen actions, decoded back to their text (+ the turn's end).
    m = row.action_mask(1, 2)
    text = tok.decode([t for t, x in zip(row.response_ids, m) if x])
    assert text == "go east</s>"
    assert sum(row.action_mask(0, 1)) + sum(row.action_mask(1, 3)) == sum(row.action_mask())
    # Observations are never targets.
    obs = tok.decode([t for t, x in zip(row.response_ids, row.action_mask()) if not x])
    assert "Room 1." in obs and "go east" not in obs
    # A budget cuts whole actions off the end.
    short = transcript_row(
        fmt, "Reach room 2.", ep.first_observation, turns, len(row.prompt_ids) + row.spans[1][1]
    )
    assert len(short.spans) == 2 and short.spans == row.spans[:2]


def _ctx(tok, max_len=400, skip=False) -> StrategyContext:
    return StrategyContext(
        renderer=None,
        tokenizer=tok,
        algorithm=None,
        sampling=None,
        seed=0,
        pad_id=0,
        max_model_len=max_len,
        skip_invalid=skip,
    )


def _turns(*actions: str) -> list[dict[str, str]]:
    return [{"action": a, "observation": f"after {a}"} for a in actions]


def _prompt(row) -> Prompt:
    return Prompt(row["id"], row["text"], None, None, {k: v for k, v in row.items() if k != "id"})


def test_hpl_train_batch_has_one_labelled_term_per_kind_on_its_spans(tok):
    opts = HPLOptions(weights={"bc": 1.0, "traj": 0.5, "step": 1.0, "group": 2.0}, beta=0.3)
    strat = HPLStrategy(_ctx(tok), opts)
    exp = _turns("go east", "take key", "open door")
    units = [
        unit("b", "bc", "Task.", "Start.", exp),
        unit("t", "traj", "Task.", "Start.", exp, _turns("look", "look"), None, 1.0, 0.0),
        unit("s", "step", "Task.", "Start.", exp[:2], [*exp[:1], *_turns("dance")], (1, 2), 1.0, 0.25),
        unit("g", "group", "Task.", "Start.", exp, [*exp[:1], *_turns("sing", "jump")], (1, 3), 1.0, 0.0),
    ]
    batch = strat.rollout([PromptRequest(_prompt(u), 1) for u in units], None, None)
    assert [s.meta["kind"] for s in batch.samples] == ["bc", "traj", "traj", "step", "step", "group", "group"]
    assert batch.metrics["hpl/units_group"] == 1 and batch.metrics["hpl/step_gap_mean"] == 0.75
    tb = strat.make_train_batch(batch)
    terms = {t.label: t for t in tb.terms}
    assert list(terms) == ["bc", "traj", "step", "group"]
    assert [t.loss for t in tb.terms] == ["nll", "dpo", "dpo", "dpo"]
    assert [t.weight for t in tb.terms] == [1.0, 0.5, 1.0, 2.0]
    assert terms["group"].options["beta"] == 0.3
    # Pair ids: a term's own rows share one id, every other row is -1; the learner keeps units together.
    assert terms["step"].tensors["group"].tolist() == [-1, -1, -1, 2, 2, -1, -1]
    assert terms["step"].tensors["rank"].tolist()[3:5] == [0, 1]
    assert tb.groups.tolist() == [0, 1, 1, 2, 2, 3, 3]

    def scored(term, row):  # the text of the tokens a term scores on one row
        ids = tb.input_ids[row][term.mask[row] > 0].tolist()
        return tok.decode(ids)

    assert scored(terms["bc"], 0) == "go east</s>take key</s>open door</s>"
    assert scored(terms["traj"], 2) == "look</s>look</s>"
    # Step/group: only the span's actions, not the shared expert prefix ("go east") nor observations.
    assert scored(terms["step"], 3) == "take key</s>" and scored(terms["step"], 4) == "dance</s>"
    assert scored(terms["group"], 5) == "take key</s>open door</s>"
    assert scored(terms["group"], 6) == "sing</s>jump</s>"
    # Every row outside a term has an all-zero mask in it.
    for term in tb.terms:
        rows = (term.mask.sum(-1) > 0).nonzero().flatten().tolist()
        kinds = [batch.samples[r].meta["kind"] for r in rows]
        assert set(kinds) == {term.label}


def test_hpl_weights_zero_skip_units_and_long_rows_are_named(tok):
    strat = HPLStrategy(_ctx(tok), HPLOptions(weights={"bc": 1.0}))
    u = unit("t", "traj", "Task.", "Start.", _turns("go east"), _turns("look"), None, 1.0, 0.0)
    batch = strat.rollout([PromptRequest(_prompt(u), 1)], None, None)
    assert batch.samples == [] and batch.metrics["hpl/skipped_weight0"] == 1
    long = unit("long", "bc", "Task.", "Start.", _turns(*["go east"] * 40))
    with pytest.raises(ValueError, match=r"'long' \(bc\).*max_model_len"):
        HPLStrategy(_ctx(tok, max_len=120), HPLOptions()).rollout(
            [PromptRequest(_prompt(long), 1)], None, None
        )
    b = HPLStrategy(_ctx(tok, max_len=120, skip=True), HPLOptions()).rollout(
        [PromptRequest(_prompt(long), 1)], None, None
    )
    assert b.metrics["hpl/skipped_too_long"] == 1 and b.samples == []
    bad = Prompt("x", "t", None, None, {"kind": "pairs"})
    with pytest.raises(ValueError, match="'x': column 'kind' is 'pairs'"):
        strat.rollout([PromptRequest(bad, 1)], None, None)
    with pytest.raises(ValueError, match="every kind is 0"):
        HPLOptions(weights={"bc": 0.0})
    with pytest.raises(ValueError, match="unknown unit kinds"):
        HPLOptions(weights={"trajectory": 1.0})


def test_dpo_on_a_span_ignores_the_shared_prefix(tok):
    """The step/group DPO value depends on the span's log-ratios only: changing the policy's log-probs on
    prefix tokens leaves the loss unchanged, changing them on the span moves it."""
    from trainer.losses import LossInputs, Reducer, get_loss

    strat = HPLStrategy(_ctx(tok), HPLOptions())
    exp = _turns("go east", "take key")
    u = unit("s", "step", "Task.", "Start.", exp, [*exp[:1], *_turns("dance")], (1, 2), 1.0, 0.0)
    tb = strat.make_train_batch(strat.rollout([PromptRequest(_prompt(u), 1)], None, None))
    (term,) = tb.terms
    B, T = tb.input_ids.shape
    ref = torch.zeros(B, T)
    lp = torch.randn(B, T) * 0.1

    def loss(x):
        red = Reducer("token", float(term.mask.sum()), 2.0, 1.0, 1.0)
        return get_loss("dpo").fn(LossInputs(x, x, ref), term, red)[0].item()

    base = loss(lp)
    # The shared prefix: every position before the span's first token (prompt, first action, observation).
    first = term.mask.argmax(-1)
    prefix = torch.arange(T)[None, :] < first[:, None]
    assert prefix[:, : first.min()].all() and first.min() > 10
    assert loss(torch.where(prefix, lp + 5.0, lp)) == pytest.approx(base, abs=1e-6)
    assert loss(lp + 3.0 * term.mask * torch.tensor([[1.0], [0.0]])) != pytest.approx(base, abs=1e-3)
