"""CurES unit tests: ρ*, quotas, σ, Beta updates, schedule and state round-trip (fake generator/scorer)."""

import math
import random

import numpy as np
import pytest
import torch

from curricula.base import CurriculumContext
from curricula.cures import (
    CuresCurriculum,
    CuresOptions,
    allocate_rollouts,
    gradient_sigma,
    norm_proxy_sigma,
    sampling_probs,
)
from curricula.data import PromptDataset
from rollout.types import Completion, Prompt, RolloutBatch, Sample
from trainer.advantages import get_advantage


def test_sampling_probs_hand_computed():
    probs = sampling_probs(np.array([0.5, 0.1]), 0.1)  # scores 0.5/0.1 = 5 and 0.3/0.1 = 3
    assert probs[0] == pytest.approx(1 / (1 + math.exp(-2)))
    assert probs.sum() == pytest.approx(1.0)
    # Per-prompt temperatures (the released code's 100·(correct+1)) make it nearly uniform.
    code = sampling_probs(np.array([0.5, 0.1]), np.array([100.0, 300.0]))
    assert abs(code[0] - 0.5) < 0.01


@pytest.mark.parametrize(
    ("sigma", "total", "expected"),
    [
        ([1, 1, 2], 16, [4, 4, 8]),
        ([1, 3], 12, [4, 8]),  # raw 3 / 9 → clamped to 4 / 8
        ([1, 2, 3, 4], 20, [4, 4, 5, 7]),  # 4, 4, 5.14, 6.86 → largest remainder
        ([0, 0, 0], 15, [5, 5, 5]),  # no information: even split
        ([1, 1], 100, [8, 8]),  # budget above m·n_max
        ([5, 1], 2, [4, 4]),  # budget below m·n_min
    ],
)
def test_allocate_rollouts_hand_computed(sigma, total, expected):
    got = allocate_rollouts(sigma, total, 4, 8)
    assert got == expected
    assert sum(got) == min(max(total, 4 * len(sigma)), 8 * len(sigma))


def test_gradient_sigma_formula():
    # p = 0.5, E1‖g‖² = 4, E0‖g‖² = 1, ‖E1g − E0g‖² = 1: σ² = .125·4 + .125·1 − .0625·1 = 0.5625.
    assert gradient_sigma(0.5, 4.0, 1.0, 1.0) == pytest.approx(0.75)
    # The proxy with means 2 and 1 uses (2 − 1)² for the cross term: the same number here.
    assert norm_proxy_sigma(0.5, 4.0, 2.0, 1.0, 1.0) == pytest.approx(0.75)
    # Equal norms c and parallel means: σ = c·√(p(1−p)), the Bernoulli form.
    assert norm_proxy_sigma(0.2, 9.0, 3.0, 9.0, 3.0) == pytest.approx(3.0 * math.sqrt(0.16))


def test_vector_estimator_and_norm_proxy_differ_on_a_hand_built_prompt():
    """Two correct samples with g = +v and −v, one wrong sample with g = 0 (issue 20's example).

    True cross term: mean₁g = 0 and mean₀g = 0, so ‖E₁g − E₀g‖² = 0 and σ² = p(1−p)²‖v‖². The norm proxy
    takes (E₁‖g‖ − E₀‖g‖)² = ‖v‖² and subtracts p²(1−p)²‖v‖² too much."""
    from trainer.grad_stats import group_moments

    v = torch.tensor([3.0, 4.0])  # ‖v‖² = 25
    m = group_moments(iter([v, -v, torch.zeros(2)]), [True, True, False])
    assert (m["n1"], m["n0"]) == (2, 1) and m["q1"] == pytest.approx(50.0) and m["s1"] == pytest.approx(10.0)
    assert m["d2"] == pytest.approx(0.0) and m["q0"] == 0.0
    p, q = 2 / 3, 1 / 3
    sq1, mean1 = m["q1"] / m["n1"], m["s1"] / m["n1"]
    vec = gradient_sigma(p, sq1, 0.0, m["d2"])
    proxy = norm_proxy_sigma(p, sq1, mean1, 0.0, 0.0)
    assert vec == pytest.approx(math.sqrt(p * q * q * 25.0))
    assert proxy == pytest.approx(math.sqrt(p * q * q * 25.0 - (p * q) ** 2 * 25.0))
    assert proxy < 0.8 * vec  # the proxy under-estimates σ here
    # One class only: no cross term.
    assert math.isnan(group_moments([v, v], [True, True])["d2"])
    # Parallel means (g = v correct, g = 2v wrong): the two agree.
    m2 = group_moments([v, 2 * v], [True, False])
    assert m2["d2"] == pytest.approx(25.0)
    assert gradient_sigma(0.5, 25.0, 100.0, m2["d2"]) == pytest.approx(
        norm_proxy_sigma(0.5, 25.0, 5.0, 100.0, 10.0)
    )


# ---------------------------------------------------------------- with fake rollouts


def dataset(n=12):
    return PromptDataset([Prompt(f"p{i}", f"What is {i} + 1?", str(i + 1)) for i in range(n)], "toy")


class Renderer:
    class tokenizer:
        pad_token_id = 0
        eos_token_id = 1

    def render(self, prompt):
        return [ord(c) for c in prompt.text]


class FakeGenerator:
    """Prompt i is answered right with probability i / n (deterministic seed)."""

    def __init__(self, n, seed=0):
        self.n, self.rng, self.requests = n, random.Random(seed), []

    def generate(self, requests):
        self.requests.append([r.n for r in requests])
        out = []
        for r in requests:
            i = int("".join(chr(c) for c in r.prompt_ids).split()[2])
            comps = []
            for _ in range(r.n):
                ans = str(i + 1) if self.rng.random() < i / self.n else "x"
                comps.append(Completion([5, 6], [-1.0, -1.0], "stop", ans))
            out.append(comps)
        return out


class FakeScorer:
    def score(self, samples):
        for s in samples:
            s.correct = s.response_text == s.prompt.answer
            s.reward = float(s.correct)
        return {}


class FakeLearners:
    """Stands in for LearnerGroup.call("run", grad_norms, batch): norm = 1 + row length."""

    world = 2

    def __init__(self):
        self.calls = 0

    def call(self, method, fn, batch):
        assert method == "run" and fn.endswith("sample_grad_norms"), fn
        self.calls += 1
        lens = batch.attention_mask.sum(-1).tolist()
        return [[(i, 1.0 + lens[i]) for i in range(r, batch.num_rows, self.world)] for r in range(self.world)]


def make(options, n=12, k=3, learners=None, seed=0):
    ctx = CurriculumContext(
        dataset(n), k, 4, seed, FakeGenerator(n, seed), FakeScorer(), learners, Renderer()
    )
    return CuresCurriculum(ctx, options)


def rollout(requests, rng):
    samples = []
    for r in requests:
        for _ in range(r.n_samples):
            ok = rng.random() < 0.5
            samples.append(
                Sample(r.prompt, [1], [2], [0.0], "stop", "", r.prompt.uid, reward=float(ok), correct=ok)
            )
    return RolloutBatch(samples)


def test_cold_start_sets_beta_counts_and_schedule_moves_on():
    cur = make(CuresOptions(num_subsets=2, steps_per_subset=2, sigma_estimator="bernoulli"))
    reqs = cur.next_batch(0)
    assert len(reqs) == 3 and len({r.prompt.uid for r in reqs}) == 3
    assert all(4 <= r.n_samples <= 8 for r in reqs) and sum(r.n_samples for r in reqs) == 12
    assert cur.ctx.generator.requests[0] == [4] * 6  # cold start: N' = 4 for each of the 6 subset prompts
    # α + β − prior = the number of cold-start verdicts per prompt.
    assert np.allclose(cur.est.alpha + cur.est.beta - 2.0, 4.0)
    first_subset = set(cur.subset)
    m = cur.observe(rollout(reqs, random.Random(0)))
    assert m["cures/samples_total"] == 24 + 12 and m["cures/cold_start_samples"] == 24
    cur.next_batch(1)
    cur.observe(rollout([], random.Random(0)))
    cur.next_batch(2)  # third step: the second subset, a fresh cold start and fresh estimates
    assert set(cur.subset).isdisjoint(first_subset) and cur.subset_idx == 1
    assert np.allclose(cur.est.alpha + cur.est.beta - 2.0, 4.0)


def test_observe_updates_beta_counts():
    cur = make(CuresOptions(num_subsets=1, cold_start_samples=0, sigma_estimator="bernoulli"))
    reqs = cur.next_batch(0)
    uid = reqs[0].prompt.uid
    i = next(j for j, d in enumerate(cur.subset) if cur.dataset[d].uid == uid)
    a0, b0 = cur.est.alpha[i], cur.est.beta[i]
    p = reqs[0].prompt
    samples = [
        Sample(p, [1], [2], [0.0], "stop", "", uid, reward=1.0, correct=c) for c in (True, True, False, None)
    ]
    cur.observe(RolloutBatch(samples))
    assert (cur.est.alpha[i], cur.est.beta[i]) == (a0 + 2, b0 + 1)  # None ignored
    # The released code's behaviour without group filtering: counts frozen after the cold start.
    frozen = make(CuresOptions(num_subsets=1, cold_start_samples=0, beta_updates="cold_start_only"))
    frozen.next_batch(0)
    frozen.observe(RolloutBatch(samples))
    assert frozen.est.alpha.sum() == len(frozen.subset)


def test_sampling_prefers_uncertain_prompts():
    cur = make(
        CuresOptions(
            num_subsets=1, cold_start_samples=0, tau=0.05, steps_per_subset=100, sigma_estimator="bernoulli"
        ),
        n=12,
        k=1,
    )
    cur.est.alpha[:] = 1.0
    cur.est.beta[:] = 50.0  # p̂ ≈ 0.02 everywhere ...
    cur.est.alpha[3] = cur.est.beta[3] = 10.0  # ... except one prompt at 0.5
    picks = [cur.next_batch(s)[0].prompt.uid for s in range(40)]
    assert picks.count(cur.dataset[cur.subset[3]].uid) > 30


def test_drop_uniform_prompts_excludes_solved_and_unsolved():
    cur = make(
        CuresOptions(
            num_subsets=1, drop_uniform_prompts=True, sigma_estimator="bernoulli", cold_start_samples=8
        ),
        n=12,
        k=3,
    )
    cur.next_batch(0)
    sig = cur._sigma()
    uniform = (cur.est.right == 0) | (cur.est.wrong == 0)
    assert np.all(sig[uniform] == 0) and np.all(sig[~uniform] > 0)


def test_embedding_norm_estimator_calls_learners_and_uses_norms():
    learners = FakeLearners()
    cur = make(
        CuresOptions(num_subsets=1, sigma_estimator="embedding_norm", grad_norms_in_steps=True),
        learners=learners,
    )
    reqs = cur.next_batch(0)
    assert learners.calls == 1
    assert (cur.est.n1 + cur.est.n0).sum() == 4 * len(cur.subset)
    assert np.all(cur.est.s1 + cur.est.s0 > 0)
    cur.observe(rollout(reqs, random.Random(1)))
    assert learners.calls == 2


def test_state_round_trip_gives_the_same_sequence(tmp_path):
    opts = CuresOptions(num_subsets=2, steps_per_subset=2, sigma_estimator="embedding_norm")
    a = make(opts, learners=FakeLearners())
    for s in range(3):
        a.observe(rollout(a.next_batch(s), random.Random(s)))
    torch.save(a.state_dict(), tmp_path / "c.pt")
    b = make(opts, learners=FakeLearners(), seed=99)  # a different seed: everything must come from the state
    b.load_state_dict(torch.load(tmp_path / "c.pt", weights_only=False))
    b.ctx.generator.rng.setstate(a.ctx.generator.rng.getstate())
    for s in range(3, 8):
        ra, rb = a.next_batch(s), b.next_batch(s)
        assert [(r.prompt.uid, r.n_samples) for r in ra] == [(r.prompt.uid, r.n_samples) for r in rb]
        a.observe(rollout(ra, random.Random(s)))
        b.observe(rollout(rb, random.Random(s)))


def test_uniform_allocation_ablation_splits_the_budget_evenly():
    def quotas(allocation):
        opts = CuresOptions(
            num_subsets=1,
            allocation=allocation,
            sigma_estimator="bernoulli",
            n_min=1,
            n_max=12,
            cold_start_samples=0,
        )
        cur = make(opts, k=3)
        cur.est.alpha[:] = np.arange(1.0, 13.0)  # p̂ from 0.5 to 0.92: every prompt has its own σ
        return [sorted(r.n_samples for r in cur.next_batch(s)) for s in range(4)]

    assert all(q == [4, 4, 4] for q in quotas("uniform"))  # N = 3 × 4 split evenly whatever σ says
    assert all(sum(q) == 12 for q in quotas("sigma")) and any(q != [4, 4, 4] for q in quotas("sigma"))


@pytest.mark.parametrize("name", ["grpo", "reinforce_pp"])
def test_advantages_with_uneven_quotas(name):
    # Groups of 4 and 7 samples (CurES quotas): each group is centred on its own mean.
    rewards = [1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 0]
    groups = ["a"] * 4 + ["b"] * 7
    adv = np.array(get_advantage(name)(rewards, groups))
    assert adv[:4].sum() == pytest.approx(0.0, abs=1e-9) and adv[4:].sum() == pytest.approx(0.0, abs=1e-9)
    if name == "grpo":
        assert adv[0] == pytest.approx((1 - 0.25) / np.std([1, 0, 0, 0]), rel=1e-5)
    else:
        centred = np.array(rewards, float) - np.repeat([0.25, 4 / 7], [4, 7])
        assert np.allclose(adv, centred / (centred.std() + 1e-6))


def test_options_are_validated_when_the_recipe_loads():
    from launch.config import load_recipe

    with pytest.raises(ValueError, match="sigma_estimator"):
        load_recipe(None, ["curriculum.name=cures", "curriculum.options.sigma_estimator=magic"])
