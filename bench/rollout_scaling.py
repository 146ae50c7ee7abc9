"""Rollout throughput with 1, 2, 4 rollout workers against the ideal linear line, and weight-sync seconds (not a
test; prints ratios).

    .venv/bin/python bench/rollout_scaling.py [--workers 1,2,4] [--threads 1] [--prompts 16] [--samples 4]
                                              [--max-new-tokens 48] [--calls 3] [--out bench/RESULTS_scaling.md]

Every arm: the same model (the builtin SmolLM2-135M-Instruct, dtype from launch/setup.resolve_dtype), the same
prompts (arithmetic questions, chat template), the same sampling parameters (temperature 0.7, the default
recipe's), ``--threads`` CPU threads per worker, dynamic dispatch (rollout/generator.py); one warm-up call, then
``--calls`` measured calls. tokens/s = generated tokens ÷ wall seconds of the call; ideal = W × the one-worker
figure. Each W also runs one learner (DeepSpeed ZeRO-0, 1 thread) and times ``sync_weights`` both ways after each
call: object store (rank 0 puts the safetensors blob once, every worker loads it) and collective (rank 0
broadcasts over a gloo group with the workers, trainer/weight_broadcast.py), probe check included in both.

On a 2-core machine W workers × T threads beyond 2 cores share the cores: the line says what the cores allow,
not what the code does. On a GPU machine the same script is the one-shot GPU check (``--gpus-per-worker 1``: one
GPU per worker and one for the learner, bf16 where supported; never required by CI; not run yet).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure(workers: int, a: argparse.Namespace, model_path: str, dtype: str, dispatch: str) -> dict:
    from transformers import AutoTokenizer

    from launch.components import ENGINES
    from launch.placement import reserve
    from rollout.engines.base import EngineSpec
    from rollout.generator import Generator
    from rollout.types import GenerationRequest, SamplingParams
    from trainer.group import LearnerGroup
    from trainer.learner import LearnerSpec

    tok = AutoTokenizer.from_pretrained(model_path)
    texts = [
        tok.apply_chat_template(
            [
                {
                    "role": "user",
                    "content": f"What is {10 + i} + {37 + 2 * i}? Give the final answer as a number.",
                }
            ],
            add_generation_prompt=True,
            tokenize=False,
        )
        for i in range(a.prompts)
    ]
    prompts = [list(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    reqs = [GenerationRequest(p, a.samples) for p in prompts]
    params = SamplingParams(a.max_new_tokens, 0.7, 1.0, -1)
    spec = EngineSpec(model_path, dtype, 512, 0.5, True, 0, a.threads)
    g = a.gpus_per_worker
    placement = reserve("disaggregated", "PACK", workers, (a.threads, g), 1, (1, g), 120)
    probe = list(tok("The quick brown fox jumps over the lazy dog.", add_special_tokens=False)["input_ids"])
    tol = 0.15 if dtype == "bfloat16" else 0.01
    gen = Generator(
        ENGINES["vllm"], spec, workers, params, probe, tol, g, placement=placement, dispatch=dispatch
    )
    learners = LearnerGroup(
        LearnerSpec(model_path=model_path, dtype=dtype, threads=1, micro_batch_size=4),
        1,
        g,
        placement=placement,
    )
    try:
        gen.generate(reqs)  # warm-up
        gen.pop_metrics()
        rates, syncs, coll, per_worker = [], [], [], []
        for _ in range(a.calls):
            t = time.perf_counter()
            out = gen.generate(reqs)
            wall = time.perf_counter() - t
            tokens = sum(len(c.token_ids) for cs in out for c in cs)
            rates.append(tokens / wall)
            per_worker.append(gen.pop_metrics())
            # the same weights both ways: object store, then the collective broadcast (its group is built on the
            # first collective sync, outside the timing: a warm-up)
            gen.weight_sync = "object_store"
            t = time.perf_counter()
            gen.sync_weights(learners)
            syncs.append(time.perf_counter() - t)
            gen.weight_sync = "collective"
            if not coll:
                gen.sync_weights(learners)
            t = time.perf_counter()
            m = gen.sync_weights(learners)
            assert m.get("sync/collective") == 1.0, m
            coll.append(time.perf_counter() - t)
        return {
            "workers": workers,
            "dispatch": dispatch,
            "tokens_per_s": rates,
            "sync_s": syncs,
            "collective_s": coll,
            "per_worker": per_worker,
            "load": os.getloadavg(),
        }
    finally:
        gen.shutdown()
        learners.shutdown()
        placement.remove()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--calls", type=int, default=3)
    # dynamic: small chunks to the least-loaded worker (balance; smaller engine batches); static: one even share
    # per worker in one call (the biggest engine batch). One worker runs once (no dispatch choice there).
    ap.add_argument("--dispatch", default="dynamic,static")
    # on a GPU machine (with vllm, ray, deepspeed installed): e.g. --gpus-per-worker 1 --workers 1,2,4 (one GPU each)
    ap.add_argument("--gpus-per-worker", type=float, default=0.0)
    ap.add_argument("--out", default=str(ROOT / "bench/RESULTS_scaling.md"))
    a = ap.parse_args()
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    import ray

    from bench._common import provenance
    from launch.prepare_model import resolve_model_path
    from launch.setup import bf16_is_fast

    model_path = resolve_model_path(
        "builtin:smollm2-135m-instruct", os.path.expanduser("~/.cache/forge-rl/models")
    )
    dtype = "bfloat16" if bf16_is_fast() else "float32"
    counts = [int(x) for x in a.workers.split(",")]
    ray.init(
        num_cpus=max(counts) * a.threads + 1,
        **(
            {"num_gpus": int(max(counts) * a.gpus_per_worker + a.gpus_per_worker)}
            if a.gpus_per_worker
            else {}
        ),
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}},
    )
    load0 = os.getloadavg()
    results = []
    modes = [m for m in a.dispatch.split(",") if m]
    for w in counts:
        for mode in modes if w > 1 else modes[:1]:
            print(f"{w} worker(s), {mode} dispatch...", flush=True)
            r = measure(w, a, model_path, dtype, mode)
            print(
                f"  tokens/s {statistics.mean(r['tokens_per_s']):.0f}, sync {statistics.mean(r['sync_s']):.2f} s",
                flush=True,
            )
            results.append(r)
    ray.shutdown()
    base = statistics.mean(results[0]["tokens_per_s"])
    lines = [
        "# Rollout scaling: tokens/s with 1, 2, 4 workers vs ideal linear, weight-sync seconds",
        "",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- Command: `python bench/rollout_scaling.py {' '.join(sys.argv[1:])}`".rstrip(),
        f"- Machine: {os.cpu_count()} CPU cores ({platform.machine()}), no GPU; dtype {dtype}",
        f"- Load average at start: {' '.join(f'{x:.2f}' for x in load0)}; at end: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- Equal in every arm: SmolLM2-135M-Instruct, {a.prompts} prompts × {a.samples} samples × ≤"
        f"{a.max_new_tokens} new tokens, temperature 0.7, {a.threads} thread(s) per worker, "
        f"1 warm-up + {a.calls} measured calls; what differs: the number of workers and the dispatch (dynamic: "
        "~4 chunks per worker, one in flight per worker, to the least-loaded; static: one even share per worker).",
        f"- Provenance: {json.dumps(provenance())}",
        "",
        "| workers | dispatch | tokens/s (mean of calls) | ideal (W × 1-worker) | efficiency |"
        " weight sync s: object store | collective (gloo, 64 MB buckets) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        tps = statistics.mean(r["tokens_per_s"])
        ideal = base * r["workers"]
        lines.append(
            f"| {r['workers']} | {r['dispatch'] if r['workers'] > 1 else '–'} | {tps:.0f} ({', '.join(f'{x:.0f}' for x in r['tokens_per_s'])}) | {ideal:.0f} | "
            f"{tps / ideal:.2f} | {statistics.mean(r['sync_s']):.2f} | {statistics.mean(r['collective_s']):.2f} |"
        )
    cores = os.cpu_count() or 1
    lines += [
        "",
        f"With {cores} cores, {cores // max(a.threads, 1)} worker(s) of {a.threads} thread(s) fill the machine; "
        "more workers share the same cores, so efficiency below 1 past that point is the machine, not the dispatch. "
        "Both sync columns include the probe check on every worker (the same in both).",
        "",
        "Per-worker requests served in the last measured call: "
        + "; ".join(
            f"W={r['workers']} {r['dispatch']}: "
            + ", ".join(
                f"{int(v)}" for k, v in sorted(r["per_worker"][-1].items()) if k.endswith("/requests")
            )
            for r in results
        ),
    ]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
