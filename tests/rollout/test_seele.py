"""SEELE unit tests with a fake generator whose accuracy rises with the hint rate (no actors)."""

import random
from dataclasses import dataclass

import pytest
import torch

from launch.config import AlgorithmConfig
from rollout.strategies.base import StrategyContext
from rollout.strategies.seele import SeeleOptions, SeeleStrategy, hint_mask
from rollout.types import Completion, Prompt, PromptRequest, SamplingParams

PAD = 0


@dataclass
class CharTokenizer:
    pad_token_id: int = PAD
    eos_token_id: int = 1

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


class CharRenderer:
    """Prompt → "Q: <text>\nA: " as code points (one token per character)."""

    tokenizer = CharTokenizer()

    def render(self, prompt: Prompt) -> list[int]:
        return [ord(c) for c in f"Q: {prompt.text}\nA: "]

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]


SOLUTIONS = {
    "a": ("What is 23 + 45?", "68", "23 + 45 = 68. The answer is 68."),
    "b": ("What is 12 + 30?", "42", "12 + 30 = 42.\nThe answer is 42."),
}


class HintGenerator:
    """Correct with probability ≈ clip(2·(hint fraction) − 0.6): a problem that needs ~55% of its solution."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.calls = []

    def generate(self, requests):
        out = []
        for r in requests:
            text = "".join(chr(i) for i in r.prompt_ids)
            uid = next(u for u, (q, _, _) in SOLUTIONS.items() if q in text)
            sol = SOLUTIONS[uid][2]
            hint = text.split("\nA: ", 1)[1]
            frac = len(hint) / len(sol)
            self.calls.append((uid, frac))
            pc = min(max(2.0 * frac - 0.6, 0.0), 1.0)
            comps = []
            for _ in range(r.n):
                # A right answer completes the solution (whatever of it the hint did not show).
                ans = sol[len(hint) :] if self.rng.random() < pc else " 0"
                ans = ans or " "
                comps.append(Completion([ord(c) for c in ans] + [1], [-0.5] * (len(ans) + 1), "stop", ans))
            out.append(comps)
        return out


class ExactScorer:
    """Right when the text (hint ⊕ response) ends with the answer."""

    def __init__(self):
        self.seen = []

    def score(self, samples):
        for s in samples:
            self.seen.append(s.response_text)
            ok = s.response_text.strip().rstrip(".").endswith(s.prompt.answer)
            s.reward, s.correct = float(ok), ok
        return {"reward_mean": sum(s.reward for s in samples) / len(samples), "reward_time_s": 0.01}


def make(options=None, **algo):
    ctx = StrategyContext(
        renderer=CharRenderer(),
        tokenizer=CharTokenizer(),
        algorithm=AlgorithmConfig(**algo),
        sampling=SamplingParams(max_new_tokens=8),
        seed=0,
        pad_id=PAD,
    )
    return SeeleStrategy(ctx, options or SeeleOptions())


def requests(n=8):
    return [PromptRequest(Prompt(u, q, a, s), n) for u, (q, a, s) in SOLUTIONS.items()]


def test_cold_start_then_adapts_towards_target():
    strat, gen = make(), HintGenerator()
    batch = strat.rollout(requests(16), gen, ExactScorer())
    sol_a = SOLUTIONS["a"][2]
    first = next(f for u, f in gen.calls[:2] if u == "a")
    assert first == pytest.approx((len(sol_a) - 1) / len(sol_a))  # cold start: all but one token
    assert {f"seele/acc_round_{i}" for i in range(1, 5)} <= set(batch.metrics)
    assert batch.metrics["seele/acc_round_1"] > 0.8  # almost the whole solution: easy
    # Later rounds move towards the rate where accuracy is 0.5 (hint fraction 0.55).
    last = [f for u, f in gen.calls[-2:]]
    assert all(0.35 < f < 0.8 for f in last)
    assert batch.metrics["seele/target_gap_last"] < batch.metrics["seele/acc_round_1"] - 0.5 + 1e-9
    assert len(batch.samples) == 4 * 2 * 16
    assert {s.round for s in batch.samples} == {0, 1, 2, 3}
    # The final rate is stored and starts the next visit.
    assert set(strat.hint_rate) == {"a", "b"}
    stored = strat.hint_rate["a"]
    gen.calls.clear()
    strat.rollout(requests(4), gen, ExactScorer())
    assert dict(gen.calls[:2])["a"] == pytest.approx(round(stored * len(sol_a)) / len(sol_a))


def test_second_visit_starts_from_stored_rate():
    strat = make()
    strat.load_state_dict({"hint_rate": {"a": 0.5, "b": 0.0}})
    gen = HintGenerator()
    strat.rollout(requests(2), gen, ExactScorer())
    first = dict(gen.calls[:2])
    assert first["a"] == pytest.approx(round(0.5 * len(SOLUTIONS["a"][2])) / len(SOLUTIONS["a"][2]))
    assert first["b"] == 0.0


def test_train_batch_masks_and_shared_advantages():
    strat = make(kl_coef=0.001)
    batch = strat.rollout(requests(4), HintGenerator(1), ExactScorer())
    tb = strat.make_train_batch(batch)
    pg = next(t for t in tb.terms if t.loss == "policy_gradient")
    nll = next(t for t in tb.terms if t.loss == "nll")
    kl = next(t for t in tb.terms if t.loss == "kl")
    assert nll.weight == 0.001 and kl.weight == 0.001
    for b, s in enumerate(batch.samples):
        P, R, h = len(s.prompt_ids), len(s.response_ids), s.meta["hint_len"]
        # PG and KL only on generated tokens.
        assert pg.mask[b].nonzero().flatten().tolist() == list(range(P, P + R))
        assert torch.equal(kl.mask[b], pg.mask[b])
        # The NLL span is exactly the hint tokens, which are the solution's first h tokens.
        span = nll.mask[b].nonzero().flatten().tolist()
        assert span == list(range(P - h, P))
        sol_ids = [ord(c) for c in s.prompt.solution]
        assert tb.input_ids[b, P - h : P].tolist() == sol_ids[:h]
    # One advantage group per problem across all rounds: Dr.GRPO, A = r − mean over the m·n responses.
    adv = pg.tensors["advantages"]
    for uid in ("a", "b"):
        rows = [i for i, s in enumerate(batch.samples) if s.prompt.uid == uid]
        assert len({batch.samples[i].group_id for i in rows}) == 1
        r = torch.tensor([batch.samples[i].reward for i in rows])
        assert torch.allclose(adv[rows], r - r.mean(), atol=1e-6)


def test_hint_mask_without_hint_is_empty():
    strat = make(SeeleOptions(rounds=1))
    strat.load_state_dict({"hint_rate": {"a": 0.0, "b": 0.0}})
    batch = strat.rollout(requests(2), HintGenerator(), ExactScorer())
    assert hint_mask(batch.samples).sum() == 0


def test_steps_unit_cuts_at_line_boundaries():
    strat = make(SeeleOptions(hint_unit="steps", rounds=1))
    gen = HintGenerator()
    strat.rollout(requests(2), gen, ExactScorer())
    # "b" has two lines: cold start shows (2−1)/2 of them = the first line exactly.
    b_frac = dict(gen.calls)["b"]
    assert b_frac == pytest.approx(len("12 + 30 = 42.\n") / len(SOLUTIONS["b"][2]))


def test_state_round_trip(tmp_path):
    strat = make()
    strat.rollout(requests(4), HintGenerator(), ExactScorer())
    torch.save(strat.state_dict(), tmp_path / "s.pt")
    other = make()
    other.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=False))
    assert other.hint_rate == strat.hint_rate
    g1, g2 = HintGenerator(5), HintGenerator(5)
    strat.rollout(requests(4), g1, ExactScorer())
    other.rollout(requests(4), g2, ExactScorer())
    assert g1.calls == g2.calls


def test_missing_solution_is_a_clear_error():
    strat = make()
    with pytest.raises(ValueError, match="solution_field"):
        strat.rollout([PromptRequest(Prompt("x", "What is 1 + 1?", "2"), 2)], HintGenerator(), ExactScorer())


def test_options_are_validated_when_the_recipe_loads():
    from launch.config import load_recipe

    with pytest.raises(ValueError, match="target_accuracy"):
        load_recipe(None, ["strategy.name=seele", "strategy.options.target_accuracy=1.5"])


def test_rewards_read_hint_and_response():
    strat, scorer = make(SeeleOptions(rounds=1)), ExactScorer()
    strat.load_state_dict({"hint_rate": {"a": 0.9, "b": 0.9}})
    batch = strat.rollout(requests(2), HintGenerator(), scorer)
    sol = SOLUTIONS["a"][2]
    n = round(0.9 * len(sol))
    a_texts = [t for t, s in zip(scorer.seen, batch.samples) if s.prompt.uid == "a"]
    assert all(t.startswith(sol[:n]) for t in a_texts)  # the scorer saw the hint first ...
    assert all(
        not s.response_text.startswith(sol[:n]) for s in batch.samples if s.prompt.uid == "a"
    )  # ... restored


def test_response_only_reward_does_not_credit_the_hint():
    """Near-full hints end mid-answer ("... The answer is 6"): a completion "8." is right read after the hint
    and wrong on its own, which is the paper's verifier on the response."""
    always = HintGenerator()
    always.rng = random.Random(0)
    always.rng.random = lambda: 0.0  # every completion finishes the solution
    accs = {}
    for with_hint in (True, False):
        strat, scorer = make(SeeleOptions(rounds=1, score_with_hint=with_hint)), ExactScorer()
        strat.load_state_dict({"hint_rate": {"a": 0.97, "b": 0.97}})
        batch = strat.rollout(requests(4), always, scorer)
        accs[with_hint] = batch.metrics["accuracy"]
        if not with_hint:
            assert scorer.seen == [s.response_text for s in batch.samples]  # the response alone
    assert accs[True] == 1.0 and accs[False] == 0.0


def test_fixed_hint_rate_ablation_skips_the_controller():
    strat, gen = make(SeeleOptions(fixed_hint_rate=0.5)), HintGenerator()
    strat.load_state_dict({"hint_rate": {"a": 0.9, "b": 0.1}})  # ignored: the rate is fixed
    batch = strat.rollout(requests(8), gen, ExactScorer())
    for uid, frac in gen.calls:
        sol = SOLUTIONS[uid][2]
        assert frac == pytest.approx(round(0.5 * len(sol)) / len(sol))
    assert {s.round for s in batch.samples} == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="fixed_hint_rate"):
        SeeleOptions(fixed_hint_rate=1.5)
