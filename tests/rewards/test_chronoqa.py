"""ChronoQA answer checking: the normaliser, containment / exact match, yes/no polarity, the reward plugin and
the judge hook's error."""

from __future__ import annotations

import pytest

from rewards.chronoqa import (
    ANSWER_CHECKS,
    JudgeUnavailable,
    chronoqa_answer,
    contains_match,
    exact_match,
    normalize_answer,
    polarity,
    resolve_check,
)
from rewards.registry import resolve_reward


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("ＣＯＴＯＤＡＭＡ 歌词音箱！", "cotodama歌词音箱"),  # NFKC full-width, case, space, punctuation
        ("2019年7月23日。", "2019年7月23日"),
        ("  76 例 ", "76例"),
        ("“阿里、腾讯”", "阿里腾讯"),  # CJK quotes and enumeration comma are punctuation
        ("涨0.82%", "涨082"),  # "." and "%" are punctuation (Po)
        ("$5 + 3", "$5+3"),  # symbols (Sc, Sm) are kept
    ],
)
def test_normalizer(raw, norm):
    assert normalize_answer(raw) == norm


def test_contains_and_exact():
    assert contains_match("答案是 COTODAMA 歌词音箱。", "COTODAMA歌词音箱")
    assert not exact_match("答案是 COTODAMA 歌词音箱。", "COTODAMA歌词音箱")
    assert exact_match("cotodama歌词音箱！", "COTODAMA歌词音箱")
    assert not contains_match("歌词音箱", "COTODAMA歌词音箱")
    assert not contains_match("anything", "。")  # an empty normalised reference never matches


@pytest.mark.parametrize(
    ("prediction", "reference", "want"),
    [
        ("是的，COTODAMA更早。", "是的", True),
        ("不是的，它更晚。", "是的", False),  # contains "是的", but the polarity is no
        ("不是", "不是", True),
        ("是。", "不是", False),
        ("否", "不是", True),  # same polarity, other word
        ("Yes, it was earlier.", "是的", True),
        ("I know it is, yes", "是的", True),  # "know" holds "no" but is no marker: "yes" decides
    ],
)
def test_yes_no_references_compare_polarity(prediction, reference, want):
    assert contains_match(prediction, reference) is want


def test_polarity_longest_marker_first():
    assert polarity("不是") is False and polarity("是不是都行") is True and polarity("2019年") is None


def test_reward_plugin_is_registered_and_scores():
    fn = resolve_reward("chronoqa")
    assert fn is chronoqa_answer
    got = fn(completions=["答案：2019年7月", "2020年", "x"], answer=["2019年7月", "2019年", None])
    assert got == [1.0, 0.0, None]
    assert fn(completions=["答案：2019年7月"], answer=["2019年7月"], mode="exact") == [0.0]
    with pytest.raises(ValueError, match="mode"):
        fn.check_kwargs({"mode": "judge"})


def test_judge_is_a_registry_entry_that_names_what_is_missing():
    assert "judge" in ANSWER_CHECKS
    with pytest.raises(JudgeUnavailable, match=r"aux_models.*learners.*judge. role"):
        resolve_check("judge")
    with pytest.raises(ValueError, match="unknown answer check 'nope'"):
        resolve_check("nope")
