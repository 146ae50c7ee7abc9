"""GQR data (curricula/gqr_data.py): co-occurrence retrieval by hand, the session split, the files the recipes
read, and the CosoBe build (when ../shared/data is present)."""

from __future__ import annotations

import json
import math

import pytest

from curricula.gqr_data import (
    LoggedQuery,
    QueryRetriever,
    Session,
    build,
    load_sessions,
    split_sessions,
    task_of,
)
from tests.conftest import SHARED_DATA

COSOBE = SHARED_DATA / "llm" / "cosobe_query_sessions" / "sessions.jsonl"


def _s(sid: str, *queries: str, clicked: tuple[int, ...] = ()) -> Session:
    return Session(
        sid,
        [LoggedQuery(q, [1] if i in clicked else [], {1: f"title of {q}"}) for i, q in enumerate(queries)],
    )


SESSIONS = [
    _s("1", "java enum", "enum switch", "enum values"),
    _s("2", "java enum", "enum switch"),
    _s("3", "python list", "list comprehension"),
    _s("4", "enum values", "enum ordinal"),
]


def test_cooccurrence_counts_by_hand():
    r = QueryRetriever(SESSIONS)
    # word IDFs over the 6 logged queries: ln(7 / (1 + df)) + 1; "enum" is in 4 of them
    idf = {w: math.log(7 / (1 + d)) + 1 for w, d in {"java": 1, "enum": 4, "values": 1, "switch": 1}.items()}
    sim = idf["enum"] / (idf["java"] + idf["enum"] + idf["values"])  # "java enum" vs "enum values": 0.229
    assert r.similarity("java enum", "enum values") == pytest.approx(sim) and sim > 0.2
    # the anchor "java enum" (exact, sim 1) co-occurs with "enum switch" in sessions 1 and 2, with "enum values"
    # in 1; the anchors "enum switch", "enum values", "enum ordinal" (sim 0.229 each) add the other queries of
    # their sessions: "enum values" (from "enum switch" in session 1, "enum ordinal" in 4), "enum ordinal" (4)
    scores = r._cooccurrence("java enum", "java enum", None)
    assert scores == pytest.approx({"enum switch": 2 + sim, "enum values": 1 + 2 * sim, "enum ordinal": sim})
    assert r.retrieve("java enum", 3) == ["enum switch", "enum values", "enum ordinal"]
    assert r.retrieve("java enum", 1) == ["enum switch"]
    # leave-one-session-out: without session 1, "enum switch" keeps 1 (session 2); "enum values" and "enum
    # ordinal" keep sim each (session 4), a tie broken by the text
    assert r.retrieve("java enum", 3, exclude_session="1") == ["enum switch", "enum ordinal", "enum values"]
    assert r.retrieve("golang channels", 3) == []  # nothing similar in the logs
    assert r.retrieve("java enum", 0) == []


def test_cooccurrence_backs_off_to_similar_logged_queries():
    r = QueryRetriever(SESSIONS)
    # "python list" is not exact, but "python list" vs "python list sort" share 2 of 3 words: its session's
    # other query comes back; never the query itself
    got = r.retrieve("python list sort", 3)
    assert got == ["list comprehension", "python list"] or got[0] == "list comprehension"
    assert "python list sort" not in got


def test_embedding_retriever_returns_nearest_logged_queries():
    r = QueryRetriever(SESSIONS, mode="embedding")
    got = r.retrieve("enum value", 2)
    assert got[0] == "enum values" and len(got) == 2
    with pytest.raises(ValueError, match="retriever"):
        QueryRetriever(SESSIONS, mode="simcse")


def test_task_rule():
    assert task_of("java enum", "java enum switch") == "clarification"
    assert task_of("java enum", "enum switch") == "suggestion"
    assert task_of("java enum", "java enum") == "suggestion"
    assert task_of("java enum", None) == "suggestion"


def test_split_is_by_session_and_seeded():
    sessions = [_s(str(i), f"q{i}") for i in range(20)]
    a_train, a_test = split_sessions(sessions, 0.25, seed=1)
    _, b_test = split_sessions(sessions, 0.25, seed=1)
    assert [s.sid for s in a_test] == [s.sid for s in b_test] and len(a_test) == 5
    assert {s.sid for s in a_train}.isdisjoint(s.sid for s in a_test)


def _cosobe_like(tmp_path):
    rows = []
    for i, s in enumerate(SESSIONS * 3):
        its = [
            {
                "query": q.text,
                "results": [
                    {"rank": 1, "title": f"Q: {q.text} howto [duplicate]"},
                    {"rank": 2, "title": "A: other"},
                ],
                "clicks": [{"rank": 1}] if j == len(s.queries) - 1 else [],
            }
            for j, q in enumerate(s.queries)
        ]
        rows.append({"session_num": i, "iterations": its})
    f = tmp_path / "sessions.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_build_writes_every_file_without_leaks(tmp_path):
    meta = build(_cosobe_like(tmp_path), tmp_path / "out", n=2, k=2, heldout=0.25, seed=0)
    out = tmp_path / "out"
    test_ids = set(meta["test_sessions"])
    assert len(test_ids) == 3 and test_ids.isdisjoint(meta["train_sessions"])
    for name in ("sft_train", "gqr_train", "ctr_train"):
        assert all(r["session"] not in test_ids for r in _read(out / f"{name}.jsonl"))
    for name in ("sft_test", "gqr_test", "ctr_test"):
        assert all(r["session"] in test_ids for r in _read(out / f"{name}.jsonl"))
    sft = _read(out / "sft_train.jsonl")
    row = next(r for r in sft if r["query"] == "java enum")
    assert row["response"].split("\n")[0] == "enum switch" and len(row["response"].split("\n")) <= 2
    assert row["prompt"].startswith("Suggest 2 search queries") and "User query: java enum" in row["prompt"]
    # eval rows need a clicked later query: the answer is the first one (only last queries get clicks here)
    for r in _read(out / "gqr_test.jsonl"):
        assert r["answer"]
    answers = {(int(r["session"]) % 4, r["query"]): r["answer"] for r in _read(out / "gqr_train.jsonl")}
    assert answers[(0, "java enum")] == "enum values"  # "enum switch" comes first but got no click
    assert answers[(1, "java enum")] == "enum switch"
    assert answers[(0, "enum values")] is None  # nothing after it
    ctr = _read(out / "ctr_train.jsonl")
    assert {r["source"] for r in ctr} == {"title", "followup", "random"}
    titles = {
        (int(r["session"]) % 4, r["query"], r["candidate"]): r["clicked"]
        for r in ctr
        if r["source"] == "title"
    }
    assert titles[(1, "enum switch", "enum switch howto")] == 1  # "Q: " and "[duplicate]" gone; clicked
    assert titles[(0, "enum switch", "enum switch howto")] == 0  # not the last query of its session: no click
    assert titles[(1, "enum switch", "other")] == 0  # rank 2 was not clicked
    assert all(r["clicked"] == 0 for r in ctr if r["source"] == "random")
    assert meta["rows"]["sft_train"] == len(sft)


def test_training_rows_do_not_retrieve_from_their_own_session(tmp_path):
    build(_cosobe_like(tmp_path), tmp_path / "out", n=2, k=3, heldout=0.25, seed=0)
    for r in _read(tmp_path / "out" / "sft_train.jsonl"):
        block = r["prompt"].split("together with it:\n")[-1] if "together" in r["prompt"] else ""
        related = [line[2:] for line in block.splitlines() if line.startswith("- ")]
        # every related query must occur in some other train session of the log
        assert r["query"] not in related


@pytest.mark.skipif(not COSOBE.is_file(), reason="shared CosoBe sessions not present")
def test_cosobe_build(tmp_path):
    sessions = load_sessions(COSOBE)
    assert len(sessions) == 103 and sum(len(s.queries) for s in sessions) == 280
    meta = build(COSOBE, tmp_path, n=4, k=3)
    assert (
        meta["rows"]["gqr_train"]
        + sum(len(s.queries) for s in sessions if s.sid in set(meta["test_sessions"]))
        == 280
    )
    assert meta["rows"]["sft_train"] > 100 and meta["rows"]["gqr_test"] > 20
    held_queries = {r["query"] for r in _read(tmp_path / "gqr_test.jsonl")}
    train_prompts = "".join(r["prompt"] for r in _read(tmp_path / "gqr_train.jsonl"))
    assert all(f"User query: {q}\n" not in train_prompts for q in held_queries if q)
    # side information comes from train sessions only
    train_queries = {q.text for s in sessions if s.sid in set(meta["train_sessions"]) for q in s.queries}
    for r in _read(tmp_path / "gqr_test.jsonl"):
        related = [line[2:] for line in r["prompt"].splitlines() if line.startswith("- ")]
        assert set(related) <= train_queries, related
