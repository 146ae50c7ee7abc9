"""Wall time of one GRPO step of the default recipe, against raw vLLM + raw torch and TRL (not a test).

    .venv/bin/python bench/grpo_step.py [--steps 3] [--prompts 8] [--samples 4] [--max-new-tokens 64]
                                        [--skip-trl] [--out bench/RESULTS_grpo_step.md]

1. The framework: ``recipes/grpo_default.yaml`` (SmolLM2-135M-Instruct, arithmetic, math reward) with
   ``curriculum.prompts_per_step``/``n_samples``/``rollout.max_new_tokens`` from the flags, no eval, no
   checkpoints. ``build_run``, one warm-up step, then ``--steps`` measured steps running the driver's loop
   body (launch/train.py) with its ``StepTimer``. The last measured step's prompt token ids, texts, answers
   and train batch are saved; then the run is closed and Ray shut down so the baselines get the cores.
2. Raw baselines on the same prompts, each in a fresh subprocess (vLLM's CPU worker monkeypatches
   ``torch.set_num_threads``): (a) an in-process ``vllm.LLM`` with the engine's settings, ``generate`` after
   one warm-up call; (b) a plain-torch learner step (bf16 model, AdamW, the same micro-batches, PG loss,
   clipping) on the saved train batch, 2 threads, after one warm-up step.
   Overhead ratio = framework step ÷ (raw generate + raw learner step).
3. TRL's ``GRPOTrainer`` (subprocess, CPU) on the same model folder, prompts, samples, length, reward
   (rewards/math.py), lr and beta=0; per-step wall time from a ``TrainerCallback``, first step dropped.

The machine is shared (2 cores): the script records ``uptime`` load averages at start and end.
The baselines live in bench/grpo_step_baselines.py (``python bench/grpo_step_baselines.py KIND --dir DIR``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECIPE = ROOT / "recipes/grpo_default.yaml"
BASELINES = Path(__file__).with_name("grpo_step_baselines.py")  # the raw vLLM / raw learner / TRL workers


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception as e:  # pragma: no cover
        return f"uptime failed: {e}"


def load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


# ---------------------------------------------------------------- 1. the framework


def run_framework(args: argparse.Namespace, work: Path) -> dict:
    import torch

    from launch.config import load_recipe
    from launch.setup import build_run
    from launch.train import StepTimer

    overrides = [
        f"curriculum.prompts_per_step={args.prompts}",
        f"curriculum.n_samples={args.samples}",
        f"rollout.max_new_tokens={args.max_new_tokens}",
        "eval.num_prompts=0",
        "logging.progress=false",
        "logging.tensorboard=false",
        "checkpoint.every=0",
        f"output_dir={work / 'run'}",
    ]
    cfg = load_recipe(RECIPE, overrides)
    # The machine is shared: other jobs' memory must not make our embedded Ray's OOM monitor kill our
    # actors at 95% node memory (happened in the first run). The kernel's OOM killer still applies.
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    t0 = time.perf_counter()
    run = build_run(cfg)
    build_s = time.perf_counter() - t0
    print(f"[framework] build_run {build_s:.1f} s", flush=True)

    steps = []
    last = None
    try:
        for step in range(1 + args.steps):
            # --- the driver's loop body (launch/train.py), minus eval/checkpoint/logging
            timer = StepTimer()
            with timer("rollout"):
                requests = run.curriculum.next_batch(step)
                batch = run.strategy.rollout(requests, run.generator, run.scorer)
            metrics = {**batch.metrics, **run.curriculum.observe(batch)}
            train_batch = run.strategy.make_train_batch(batch)
            with timer("learner"):
                metrics |= run.learners.train(train_batch, run.pad_id)
            with timer("weight_sync"):
                metrics |= run.generator.sync_weights(run.learners)
            metrics |= train_batch.metrics | timer.metrics(batch.metrics.get("reward_time_s", 0.0))
            # ---
            gen_tokens = sum(len(s.response_ids) for s in batch.samples)
            rec = {
                "step": step,
                "total": metrics["time/step"],
                "generate": metrics["time/generate"],
                "reward": metrics["time/reward"],
                "learner": metrics["time/learner"],
                "learner_inner": metrics.get("learner_s", float("nan")),
                "weight_sync": metrics["time/weight_sync"],
                "sync_export": metrics.get("sync/export_s", float("nan")),
                "sync_load": metrics.get("sync/load_s", float("nan")),
                "gen_tokens": gen_tokens,
                "reward_mean": metrics.get("reward_mean", float("nan")),
                "rows": train_batch.num_rows,
                "seq_len": int(train_batch.input_ids.shape[1]),
            }
            rec["other"] = (
                rec["total"] - rec["generate"] - rec["reward"] - rec["learner"] - rec["weight_sync"]
            )
            steps.append(rec)
            tag = "warm-up" if step == 0 else "measured"
            print(
                f"[framework] step {step} ({tag}): {rec['total']:.2f} s  gen {rec['generate']:.2f}  "
                f"reward {rec['reward']:.2f}  learner {rec['learner']:.2f} (inner {rec['learner_inner']:.2f})  "
                f"sync {rec['weight_sync']:.2f}  other {rec['other']:.2f}  tokens {gen_tokens}  "
                f"reward_mean {rec['reward_mean']:.3f}",
                flush=True,
            )
            last = (requests, train_batch)
        requests, train_batch = last
        prompts = [
            {
                "ids": run.renderer.render(r.prompt),
                "text": r.prompt.text,
                "user": run.renderer.user_text(r.prompt),
                "answer": r.prompt.answer,
                "n": r.n_samples,
            }
            for r in requests
        ]
        (work / "prompts.json").write_text(json.dumps(prompts))
        torch.save(train_batch, work / "train_batch.pt")
        info = {
            "build_s": build_s,
            "model_path": run.model_path,
            "micro_batch_size": cfg.trainer.micro_batch_size,
            "lr": cfg.trainer.lr,
            "grad_clip": cfg.trainer.grad_clip,
            "max_model_len": cfg.rollout.max_model_len,
            "kv_cache_gb": cfg.rollout.kv_cache_gb,
            "seed": cfg.seed,
            "threads_per_worker": cfg.rollout.threads_per_worker,
            "threads_per_learner": cfg.trainer.threads_per_learner,
            "template": cfg.prompt.template,
            "system_prompt": cfg.prompt.system_prompt,
            "temperature": cfg.rollout.temperature,
        }
    finally:
        run.close()
        import ray

        ray.shutdown()
    return {"steps": steps, "info": info}


def run_worker(kind: str, work: Path, n_measured: int, timeout: float) -> dict:
    out = work / f"{kind}.json"
    env = dict(os.environ, OMP_NUM_THREADS="2", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, str(BASELINES), kind, "--dir", str(work), "--steps", str(n_measured)]
    t0 = time.perf_counter()
    print(f"[{kind}] starting subprocess", flush=True)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=timeout, capture_output=True, text=True)
    except subprocess.TimeoutExpired as e:
        print(f"[{kind}] timed out after {timeout:.0f} s", flush=True)
        partial = work / f"{kind}_partial.json"
        res = json.loads(partial.read_text()) if partial.is_file() else {}
        return {**res, "error": f"timed out after {timeout:.0f} s", "tail": str(e)[-500:]}
    (work / f"{kind}.log").write_text(proc.stdout + "\n----- stderr -----\n" + proc.stderr)
    if proc.returncode != 0 or not out.is_file():
        tail = (proc.stdout + proc.stderr)[-3000:]
        print(f"[{kind}] FAILED (rc {proc.returncode}); tail:\n{tail}", flush=True)
        return {"error": f"rc {proc.returncode}", "tail": tail}
    res = json.loads(out.read_text())
    res["wall_s"] = time.perf_counter() - t0
    print(f"[{kind}] done in {res['wall_s']:.0f} s", flush=True)
    return res


# ---------------------------------------------------------------- report


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def fmt_s(x: float) -> str:
    return "n/a" if x != x else f"{x:.2f} s"


def report(args: argparse.Namespace, fw: dict, vl: dict, ln: dict, trl: dict | None, meta: dict) -> str:
    m = fw["steps"][1:]
    k = {key: mean([s[key] for s in m]) for key in m[0] if key != "step"}
    raw_gen = mean(vl.get("times", []))
    raw_tok = mean(vl.get("tokens", []))
    raw_learn = mean(ln.get("times", []))
    raw_sum = raw_gen + raw_learn
    trl_step = float("nan")
    trl_note = "skipped (--skip-trl)"
    if trl is not None:
        if "error" in trl:
            trl_note = f"failed: {trl['error']}"
        else:
            st = trl["step_times"][1:]
            trl_step = mean(st)
            trl_note = (
                f"mean of {len(st)} steps after the first (all: "
                + ", ".join(f"{x:.1f}" for x in trl["step_times"])
                + f" s); params {trl['param_dtype']}, bf16={trl['bf16']} (autocast); "
                f"per_device_train_batch_size={trl['per_device_train_batch_size']}, "
                f"generation_batch_size={trl['generation_batch_size']}; "
                f"prompt ids identical to the framework's: {trl['same_prompt_ids']}"
                + ("; PARTIAL: the run was stopped early" if trl.get("partial") else "")
            )
    rows = [
        ("Framework step (total)", fmt_s(k["total"]), f"mean of {len(m)} measured steps after 1 warm-up"),
        ("  generate", fmt_s(k["generate"]), "rollout minus reward (Ray call into the vLLM actor)"),
        ("  reward", fmt_s(k["reward"]), "math reward in the isolated reward process"),
        (
            "  learner",
            fmt_s(k["learner"]),
            f"driver-side incl. Ray put/call; inside the actor {k['learner_inner']:.2f} s",
        ),
        (
            "  weight sync",
            fmt_s(k["weight_sync"]),
            f"export {k['sync_export']:.2f} s (probe + state dict + safetensors), "
            f"load {k['sync_load']:.2f} s, rest = engine probe",
        ),
        ("  other", fmt_s(k["other"]), "curriculum, rendering, make_train_batch"),
        (
            "Raw vLLM generate",
            fmt_s(raw_gen),
            f"fresh in-process vllm.LLM, mean of {len(vl.get('times', []))} calls after 1 warm-up"
            if "error" not in vl
            else f"failed: {vl['error']}",
        ),
        (
            "Raw learner step",
            fmt_s(raw_learn),
            f"plain torch bf16 + AdamW, {ln.get('rows')} rows × {ln.get('seq_len')} tokens, "
            f"micro-batch {fw['info']['micro_batch_size']}"
            if "error" not in ln
            else f"failed: {ln['error']}",
        ),
        (
            "Raw learner step + entropy",
            fmt_s(mean(ln.get("times_entropy", []))),
            "the same, plus the per-token entropy the framework's learner computes for logging",
        ),
        ("Sum of raws", fmt_s(raw_sum), "raw generate + raw learner step"),
        ("Overhead ratio", f"{k['total'] / raw_sum:.2f}×", "framework step ÷ sum of raws"),
        ("TRL GRPOTrainer step", fmt_s(trl_step), trl_note),
        (
            "Speed-up vs TRL",
            "n/a" if trl_step != trl_step else f"{trl_step / k['total']:.2f}×",
            "TRL step ÷ framework step",
        ),
        (
            "Tokens/s (framework generate)",
            f"{k['gen_tokens'] / k['generate']:.0f}",
            f"{k['gen_tokens']:.0f} generated tokens per step (mean)",
        ),
        (
            "Tokens/s (raw vLLM)",
            f"{raw_tok / raw_gen:.0f}" if raw_gen == raw_gen else "n/a",
            f"{raw_tok:.0f} generated tokens per call (mean)",
        ),
    ]
    lines = [
        "# One GRPO step: framework vs raw vLLM + torch vs TRL (CPU)",
        "",
        f"- Date: {meta['date']}",
        f"- Command: `{meta['command']}`",
        f"- Machine: {meta['machine']}",
        f"- Load average (1/5/15 min) at start: {meta['load_start']}; at end: {meta['load_end']}",
        f"- Setup: recipes/grpo_default.yaml, {args.prompts} prompts × {args.samples} samples × ≤"
        f"{args.max_new_tokens} new tokens, SmolLM2-135M-Instruct bf16; every compute process pinned to 2 "
        "threads (engine actor, learner actor, raw baselines, TRL).",
        f"- Framework start-up (build_run: Ray, vLLM actor, DeepSpeed learner, reward process): "
        f"{fw['info']['build_s']:.1f} s (not in the step time)",
        "",
        "| Measure | Value | Notes |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        "Per framework step (s): "
        + "; ".join(
            f"step {s['step']}{' (warm-up)' if s['step'] == 0 else ''}: total {s['total']:.2f}, "
            f"gen {s['generate']:.2f}, reward {s['reward']:.2f}, learner {s['learner']:.2f}, "
            f"sync {s['weight_sync']:.2f}, tokens {s['gen_tokens']}"
            for s in fw["steps"]
        ),
        "",
        f"Raw vLLM: start {vl.get('start_s', float('nan')):.1f} s, warm-up call {vl.get('warmup_s', float('nan')):.2f} s, "
        f"calls {[round(x, 2) for x in vl.get('times', [])]} s, tokens {vl.get('tokens')}. "
        f"Raw learner: warm-up {ln.get('warmup_s', float('nan')):.2f} s, steps {[round(x, 2) for x in ln.get('times', [])]} s.",
        "",
        "Noise: 2 cores shared with other jobs (see the load averages); the sampled completions differ "
        "between the framework, raw vLLM and TRL (stochastic sampling, EOS stops), so token counts and "
        "hence times differ run to run. Treat differences under ~20% as noise.",
    ]
    if meta.get("notes"):
        lines += ["", *meta["notes"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--skip-trl", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench/RESULTS_grpo_step.md"))
    ap.add_argument("--report-from", help=argparse.SUPPRESS)  # rewrite the report from a work dir's JSONs
    args = ap.parse_args()

    if args.report_from:
        work = Path(args.report_from)

        def load(name: str) -> dict | None:
            f = work / f"{name}.json"
            return json.loads(f.read_text()) if f.is_file() else None

        meta = load("meta")
        trl = load("trl") or load("trl_partial")
        md = report(args, load("framework"), load("vllm") or {}, load("learner") or {}, trl, meta)
        print(md)
        Path(args.out).write_text(md)
        return 0

    command = "python bench/grpo_step.py " + " ".join(sys.argv[1:])
    load_start = uptime()
    print(f"[bench] {load_start}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="grpo_step_bench_"))
    print(f"[bench] work dir {work}", flush=True)
    t_all = time.perf_counter()
    fw = run_framework(args, work)
    (work / "framework.json").write_text(json.dumps(fw))
    info = dict(fw["info"], max_new_tokens=args.max_new_tokens)
    (work / "info.json").write_text(json.dumps(info))
    vl = run_worker("vllm", work, args.steps, timeout=900)
    ln = run_worker("learner", work, args.steps, timeout=900)
    trl = None if args.skip_trl else run_worker("trl", work, min(args.steps, 3), timeout=1800)
    import torch

    meta = {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "command": command,
        "machine": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__} (driver torch threads {torch.get_num_threads()}), Python "
        f"{platform.python_version()}, no GPU",
        "load_start": load_start.split("load average:")[-1].strip(),
        "load_end": uptime().split("load average:")[-1].strip(),
        "notes": [f"Total benchmark wall time: {time.perf_counter() - t_all:.0f} s; work dir {work}."],
    }
    (work / "meta.json").write_text(json.dumps(meta))
    md = report(args, fw, vl, ln, trl, meta)
    print(md, flush=True)
    Path(args.out).write_text(md)
    print(f"[bench] wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
