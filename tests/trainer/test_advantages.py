import math

import pytest

from trainer.advantages import ADVANTAGES, get_advantage


def test_grpo_hand_computed():
    # group a: rewards 1, 0, 0, 1 -> mean .5, population std .5 -> ±1
    adv = get_advantage("grpo")([1.0, 0.0, 0.0, 1.0, 0.5], ["a", "a", "a", "a", "b"])
    assert adv[:4] == pytest.approx([1.0, -1.0, -1.0, 1.0], abs=1e-5)
    assert adv[4] == 0.0  # singleton group: no baseline, no signal


def test_dr_grpo_no_std_division():
    adv = get_advantage("dr_grpo")([1.0, 0.0, 0.0, 0.0], ["g"] * 4)
    assert adv == pytest.approx([0.75, -0.25, -0.25, -0.25])


def test_uniform_group_gives_zero():
    assert get_advantage("grpo")([1.0, 1.0, 1.0], ["g"] * 3) == [0.0, 0.0, 0.0]


def test_none_rewards_are_excluded_from_stats():
    adv = get_advantage("dr_grpo")([1.0, None, 0.0], ["g"] * 3)
    assert adv == pytest.approx([0.5, 0.0, -0.5])


def test_variable_group_sizes():
    rewards = [1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    groups = ["x"] * 2 + ["y"] * 6
    adv = get_advantage("dr_grpo")(rewards, groups)
    assert adv[:2] == pytest.approx([0.5, -0.5])
    assert adv[2:] == pytest.approx([1 - 2 / 6, -2 / 6, -2 / 6, -2 / 6, -2 / 6, 1 - 2 / 6])


def test_rloo_leave_one_out():
    adv = get_advantage("rloo")([1.0, 0.0, 0.0], ["g"] * 3)
    assert adv == pytest.approx([1.0, -0.5, -0.5])


def test_reinforce_pp_batch_std():
    rewards = [1.0, 0.0, 1.0, 1.0]
    adv = get_advantage("reinforce_pp")(rewards, ["a", "a", "b", "b"])
    centered = [0.5, -0.5, 0.0, 0.0]
    std = math.sqrt(sum(c * c for c in centered) / 4)
    assert adv == pytest.approx([c / (std + 1e-6) for c in centered], rel=1e-5)


def test_unknown_estimator_names_registered_ones():
    with pytest.raises(KeyError, match="grpo"):
        get_advantage("nope")
    assert {"grpo", "dr_grpo", "rloo", "reinforce_pp"} <= set(ADVANTAGES)
