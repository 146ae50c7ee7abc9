"""ChronoQA task: data loading and pool, date injection, subsampling, BM25 on Chinese, the dense path (tiny
model), the stratified reports, and ``python -m launch.eval --task chronoqa`` in every mode."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from launch.chronoqa import (
    build_prompt,
    load_chronoqa,
    normalize_date,
    retrieval_report,
    stratify_eval_file,
    subsample,
)
from launch.eval import data_root, main
from rollout.retrievers import BM25Retriever, cjk_bigrams

ROWS = [  # a toy in the shape of chronoqa.jsonl; chunk "苹果…" is gold for two questions
    {
        "id": 0,
        "question": "COTODAMA歌词音箱和苹果停产iPhone 6系列哪个事件更早发生？",
        "question_date": "2023-10-30",
        "answer": "苹果停产iPhone 6系列",
        "golden_chunks": [
            "2019年7月23日，COTODAMA推出了一款能显示歌词的音箱。",
            "2019年7月17日，苹果公司宣布停产iPhone 6系列。",
        ],
        "temporal_type": "aggregate",
        "answer_type": "entity",
    },
    {
        "id": 1,
        "question": "苹果公司是哪一天宣布停产iPhone 6系列的？",
        "question_date": "2024-6-15",
        "answer": "2019年7月17日",
        "golden_chunks": ["2019年7月17日，苹果公司宣布停产iPhone 6系列。"],
        "temporal_type": "absolute",
        "answer_type": "time",
    },
    {
        "id": 2,
        "question": "上海地铁十四号线是在哪一年开通运营的？",
        "question_date": "o1-mini",
        "answer": "2021年",
        "golden_chunks": ["2021年12月30日，上海地铁14号线开通初期运营，全长38.5公里。"],
        "temporal_type": "absolute",
        "answer_type": "time",
    },
    {
        "id": 3,
        "question": "去年杭州亚运会的开幕式是在哪天举行的？",
        "question_date": "2024-03-01",
        "answer": "2023年9月23日",
        "golden_chunks": ["2023年9月23日晚，杭州第19届亚运会开幕式在杭州奥体中心体育场举行。"],
        "temporal_type": "relative",
        "answer_type": "time",
    },
]


@pytest.fixture
def toy(tmp_path) -> Path:
    f = tmp_path / "chronoqa.jsonl"
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS))
    return f


def test_pool_is_the_deduplicated_union_of_gold_chunks(toy):
    d = load_chronoqa(toy)
    assert len(d.pool) == 4 and d.pool_ids == ["c00000", "c00001", "c00002", "c00003"]
    assert [q.gold for q in d.questions] == [(0, 1), (1,), (2,), (3,)]  # question 1 shares chunk c00001
    assert d.pool[1].startswith("2019年7月17日")
    assert len(d.sha256) == 64


def test_question_date_is_injected_as_today(toy):
    d = load_chronoqa(toy)
    q0, q1, q2 = d.questions[:3]
    p = build_prompt(q0, ["资料一", "资料二"])
    assert p.startswith("今天是 2023-10-30。\n")
    assert p.index("[1] 资料一") < p.index("[2] 资料二") < p.index("问题：COTODAMA")
    assert build_prompt(q1, []).startswith("今天是 2024-06-15。")  # a short date, written as ISO
    assert build_prompt(q0, [], lang="en").startswith("Today is 2023-10-30.\n")
    assert "今天是" not in build_prompt(q2, [])  # "o1-mini" is no date: no date line rather than nonsense
    assert normalize_date("2024-1月20日") == "2024-01-20" and normalize_date("2024-13-01") is None


def test_subsample_with_distractors_remaps_gold(toy):
    d = load_chronoqa(toy)
    by_id = {q.id: q for q in d.questions}
    for seed in range(6):
        s = subsample(d, limit=2, seed=seed, distractors=1)
        assert len(s.pool) == len({g for q in s.questions for g in by_id[q.id].gold}) + 1
        for q in s.questions:  # the remapped positions point at the same texts as before
            assert [s.pool[g] for g in q.gold] == [d.pool[g] for g in by_id[q.id].gold]
    assert subsample(d, 2, seed=7).questions == subsample(d, 2, seed=7).questions  # seeded
    assert subsample(d, None, 0).pool == d.pool


def test_bm25_ranks_the_right_chinese_chunk_first(toy):
    assert cjk_bigrams("上海地铁14号线") == ["上海", "海地", "地铁", "14", "号线"]
    d = load_chronoqa(toy)
    r = BM25Retriever()
    r.fit(d.pool)
    ranks = r.rank([q.question for q in d.questions], k=4)
    assert [row[0] for row in ranks[1:]] == [1, 2, 3]
    assert set(ranks[0][:2]) == {0, 1}
    rep = retrieval_report(d, BM25Retriever(), k=4)
    assert rep["metrics"]["overall"]["recall@5"] == 1.0
    assert set(rep["metrics"]["temporal_type"]) == {"absolute", "aggregate", "relative"}
    assert rep["rows"][1] == {"id": "1", "gold": ["c00001"], "top": rep["rows"][1]["top"]}


def test_dense_mean_pooling_ignores_padding_and_caches(tiny_model, tmp_path):
    import numpy as np

    from rollout.embeddings import DenseRetriever, cache_key

    docs = ["apple pie recipe", "z", "the quick brown fox jumps over the lazy dog", "seven"]
    r = DenseRetriever(tiny_model, cache_dir=str(tmp_path / "emb"), batch_size=4, threads=1)
    r.fit(docs)
    assert r.info["hit"] is False and r._docs.shape == (4, 128)
    # each text alone (no padding) must embed exactly as inside the padded batch of the pool
    alone = np.stack([r.encoder.encode([d])[0] for d in docs])
    assert np.allclose(alone, r._docs, atol=1e-5)
    assert [row[0] for row in r.rank(docs, k=4)] == [0, 1, 2, 3]
    r2 = DenseRetriever(tiny_model, cache_dir=str(tmp_path / "emb"), batch_size=2, threads=1)
    r2.fit(docs)
    assert r2.info["hit"] is True and np.array_equal(r2._docs, r._docs)
    key = cache_key(tiny_model, docs, 256)
    assert key != cache_key(tiny_model, ["apple pie recipes", *docs[1:]], 256)  # one text changed
    assert key != cache_key(tiny_model, docs, 128)
    weights = next(Path(tiny_model).glob("*.safetensors"))
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # "a retrained model at the same path"
    try:
        assert cache_key(tiny_model, docs, 256) != key
    finally:
        os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_cli_export_answer_and_training_eval_report(toy, tiny_model, tmp_path):
    export = tmp_path / "eval.jsonl"
    assert main(["--task", "chronoqa", "--mode", "export", "--data", str(toy), "--export", str(export),
                 "--top-k", "1", "--out", str(tmp_path / "x.json")]) == 0  # fmt: skip
    rows = [json.loads(line) for line in export.read_text().splitlines()]
    assert rows[1]["question"].startswith("今天是 2024-06-15。\n参考资料：\n[1] 2019年7月17日")
    assert rows[1]["answer"] == "2019年7月17日" and rows[1]["temporal_type"] == "absolute"

    out = tmp_path / "answer.json"
    args = ["--task", "chronoqa", "--mode", "answer", tiny_model, "--data", str(toy), "--engine", "hf",
            "--max-new-tokens", "4", "--context", "gold", "--threads", "1", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    rep = json.loads(out.read_text())
    assert rep["answer"]["metrics"]["overall"]["n"] == 4 and len(rep["answer"]["rows"]) == 4
    assert rep["answer"]["rows"][0]["prompt"].startswith("今天是 2023-10-30。")
    assert rep["bad_dates"] == ["o1-mini"]

    # the driver's eval hook writes uid/correct rows; joined with the export they stratify
    samples = tmp_path / "step_000002.jsonl"
    verdicts = [True, False, None, True]
    samples.write_text(
        "".join(json.dumps({"uid": str(i), "correct": v}) + "\n" for i, v in enumerate(verdicts))
    )
    strat = stratify_eval_file(samples, export)
    assert strat["overall"] == {"n": 3, "correct": pytest.approx(2 / 3)}
    assert strat["temporal_type"]["absolute"] == {"n": 1, "correct": 0.0}


def test_cli_judge_fails_naming_what_is_missing(toy, tiny_model, capsys):
    args = [
        "--task",
        "chronoqa",
        "--mode",
        "answer",
        tiny_model,
        "--data",
        str(toy),
        "--answer-check",
        "judge",
    ]
    assert main(args) == 2
    assert "judge" in capsys.readouterr().err


REAL = data_root() / "chronoqa" / "chronoqa.jsonl"


@pytest.mark.skipif(not REAL.is_file(), reason=f"ChronoQA data not found at {REAL} (../shared/data absent)")
def test_cli_retrieval_mode_on_a_real_subsample(tiny_model, tmp_path):
    out = tmp_path / "r.json"
    args = ["--task", "chronoqa", "--limit", "40", "--seed", "1", "--distractors", "60", "--retriever", "bm25",
            "dense", "--embed-model", tiny_model, "--embed-cache", str(tmp_path / "emb"), "--embed-max-length", "64", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    rep = json.loads(out.read_text())
    assert rep["data"]["sha256"] == "9a53fb66988171b923e484841e9b8167a34f31a686361f69189dfebada62fc2b"
    assert rep["settings"]["questions"] == 40 and rep["git_commit"] and rep["versions"]["bm25s"] == "0.3.16"
    bm25, dense = rep["retrieval"]
    assert (bm25["retriever"], dense["retriever"]) == ("bm25", "dense")
    pool = rep["settings"]["pool_size"]
    assert 60 < pool <= 60 + 5 * 40
    for r in (bm25, dense):
        assert r["metrics"]["overall"]["n"] == 40
        assert set(r["metrics"]["temporal_type"]) <= {"absolute", "aggregate", "relative"}
        assert all(len(row["top"]) == 10 for row in r["rows"])
    # BM25 on news questions against their own gold chunks: far above chance (10 / pool)
    assert bm25["metrics"]["overall"]["recall@10"] > 0.7
