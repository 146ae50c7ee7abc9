"""Ranking metrics against rankings computed by hand, and the stratified means."""

from __future__ import annotations

import math

import pytest

from launch.ir_metrics import mean_scores, query_scores, stratified

CUTS = (("recall", 1), ("recall", 2), ("recall", 4), ("map", 4), ("ndcg", 1), ("ndcg", 4), ("mrr", 4))
L2, L3, L5 = 1 / math.log2(2), 1 / math.log2(3), 1 / math.log2(5)

# Three questions with known ranks:
#   q1: gold {a}     ranking a b c d   → gold at rank 1
#   q2: gold {a, b}  ranking c a d b   → gold at ranks 2 and 4
#   q3: gold {x}     ranking a b c d   → gold not retrieved
TOY = [
    (["a", "b", "c", "d"], {"a"}),
    (["c", "a", "d", "b"], {"a", "b"}),
    (["a", "b", "c", "d"], {"x"}),
]
BY_HAND = [
    # recall@1, recall@2, recall@4, map@4, ndcg@1, ndcg@4, mrr@4
    (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
    # AP@4 = (1/|G|) (P@2 + P@4) = (1/2)(1/2 + 2/4) = 0.5; NDCG@4 = (1/log2 3 + 1/log2 5) / (1 + 1/log2 3)
    (0.0, 0.5, 1.0, 0.5, 0.0, (L3 + L5) / (L2 + L3), 0.5),
    (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
]
KEYS = [f"{m}@{k}" for m, k in CUTS]


@pytest.mark.parametrize("i", range(3))
def test_per_query_scores_match_hand_computation(i):
    ranking, gold = TOY[i]
    got = query_scores(ranking, gold, CUTS)
    assert got == pytest.approx(dict(zip(KEYS, BY_HAND[i])))


def test_means_over_the_toy_and_the_ap_denominator():
    got = mean_scores([query_scores(r, g, CUTS) for r, g in TOY])
    want = {k: sum(row[j] for row in BY_HAND) / 3 for j, k in enumerate(KEYS)}
    assert got == pytest.approx({"n": 3, **want})
    assert got["recall@1"] == pytest.approx(1 / 3) and got["map@4"] == pytest.approx(0.5)
    # AP@K divides by |G| (trec_eval map_cut), not by the hits found: one of two gold chunks at rank 1 → 0.5
    assert query_scores(["a", "z"], {"a", "b"}, (("map", 2),)) == {"map@2": 0.5}
    # IDCG uses min(|G|, K) hits: the first of two gold chunks at rank 1 is a perfect NDCG@1
    assert query_scores(["a", "z"], {"a", "b"}, (("ndcg", 1),)) == {"ndcg@1": 1.0}
    # no gold: no defined score
    assert query_scores(["a"], set(), CUTS) is None


def test_stratified_groups_by_each_label():
    scores = [{"recall@5": 1.0}, {"recall@5": 0.0}, {"recall@5": 0.5}]
    labels = [
        {"temporal_type": "absolute", "answer_type": "entity"},
        {"temporal_type": "relative", "answer_type": "entity"},
        {"temporal_type": "absolute", "answer_type": "time"},
    ]
    rep = stratified(scores, labels, ["temporal_type", "answer_type"])
    assert rep["overall"] == {"n": 3, "recall@5": pytest.approx(0.5)}
    assert rep["temporal_type"] == {
        "absolute": {"n": 2, "recall@5": 0.75},
        "relative": {"n": 1, "recall@5": 0.0},
    }
    assert rep["answer_type"]["entity"] == {"n": 2, "recall@5": 0.5}
    assert rep["answer_type"]["time"] == {"n": 1, "recall@5": 0.5}
    with pytest.raises(ValueError, match="3 score rows but 2 label rows"):
        stratified(scores, labels[:2], ["temporal_type"])
