"""DAPO's dynamic sampling and overlong handling: refill bookkeeping with a scripted generator (no actors)."""

import itertools

import pytest

from curricula.base import CurriculumContext
from curricula.uniform import UniformCurriculum, UniformOptions
from launch.config import AlgorithmConfig, ConfigError, DynamicSamplingConfig, load_recipe
from rewards.overlong import overlong_penalty, overlong_reward
from rollout.dynamic import collect_rollouts, varies
from rollout.strategies.grpo import GRPOOptions, GRPOStrategy
from rollout.types import Prompt
from tests.support.scripted import ExactScorer, ScriptedGenerator, strategy_context


def script():
    flip = itertools.count()

    def answer(text, rng):
        if "easy" in text:
            return "1"
        if "hard" in text:
            return "0"
        return "1" if next(flip) % 2 == 0 else "0"  # mixed: alternates, so every group of >= 2 varies

    return answer


class CountingCurriculum(UniformCurriculum):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.observed = 0
        self.draws = 0

    def next_batch(self, step):
        self.draws += 1
        return super().next_batch(step)

    def observe(self, batch):
        self.observed += len(batch.samples)
        return super().observe(batch)


def setup(kinds, per_step=3, n=4, **algo):
    data = [Prompt(f"{k}{i}", f"{k} problem {i}", "1") for i, k in enumerate(kinds)]
    cur = CountingCurriculum(CurriculumContext(data, per_step, n, seed=0), UniformOptions(shuffle=False))
    ctx = strategy_context(**algo)
    return cur, GRPOStrategy(ctx, GRPOOptions()), ScriptedGenerator(script())


KINDS = ["easy", "hard", "mixed"] * 4


def test_refills_until_enough_groups_vary():
    cur, strat, gen = setup(KINDS)
    ds = DynamicSamplingConfig(enabled=True, max_rounds=5)
    batch, m = collect_rollouts(cur, strat, gen, ExactScorer(), 0, ds)
    # Each round of 3 prompts has one mixed problem: three rounds to keep three groups.
    assert m["dynamic/rounds"] == 3 and cur.draws == 3
    assert m["dynamic/prompts"] == 9 and m["dynamic/groups_dropped"] == 6
    assert m["dynamic/groups_kept"] == 3 and m["dynamic/short"] == 0 and m["dynamic/groups_surplus"] == 0
    assert m["num_samples"] == 36 and m["train_samples"] == 12 and len(batch.samples) == 12
    assert cur.observed == 36  # the curriculum sees every generated sample, dropped groups too
    assert {s.prompt.uid for s in batch.samples} == {"mixed2", "mixed5", "mixed8"}
    groups = batch.groups()
    assert len(groups) == 3 and all(varies(g) for g in groups.values())
    assert m["accuracy"] == pytest.approx((12 + 6) / 36)  # over all generated samples, not just the kept
    tb = strat.make_train_batch(batch)
    adv = tb.terms[0].tensors["advantages"]
    assert (adv != 0).all() and tb.input_ids.shape[0] == 12


def test_rounds_are_bounded_and_trim_counts_surplus():
    cur, strat, gen = setup(KINDS)
    _, m = collect_rollouts(cur, strat, gen, ExactScorer(), 0, DynamicSamplingConfig(True, max_rounds=2))
    assert m["dynamic/rounds"] == 2 and m["dynamic/groups_kept"] == 2 and m["dynamic/short"] == 1

    cur, strat, gen = setup(["mixed"] * 6)
    ds = DynamicSamplingConfig(True, max_rounds=3, target_groups=2)
    batch, m = collect_rollouts(cur, strat, gen, ExactScorer(), 0, ds)
    assert m["dynamic/rounds"] == 1 and m["dynamic/groups_kept"] == 2 and m["dynamic/groups_surplus"] == 1
    assert {s.prompt.uid for s in batch.samples} == {"mixed0", "mixed1"}


def test_group_ids_stay_unique_when_a_prompt_returns_in_a_refill():
    cur, strat, gen = setup(["mixed", "easy"], per_step=2, n=2)  # 2 prompts: every refill repeats them
    ds = DynamicSamplingConfig(True, max_rounds=3, target_groups=3)
    batch, m = collect_rollouts(cur, strat, gen, ExactScorer(), 0, ds)
    assert m["dynamic/groups_kept"] == 3
    assert all(len(g) == 2 for g in batch.groups().values())  # never two groups merged into one


def test_nothing_informative_keeps_one_zero_advantage_group():
    cur, strat, gen = setup(["easy", "hard"] * 3, per_step=2)
    batch, m = collect_rollouts(cur, strat, gen, ExactScorer(), 0, DynamicSamplingConfig(True, max_rounds=2))
    assert m["dynamic/groups_kept"] == 0 and m["dynamic/short"] == 1 and len(batch.samples) == 4
    assert (strat.make_train_batch(batch).terms[0].tensors["advantages"] == 0).all()


def test_disabled_is_one_plain_round():
    cur, strat, gen = setup(KINDS)
    batch, m = collect_rollouts(cur, strat, gen, ExactScorer(), 0, DynamicSamplingConfig())
    assert len(batch.samples) == 12 and cur.draws == 1 and "dynamic/rounds" not in m


def test_varies_by_metric():
    cur, strat, gen = setup(["easy"], per_step=1, n=2)
    batch, _ = collect_rollouts(cur, strat, gen, ExactScorer(), 0, DynamicSamplingConfig())
    a, b = batch.samples
    b.reward = 0.5  # same verdict, different reward (a length penalty, say)
    assert varies([a, b], "reward") and not varies([a, b], "accuracy")
    b.reward = None  # a failed plugin is no evidence either way
    assert not varies([a, b], "reward")


def test_overlong_filter_masks_truncated_rows():
    cur, strat, gen = setup(["mixed"], per_step=1, n=4, overlong_filter=True)
    batch, _ = collect_rollouts(cur, strat, gen, ExactScorer(), 0, DynamicSamplingConfig())
    batch.samples[1].finish_reason = "length"
    tb = strat.make_train_batch(batch)
    mask = tb.terms[0].mask
    assert mask[1].sum() == 0 and (mask[[0, 2, 3]].sum(1) > 0).all()
    assert tb.metrics["overlong_filtered"] == 1
    # Without the option the truncated row trains like the others.
    strat.ctx.algorithm = AlgorithmConfig()
    assert strat.make_train_batch(batch).terms[0].mask[1].sum() > 0


def test_overlong_penalty_ramp():
    assert overlong_penalty(12, 16, 4) == 0.0
    assert overlong_penalty(13, 16, 4) == pytest.approx(-0.25)
    assert overlong_penalty(16, 16, 4) == pytest.approx(-1.0)
    assert overlong_penalty(17, 16, 4) == -1.0
    assert overlong_penalty(14, 16, 4, penalty=0.5) == pytest.approx(-0.25)
    ids = [[7] * k for k in (4, 13, 16)]
    assert overlong_reward(["q"] * 3, ["", "", ""], completion_ids=ids, max_len=16, buffer=4) == [
        0.0,
        -0.25,
        -1.0,
    ]
    with pytest.raises(ValueError, match="buffer"):
        overlong_penalty(3, 16, 0)


def test_recipe_checks_name_the_key():
    with pytest.raises(ConfigError, match=r"rewards.functions\[1\].kwargs: overlong needs max_len"):
        load_recipe(None, ["rewards.functions=[{name: math},{name: overlong}]"])
    with pytest.raises(ConfigError, match=r"algorithm\.dynamic_sampling\.metric"):
        load_recipe(None, ["algorithm.dynamic_sampling.enabled=true", "algorithm.dynamic_sampling.metric=x"])
    with pytest.raises(ConfigError, match="fixed dataset"):
        load_recipe("recipes/sft_tiny_cpu.yaml", ["algorithm.dynamic_sampling.enabled=true"])


def test_scorer_passes_completion_ids():
    from launch.config import RewardSpec
    from rewards.scorer import RewardScorer

    cur, strat, gen = setup(["mixed"], per_step=1, n=2)
    batch = strat.rollout(cur.next_batch(0), gen, ExactScorer())
    spec = RewardSpec(name="overlong", kwargs={"max_len": 3, "buffer": 2})
    with RewardScorer([spec], isolation="inline") as scorer:
        scorer.score(batch.samples)
    # "1"/"0" + EOS = 2 tokens: one token into the 2-token buffer before the cap of 3.
    assert [s.reward for s in batch.samples] == [pytest.approx(-0.5)] * 2
