"""GQR's prompt, list parsing, list scores and plugins (rewards/gqr.py), against hand-computed values."""

from __future__ import annotations

import math

import pytest

from rewards.gqr import (
    AGGREGATIONS,
    aggregate,
    build_prompt,
    gqr_hit,
    gqr_malformed,
    gqr_short,
    gqr_valid,
    normalize_query,
    parse_query_list,
)
from rewards.registry import resolve_reward


def test_prompt_has_task_query_side_information_and_n():
    p = build_prompt("java enum", "clarification", ["enum switch", "enum values"], n=3)
    assert p.splitlines() == [
        "The query below is vague. Suggest 3 more specific search queries that say what the user may mean.",
        "User query: java enum",
        "Queries other users searched together with it:",
        "- enum switch",
        "- enum values",
        "Write exactly 3 queries, one per line, and nothing else.",
    ]
    assert "together" not in build_prompt("java enum", "completion", [], n=2)  # no side information, no block
    with pytest.raises(ValueError, match="task"):
        build_prompt("q", "rewrite")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("java enum\njava list\njava map\njava set", ["java enum", "java list", "java map", "java set"]),
        ("1. java enum\n2) java list\n(3) java map", ["java enum", "java list", "java map"]),
        ("- java enum\n* java list\n• java map", ["java enum", "java list", "java map"]),
        ('"java enum"\n`java list`', ["java enum", "java list"]),
        ("Here are 4 queries:\njava enum\n\n\njava list", ["java enum", "java list"]),
        ("java enum\nJava Enum?\n java  enum ", ["java enum"]),  # duplicates after normalisation
        ("a b c d e\nf\ng\nh\ni\nj", ["a b c d e", "f", "g", "h"]),  # the first n
        ("", []),
        ("\n\n - \n1.", []),
    ],
)
def test_parse_list_shapes(text, expected):
    assert parse_query_list(text, n=4).queries == expected


def test_parse_drops_echo_prose_and_counts_why():
    prose = "This is a long explanation " * 6
    p = parse_query_list(
        f"[Java] Create new file\n{prose}\njava write file\njava write file", 3, "[java] create new file"
    )
    assert p.queries == ["java write file"]
    assert p.dropped == {"echo": 1, "long": 1, "duplicate": 1}
    # the same words in another order or case, without the tag brackets, are still an echo
    q = "[java]how to convert date to string in java"
    p = parse_query_list("1. How to convert date to string in Java\nhow to convert string to date", 4, q)
    assert p.queries == ["how to convert string to date"] and p.dropped == {"echo": 1}
    assert p.short and not p.malformed
    assert parse_query_list("", 3).malformed and parse_query_list("", 3).short
    full = parse_query_list("a\nb\nc\nd", 3)
    assert not full.short and full.extra == 1


def test_other_delimiter():
    assert parse_query_list("java enum; java list ;", 4, delimiter=";").queries == ["java enum", "java list"]


def test_normalize_keeps_language_names():
    assert normalize_query("[C#] LINQ, in C++!") == "c# linq in c++"


@pytest.mark.parametrize(
    ("how", "ctrs", "n", "expected"),
    [
        ("one_minus_prod", [0.5, 0.5], 4, 0.75),
        ("one_minus_prod", [0.1, 0.2, 0.3], 3, 1 - 0.9 * 0.8 * 0.7),
        ("one_minus_prod", [], 4, 0.0),
        ("mean", [0.2, 0.6], 2, 0.4),
        ("mean", [0.2, 0.6], 4, 0.2),  # short: the empty slots score 0
        ("max", [0.2, 0.6, 0.1], 4, 0.6),
        ("dcg", [1.0, 0.0], 2, 1.0 / (1.0 + 1.0 / math.log2(3))),
        ("dcg", [0.0, 1.0], 2, (1.0 / math.log2(3)) / (1.0 + 1.0 / math.log2(3))),
        ("one_minus_prod", [1.5, -0.2], 2, 1.0),  # clipped to [0, 1]
    ],
)
def test_aggregations_by_hand(how, ctrs, n, expected):
    assert aggregate(ctrs, how, n) == pytest.approx(expected)


def test_aggregation_orders():
    assert set(AGGREGATIONS) == {"one_minus_prod", "mean", "max", "dcg"}
    # dcg prefers the good query first; the others do not care about order
    assert aggregate([0.9, 0.1], "dcg", 2) > aggregate([0.1, 0.9], "dcg", 2)
    assert aggregate([0.9, 0.1], "one_minus_prod", 2) == aggregate([0.1, 0.9], "one_minus_prod", 2)
    with pytest.raises(ValueError, match="aggregation"):
        aggregate([0.1], "sum")


def test_hit_exact_and_overlap():
    comps = ["java enum switch\njava list", "java enum switch case statement", "1. Java Enum Switch!", ""]
    ans = ["[java] enum switch"] * 4
    assert gqr_hit([""] * 4, comps, answer=ans, n=2) == [1.0, 0.0, 1.0, 0.0]
    # token Jaccard of {java, enum, switch} and {java, enum, switch, case, statement} is 3/5
    assert gqr_hit([""] * 4, comps, answer=ans, n=2, match="overlap", threshold=0.5) == [1.0, 1.0, 1.0, 0.0]
    assert gqr_hit([""] * 4, comps, answer=ans, n=2, match="overlap", threshold=0.7)[1] == 0.0
    assert gqr_hit([""], ["x"], answer=[None]) == [None]  # no reference: no signal
    # the hit only counts within the first n queries
    assert gqr_hit([""], ["a\nb\njava enum switch"], answer=ans[:1], n=2) == [0.0]


def test_list_monitors_count_malformed_and_short():
    comps = ["a\nb\nc", "a\nb", "", "Queries:\n"]
    assert gqr_malformed([""] * 4, comps, n=3) == [0.0, 0.0, 1.0, 1.0]
    assert gqr_short([""] * 4, comps, n=3) == [0.0, 1.0, 1.0, 1.0]
    assert gqr_valid([""] * 4, comps, n=3) == [3.0, 2.0, 0.0, 0.0]
    # the user query comes from the `query` column, else from the prompt's "User query:" line
    prompt = build_prompt("java enum", n=2)
    assert gqr_valid([prompt], ["java enum\njava list"], n=2) == [1.0]
    assert gqr_valid([""], ["java enum\njava list"], query=["java enum"], n=2) == [1.0]


def test_plugins_are_registered_and_check_their_kwargs(tmp_path):
    for name in ("gqr_ctr", "gqr_hit", "gqr_malformed", "gqr_short", "gqr_valid"):
        assert callable(resolve_reward(name))
    with pytest.raises(ValueError, match="ctr_model"):
        resolve_reward("gqr_ctr").check_kwargs({"ctr_model": str(tmp_path)})
    with pytest.raises(ValueError, match="aggregation"):
        resolve_reward("gqr_ctr").check_kwargs({"aggregation": "sum"})
    with pytest.raises(ValueError, match="n:"):
        resolve_reward("gqr_short").check_kwargs({"n": 0})
    with pytest.raises(ValueError, match="match"):
        resolve_reward("gqr_hit").check_kwargs({"match": "fuzzy"})


def test_module_doctests():
    import doctest

    import rewards.gqr

    assert doctest.testmod(rewards.gqr).failed == 0
