"""ChronoQA: temporal RAG evaluation over ../shared/data/llm/chronoqa (5,176 Chinese news questions).

    python -m launch.eval --task chronoqa --mode retrieval [--retriever bm25 dense] [--limit N] [--seed S]
        [--distractors D] [--embed-model builtin:smollm2-135m-instruct] [--out FILE]
    python -m launch.eval --task chronoqa --mode answer MODEL_OR_CHECKPOINT [--retriever bm25] [--top-k 5]
        [--context retrieved|gold|none] [--answer-check contains|exact|judge] [--limit N] [--engine vllm|hf]
    python -m launch.eval --task chronoqa --mode export --export FILE [--retriever bm25] [--top-k 5] [--limit N]

Retrieval pool: the union of every question's ``golden_chunks``, deduplicated by exact text, ids ``c00000`` in
first-seen order (6,351 chunks). The paper retrieves from ~300k news chunks that are not available here, so
this pool is far easier: numbers are not comparable in difficulty to the paper's (native RAG Recall@5 54.6).
``--limit N`` scores a seeded sample of N questions; ``--distractors D`` additionally restricts the pool to
those questions' gold chunks plus D seeded other chunks (the same pool for every retriever), which keeps a
dense run on a small CPU within minutes.

Prompt (:data:`PROMPTS`): the question date as "today" first ("今天是 2023-10-30。"), then the top-K chunks
(rank order, numbered), then the question and a request for a short answer. ``question_date`` is written
as ISO ``YYYY-MM-DD`` when it parses (the data also holds ``2024-6-15`` and ``2024-1月20日``); one row's date
(``o1-mini``) is not a date: its prompt has no date line and the report counts it (``bad_dates``).

Metrics: launch/ir_metrics.py (Recall@1/5/10, MAP@10, NDCG@5/10, MRR@10, binary relevance against the gold
chunk ids); answers: rewards/chronoqa.py. Every report is stratified by :data:`LABEL_FIELDS`.

As an eval set during training: ``--mode export`` writes the retrieval-augmented prompts as a JSONL
(``question`` = the full prompt, ``answer``, the label fields, ``id``); a recipe then sets
``eval.source: FILE`` and ``eval.answer_check: {name: chronoqa}`` and the driver's eval hook
(launch/evaluate.py) judges held-out answers with the same check. ``stratify_eval_file`` turns the hook's
``output_dir/eval/step_N.jsonl`` back into the stratified accuracy table (rows are joined on ``id``).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from launch.ir_metrics import DEFAULT_CUTS, query_scores, stratified

DATA_FILE = "chronoqa/chronoqa.jsonl"  # under $FORGE_DATA (launch.eval.data_root)
LABEL_FIELDS = (
    "temporal_type",
    "temporal_scope",
    "temporal_granularity",
    "temporal_expression_type",
    "answer_type",
    "reference_document_count",
)
PAPER_REFERENCE = {"native_rag_recall@5": 54.6, "query_decomposition_recall@5": 61.9}  # METHODS.md §8

# Prompt language → (date line, context header, chunk line, question block). "{date}" is ISO.
PROMPTS: dict[str, dict[str, str]] = {
    "zh": {
        "date": "今天是 {date}。\n",
        "context": "参考资料：\n",
        "chunk": "[{i}] {text}\n",
        "question": "问题：{question}\n请根据参考资料和今天的日期，直接给出简短的答案。",
    },
    "en": {
        "date": "Today is {date}.\n",
        "context": "Reference passages:\n",
        "chunk": "[{i}] {text}\n",
        "question": "Question: {question}\nUsing the passages and today's date, give a short answer.",
    },
}


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    date: str | None  # ISO YYYY-MM-DD, or None when question_date is not a date
    raw_date: str
    answer: str
    labels: dict[str, str]
    gold: tuple[int, ...]  # positions in the pool


@dataclass(frozen=True)
class ChronoQA:
    questions: list[Question]
    pool: list[str]  # chunk texts; chunk id = pool_ids[i]
    pool_ids: list[str]
    sha256: str  # of the data file
    source: str


# ---------------------------------------------------------------- data


def normalize_date(raw: str) -> str | None:
    """ISO date for ``2023-10-30``, ``2024-6-15``, ``2024-1月20日``; None for anything else (``o1-mini``).

    >>> normalize_date("2024-6-15"), normalize_date("2024-1月20日"), normalize_date("o1-mini")
    ('2024-06-15', '2024-01-20', None)
    """
    m = re.fullmatch(r"\s*(\d{4})[-/年](\d{1,2})[-/月](\d{1,2})日?\s*", str(raw))
    if not m:
        return None
    y, mo, d = (int(g) for g in m.groups())
    return f"{y:04d}-{mo:02d}-{d:02d}" if 1 <= mo <= 12 and 1 <= d <= 31 else None


def load_chronoqa(path: str | Path) -> ChronoQA:
    """Questions, the deduplicated pool of gold chunks and the file's sha256."""
    path = Path(path)
    raw = path.read_bytes()
    pool_index: dict[str, int] = {}
    questions = []
    for n, line in enumerate(raw.decode("utf-8").splitlines()):
        if not line.strip():
            continue
        r = json.loads(line)
        chunks = r["golden_chunks"]
        if not isinstance(chunks, list):
            raise ValueError(f"{path} row {n}: golden_chunks is {type(chunks).__name__}, not a list")
        gold = tuple(dict.fromkeys(pool_index.setdefault(c, len(pool_index)) for c in chunks))
        questions.append(
            Question(
                id=str(r.get("id", n)),
                question=r["question"],
                date=normalize_date(r["question_date"]),
                raw_date=str(r["question_date"]),
                answer=str(r["answer"]),
                labels={f: str(r.get(f)) for f in LABEL_FIELDS},
                gold=gold,
            )
        )
    pool = list(pool_index)  # dict order = first-seen order
    return ChronoQA(
        questions, pool, [f"c{i:05d}" for i in range(len(pool))], hashlib.sha256(raw).hexdigest(), str(path)
    )


def subsample(data: ChronoQA, limit: int | None, seed: int, distractors: int | None = None) -> ChronoQA:
    """A seeded sample of ``limit`` questions (in data order); with ``distractors`` the pool shrinks to their
    gold chunks plus that many other chunks drawn with the same seed (gold positions remapped)."""
    qs = data.questions
    if limit is not None and limit < len(qs):
        keep = sorted(random.Random(seed).sample(range(len(qs)), limit))
        qs = [qs[i] for i in keep]
    if distractors is None:
        return replace(data, questions=qs)
    gold = sorted({g for q in qs for g in q.gold})
    others = sorted(set(range(len(data.pool))) - set(gold))
    extra = random.Random(seed + 1).sample(others, min(distractors, len(others)))
    keep_pool = sorted([*gold, *extra])
    new_pos = {old: new for new, old in enumerate(keep_pool)}
    qs = [replace(q, gold=tuple(new_pos[g] for g in q.gold)) for q in qs]
    return replace(
        data,
        questions=qs,
        pool=[data.pool[i] for i in keep_pool],
        pool_ids=[data.pool_ids[i] for i in keep_pool],
    )


# ---------------------------------------------------------------- prompt


def build_prompt(q: Question, chunks: Sequence[str], lang: str = "zh") -> str:
    """The date as "today", the chunks in rank order, then the question.

    >>> q = Question("0", "哪个更早？", "2023-10-30", "2023-10-30", "A", {}, ())
    >>> print(build_prompt(q, ["甲", "乙"]))
    今天是 2023-10-30。
    参考资料：
    [1] 甲
    [2] 乙
    问题：哪个更早？
    请根据参考资料和今天的日期，直接给出简短的答案。
    """
    t = PROMPTS[lang]
    out = t["date"].format(date=q.date) if q.date else ""
    if chunks:
        out += t["context"] + "".join(t["chunk"].format(i=i, text=c) for i, c in enumerate(chunks, 1))
    return out + t["question"].format(question=q.question)


# ---------------------------------------------------------------- retrieval


def retrieval_report(data: ChronoQA, retriever: Any, k: int = 10) -> dict[str, Any]:
    """Rank the pool for every question; metrics overall and by label, and per-question rankings (chunk ids)."""
    t0 = time.perf_counter()
    retriever.fit(data.pool)
    t_fit = time.perf_counter() - t0
    rankings = retriever.rank([q.question for q in data.questions], k)
    per_query = [query_scores(r, q.gold, DEFAULT_CUTS) for r, q in zip(rankings, data.questions)]
    scored = [(s, q) for s, q in zip(per_query, data.questions) if s is not None]
    report = stratified([s for s, _ in scored], [q.labels for _, q in scored], LABEL_FIELDS)
    rows = [
        {"id": q.id, "gold": [data.pool_ids[g] for g in q.gold], "top": [data.pool_ids[i] for i in r]}
        for q, r in zip(data.questions, rankings)
    ]
    return {
        "retriever": retriever.name,
        "questions": len(data.questions),
        "no_gold": len(data.questions) - len(scored),
        "fit_s": t_fit,
        "time_s": time.perf_counter() - t0,
        "info": getattr(retriever, "info", {}),
        "metrics": report,
        "rows": rows,
        "_rankings": rankings,  # positions, for answer mode; dropped before writing
    }


def contexts(data: ChronoQA, rankings: list[list[int]] | None, how: str, k: int) -> list[list[str]]:
    """Per question, the chunks its prompt shows: ``retrieved`` (top k), ``gold`` (an oracle upper bound)
    or ``none`` (closed book)."""
    if how == "retrieved":
        assert rankings is not None
        return [[data.pool[i] for i in r[:k]] for r in rankings]
    if how == "gold":
        return [[data.pool[g] for g in q.gold] for q in data.questions]
    return [[] for _ in data.questions]


# ---------------------------------------------------------------- answers


def answer_report(data: ChronoQA, completions: Sequence[str], check: Any) -> dict[str, Any]:
    """Accuracy of ``completions`` (one per question) under ``check``, overall and by label."""
    verdicts = [{"correct": float(check(c, q.answer))} for c, q in zip(completions, data.questions)]
    rows = [
        {"id": q.id, "answer": q.answer, "completion": c, "correct": bool(v["correct"])}
        for q, c, v in zip(data.questions, completions, verdicts)
    ]
    return {"metrics": stratified(verdicts, [q.labels for q in data.questions], LABEL_FIELDS), "rows": rows}


def stratify_eval_file(samples_jsonl: str | Path, export_jsonl: str | Path) -> dict[str, Any]:
    """Stratified accuracy of a training eval (``output_dir/eval/step_N.jsonl``: uid, correct) over the
    exported ChronoQA set (its rows carry the labels); samples without a verdict are left out."""
    labels = {}
    for line in Path(export_jsonl).read_text().splitlines():
        r = json.loads(line)
        labels[str(r["id"])] = {f: str(r.get(f)) for f in LABEL_FIELDS}
    scores, labs = [], []
    for line in Path(samples_jsonl).read_text().splitlines():
        r = json.loads(line)
        if r.get("correct") is not None and str(r["uid"]) in labels:
            scores.append({"correct": float(r["correct"])})
            labs.append(labels[str(r["uid"])])
    return stratified(scores, labs, LABEL_FIELDS)
