"""rollout/multiturn.py: multi-turn rows are the exact token sequence the engine saw, with targets on the
agent's action tokens only; budgets, expert replay and environment failures end episodes as documented.

The environment here is a hand-built transcript (a scripted corridor game) and the generator replays
scripted replies through the real tokenizer: what is under test is the sequence and mask construction."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rollout.envs.base import parse_action
from rollout.envs.pool import LocalEnvPool
from rollout.multiturn import EpisodeLimits, EpisodeRunner, EpisodeStart, TurnFormat, episode_metrics
from rollout.types import Completion, Prompt, SamplingParams
from tests.support.tiny import build_tokenizer
from trainer.batch import collate

# A template whose assistant turn ends with the tokenizer's EOS ("</s>") then a newline, as ChatML's
# "<|im_end|>\n" does: the generated EOS must not be duplicated, the newline must be added.
EOS_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] + ': ' + m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ '</s>' }}{% endif %}{{ '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)


class ScriptedGenerator:
    """Replies from a script, tokenised with the real tokenizer; records every request it was given."""

    def __init__(self, tok, replies: list[str], eos: bool = True) -> None:
        self.tok, self.replies, self.eos = tok, list(replies), eos
        self.requests: list[list[int]] = []
        self.calls = 0

    def generate(self, requests):
        out = []
        for r in requests:
            self.requests.append(list(r.prompt_ids))
            text = self.replies[self.calls % len(self.replies)]
            self.calls += 1
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
            if self.eos:
                ids = [*ids, self.tok.eos_token_id]
            ids = ids[: r.params.max_new_tokens]
            lps = [-0.1 * (k + 1) for k in range(len(ids))]
            stopped = self.eos and len(ids) and ids[-1] == self.tok.eos_token_id
            out.append([Completion(ids, lps, "stop" if stopped else "length", text)])
        return out


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    t = build_tokenizer(tmp_path_factory.mktemp("tok"))
    t.chat_template = EOS_TEMPLATE
    return t


def _run(tok, replies, starts=None, limits=None, eos=True, fmt=None, pool_size=2, env_opts=None):
    pool = LocalEnvPool("tests.support.envs:Corridor", env_opts or {}, pool_size, step_timeout_s=2.0)
    gen = ScriptedGenerator(tok, replies, eos)
    fmt = fmt or TurnFormat(tok, "Play.", "{task}\n{observation}")
    runner = EpisodeRunner(pool, fmt, limits or EpisodeLimits(6, 16, 400), SamplingParams(max_new_tokens=16))
    starts = starts or [EpisodeStart(Prompt("g0", "Reach room 2."))]
    eps = runner.run(starts, gen)
    pool.close()
    return eps, gen, pool


def test_row_is_the_chat_template_of_the_conversation_and_targets_are_the_actions(tok):
    eps, gen, _ = _run(tok, ["go east", "dance", "go east"])
    (ep,) = eps
    assert ep.status == "done" and ep.won and ep.episode_return == 1.0
    assert [t.action for t in ep.turns] == ["go east", "dance", "go east"]
    # The whole row decodes to the chat template of the conversation; the last assistant turn ends with the
    # EOS the engine generated (the template's newline after it is not part of the row: nothing follows).
    msgs = [{"role": "system", "content": "Play."}, {"role": "user", "content": "Reach room 2.\nRoom 0."}]
    for t in ep.turns:
        msgs += [{"role": "assistant", "content": t.action}, {"role": "user", "content": t.observation}]
    full = tok.apply_chat_template(msgs[:-1], tokenize=False)
    row = ep.prompt_ids + ep.response_ids
    assert tok.decode(row) == full[: -len("\n")]
    # Targets: exactly the generated tokens (each action + its EOS), nothing of the observations/templates.
    mask = ep.target_mask
    assert len(mask) == len(ep.response_ids)
    picked = [i for i, m in zip(ep.response_ids, mask, strict=True) if m]
    assert tok.decode(picked) == "go east</s>dance</s>go east</s>"
    # Turn k+1 was generated from exactly the row's prefix: the learner scores the same context.
    assert len(gen.requests) == 3
    for req in gen.requests:
        assert row[: len(req)] == req
    # Engine log-probs sit on the action tokens, 0 elsewhere.
    s = ep.to_sample("g")
    assert [lp for lp, m in zip(s.logprobs, mask, strict=True) if not m] == [0.0] * (len(mask) - sum(mask))
    assert s.logprobs[: len(ep.turns[0].action_ids)] == ep.turns[0].logprobs
    assert s.prompt.columns["episode_return"] == 1.0 and s.prompt.columns["episode_invalid_actions"] == 1


def test_collate_and_pg_batch_train_only_on_action_tokens(tok):
    from launch.config import AlgorithmConfig
    from rollout.strategies.common import pg_train_batch

    eps, _, _ = _run(tok, ["go east", "go east"])
    s = eps[0].to_sample("g")
    s.reward = 1.0
    col = collate([s.prompt_ids], [s.response_ids], 0, [s.logprobs], [s.target_mask])
    P = len(s.prompt_ids)
    assert col.response_mask[0, :P].sum() == 0
    assert col.response_mask[0, P : P + len(s.response_ids)].tolist() == [float(m) for m in s.target_mask]
    other = eps[0].to_sample("g")
    other.reward = 0.0
    tb = pg_train_batch([s, other], AlgorithmConfig(), 0)
    assert torch.equal(tb.terms[0].mask[0], col.response_mask[0])
    with pytest.raises(ValueError, match="target mask has"):
        collate([s.prompt_ids], [s.response_ids], 0, None, [s.target_mask[:-1]])


def test_plain_transcript_without_chat_template_and_cut_actions(tok):
    fmt = TurnFormat(tok, None, "{task}\n{observation}", use_chat_template=False)
    # No EOS (a base model cut at max_action_tokens): the row still continues exactly.
    eps, gen, _ = _run(tok, ["go east\nand more", "go east"], eos=False, fmt=fmt)
    ep = eps[0]
    assert ep.status == "done" and [t.action for t in ep.turns] == ["go east", "go east"]
    row = ep.prompt_ids + ep.response_ids
    assert tok.decode(row) == "Reach room 2.\nRoom 0.\n> go east\nand more\nRoom 1.\n> go east"
    for req in gen.requests:
        assert row[: len(req)] == req


def test_expert_replay_then_policy_and_budgets(tok):
    starts = [
        EpisodeStart(Prompt("a", "Reach room 2."), forced=["go east"], max_policy_actions=1),
        EpisodeStart(Prompt("b", "Reach room 2."), forced=["look"], max_policy_actions=0),
        EpisodeStart(Prompt("c", "Reach room 2.")),
    ]
    eps, gen, _ = _run(tok, ["jump"], starts=starts, limits=EpisodeLimits(3, 16, 400), pool_size=2)
    a, b, c = eps
    assert [t.forced for t in a.turns] == [True, False] and a.status == "policy_budget"
    assert a.turns[0].action_ids[-1] == tok.eos_token_id  # replayed as the model would have ended it
    assert sum(a.target_mask) == len(a.turns[1].action_ids)  # the forced action is not a PG target
    assert sum(a.action_mask(include_forced=True)) == len(a.turns[0].action_ids) + len(a.turns[1].action_ids)
    assert [t.action for t in b.turns] == ["look"] and b.status == "policy_budget"
    assert c.status == "max_turns" and len(c.turns) == 3 and c.episode_return == 0.0
    assert gen.calls == 1 + 3  # a's one policy action, c's three; b never asked the model
    # Token budget: a row that could not fit another action ends the episode, never overflows.
    eps, _, _ = _run(tok, ["jump"], limits=EpisodeLimits(50, 16, 120))
    assert eps[0].status == "token_budget"
    assert len(eps[0].prompt_ids) + len(eps[0].response_ids) + 16 <= 120 + 16


def test_env_failures_end_only_their_episode_and_the_slot_is_replaced(tok):
    starts = [
        EpisodeStart(Prompt(u, "Reach room 2.", columns={"broken": u == "bad"}))
        for u in ("ok1", "bad", "ok2")
    ]
    eps, _, pool = _run(tok, ["go east"], starts=starts, pool_size=2)
    assert [e.status for e in eps] == ["done", "env_failure", "done"]
    assert "cannot load game bad" in eps[1].failure
    # A step that raises, and one that hangs past the timeout.
    for opts, reason in (
        ({"fail_on": "go east"}, "simulator crashed"),
        ({"fail_on": "go east", "hang_s": 3.0}, "timeout"),
    ):
        eps, _, pool = _run(tok, ["go east"], env_opts=opts, pool_size=1, starts=starts[:1] * 2)
        assert [e.status for e in eps] == ["env_failure", "env_failure"], opts
        assert reason in eps[0].failure and pool.replaced == 2
    m = episode_metrics(eps)
    assert m["env/failures"] == 2.0


def test_parse_action():
    assert parse_action("  > 'go north'\nI think that is best") == "go north"
    assert parse_action("\n\n`open door`") == "open door"
    assert parse_action("   ") == ""


# ----------------------------------------------------------------------------- TextWorld (real environment)


@pytest.fixture(scope="module")
def tw_games(tmp_path_factory) -> Path:
    pytest.importorskip("textworld")
    from rollout.envs.textworld_env import make_split

    out = tmp_path_factory.mktemp("tw")
    make_split(out, 2, 1, seed=0, levels=((1, 2, 1), (2, 3, 2)))
    return out


@pytest.mark.slow
def test_textworld_walkthrough_wins_and_split_is_disjoint(tw_games):
    import json

    from rollout.envs.base import make_env

    train = [json.loads(x) for x in (tw_games / "train.jsonl").read_text().splitlines()]
    test = [json.loads(x) for x in (tw_games / "test.jsonl").read_text().splitlines()]
    assert len(train) == 2 and len(test) == 1
    assert not {r["seed"] for r in train} & {r["seed"] for r in test}
    env = make_env("textworld", {"games_root": str(tw_games)})
    for row in train:
        obs = env.reset(row)
        assert row["text"] in obs.text and "$$" not in obs.text  # objective shown, banner gone
        bad = env.step("dance wildly")
        assert bad.info["valid"] is False and "recognise" in bad.observation and not bad.done
        for a in row["expert_actions"]:
            r = env.step(a)
            assert 0.0 <= r.reward <= 1.0
        assert r.done and r.info["won"] and r.reward == 1.0
    with pytest.raises(Exception, match="no 'game' column"):
        env.reset({"id": "x"})
    env.close()


@pytest.mark.slow
def test_textworld_control_bytes_in_an_action_are_not_a_crash(tw_games):
    """A NUL in a sampled action used to kill the process inside jericho (segfault): run it in a child."""
    import json
    import subprocess
    import sys

    row = json.loads((tw_games / "train.jsonl").read_text().splitlines()[0])
    code = (
        "import json, sys\n"
        "from rollout.envs.base import make_env\n"
        "row = json.loads(sys.argv[1]); env = make_env('textworld', {'games_root': sys.argv[2]})\n"
        "env.reset(row)\n"
        "r = env.step('take\\x00 it\\x1b[31m\\x07')\n"
        "print('OBS', r.info['valid'], r.done, repr(r.observation))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(row), str(tw_games)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "OBS False False" in out.stdout  # the parser's own answer to a command it does not understand


@pytest.mark.slow
def test_ray_env_pool_replaces_hung_crashed_and_dead_actors(ray_cluster):
    from rollout.envs.pool import EnvFailure, RayEnvPool

    pool = RayEnvPool("tests.support.envs:Corridor", {"fail_on": "hang", "hang_s": 30}, 3, step_timeout_s=3)
    pool.reset([0, 1, 2], [{"uid": "a"}] * 3)
    out = pool.step([0, 1, 2], ["go east", "hang", "go east"])
    assert isinstance(out[1], EnvFailure) and "timeout" in out[1].reason
    assert out[0].observation == "Room 1." and out[2].observation == "Room 1."
    assert pool.replaced == 1
    (obs,) = pool.reset([1], [{"uid": "b"}])  # the slot works again, with a fresh actor
    assert obs.text == "Room 0."
    (err,) = pool.reset([2], [{"uid": "c", "broken": True}])
    assert isinstance(err, EnvFailure) and "cannot load game c" in err.reason
    import ray

    ray.kill(pool._actors[0], no_restart=True)  # a dead worker
    (dead,) = pool.step([0], ["go east"])
    assert isinstance(dead, EnvFailure) and "died" in dead.reason
    assert pool.replaced == 3
    pool.close()
