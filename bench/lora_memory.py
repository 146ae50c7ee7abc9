"""Learner memory and step time, full fine-tuning vs LoRA, on one TrainBatch (not a test).

    .venv/bin/python bench/lora_memory.py [--model builtin:smollm2-135m-instruct] [--rows 32]
        [--response-tokens 48] [--micro-batch 8] [--steps 3] [--kl] [--modes full,lora]

Builds one single-rank LearnerGroup (DeepSpeed ZeRO-0, bf16, 2 threads) per mode, each in a fresh Ray actor,
on the same GRPO-shaped TrainBatch (arithmetic prompts of the default recipe with random response tokens and
advantages): one warm-up step, then ``--steps`` timed steps. Per mode it prints the learner process's peak
RSS (``ru_maxrss``: model loading included) after construction and after training, its RSS now, trainable
parameters, optimizer-state bytes and the mean step time: wall, and the learner process's CPU seconds (user +
system, all threads), which a busy shared machine distorts less than wall time. ``--kl`` adds a KL term: full
fine-tuning then loads a second, frozen copy of the model as the reference, LoRA reuses the base with its
adapters disabled. LoRA: r=8, alpha=16, the 7 attention + MLP projections (the recipe defaults). The machine
is shared: the load average is printed at start and end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def learner_memory(learner) -> dict[str, float]:
    """Runs inside the learner actor (``Learner.run``): memory of this process and of the optimizer state."""
    import resource

    import psutil
    import torch

    opt = learner.engine.optimizer
    inner = getattr(opt, "optimizer", opt)
    state_bytes = sum(
        t.numel() * t.element_size() for s in inner.state.values() for t in s.values() if torch.is_tensor(t)
    )
    # bf16 wrappers keep fp32 master copies of the trainable parameters beside the optimizer state
    masters = getattr(opt, "fp32_groups_flat_partition", None) or []
    state_bytes += sum(t.numel() * t.element_size() for t in masters if torch.is_tensor(t))
    params = list(learner.engine.module.parameters())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpu_s": usage.ru_utime + usage.ru_stime,  # all threads of the learner process
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "rss_mb": psutil.Process().memory_info().rss / 2**20,
        "trainable": float(sum(p.numel() for p in params if p.requires_grad)),
        "total_params": float(sum(p.numel() for p in params)),
        "optimizer_mb": state_bytes / 2**20,
    }


def make_batch(model_path: str, rows: int, response_tokens: int, kl: bool, seed: int = 0):
    import torch
    from transformers import AutoTokenizer

    from trainer.batch import LossTerm, TrainBatch, collate

    tok = AutoTokenizer.from_pretrained(model_path)
    g = torch.Generator().manual_seed(seed)
    prompts, responses = [], []
    for i in range(rows):
        a, b = 10 + (7 * i) % 90, 10 + (13 * i) % 90
        msg = [{"role": "user", "content": f"What is {a} + {b}? Give the final answer as a number."}]
        text = tok.apply_chat_template(msg, tokenize=False, add_generation_prompt=True)
        prompts.append(list(tok(text, add_special_tokens=False)["input_ids"]))
        n = int(torch.randint(response_tokens // 2, response_tokens + 1, (1,), generator=g))
        responses.append(torch.randint(100, len(tok) - 100, (n,), generator=g).tolist())
    col = collate(prompts, responses, pad_id=tok.pad_token_id or 0)
    adv = torch.randn(rows, generator=g)
    terms = [LossTerm("policy_gradient", 1.0, col.response_mask, {"advantages": adv})]
    if kl:
        terms.append(LossTerm("kl", 0.05, col.response_mask))
    return TrainBatch(col.input_ids, col.attention_mask, terms)


def run_mode(mode: str, model_path: str, batch, args) -> dict[str, float]:
    from trainer.group import LearnerGroup
    from trainer.learner import LearnerSpec
    from trainer.lora import LoraSpec

    spec = LearnerSpec(
        model_path=model_path,
        dtype="bfloat16",
        zero_stage=0,
        lr=1e-5 if mode == "full" else 2e-4,
        micro_batch_size=args.micro_batch,
        need_ref=args.kl,
        threads=2,
        lora=LoraSpec() if mode == "lora" else None,
    )
    t0 = time.perf_counter()
    group = LearnerGroup(spec, num_learners=1)
    try:
        built = group.call("run", "bench.lora_memory:learner_memory")[0]
        build_s = time.perf_counter() - t0
        group.train(batch, pad_id=0)  # warm-up
        cpu0 = group.call("run", "bench.lora_memory:learner_memory")[0]["cpu_s"]
        times = []
        for _ in range(args.steps):
            t = time.perf_counter()
            group.train(batch, pad_id=0)
            times.append(time.perf_counter() - t)
        trained = group.call("run", "bench.lora_memory:learner_memory")[0]
    finally:
        group.shutdown()
    return {
        "build_s": build_s,
        "peak_rss_built_mb": built["peak_rss_mb"],
        "peak_rss_trained_mb": trained["peak_rss_mb"],
        "rss_trained_mb": trained["rss_mb"],
        "trainable": trained["trainable"],
        "total_params": trained["total_params"],
        "optimizer_mb": trained["optimizer_mb"],
        "step_s": sum(times) / len(times),
        "step_cpu_s": (trained["cpu_s"] - cpu0) / len(times),
        "step_s_all": times,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin:smollm2-135m-instruct")
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--response-tokens", type=int, default=48)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument(
        "--kl", action="store_true", help="add a KL term (full fine-tuning loads a reference copy)"
    )
    ap.add_argument("--modes", default="full,lora")
    args = ap.parse_args()

    import ray

    from launch.prepare_model import resolve_model_path

    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")  # a shared machine: no OOM-monitor kills
    model_path = resolve_model_path(args.model, os.path.expanduser("~/.cache/forge-rl/models"))
    batch = make_batch(model_path, args.rows, args.response_tokens, args.kl)
    print(f"load average at start: {os.getloadavg()}", flush=True)
    print(f"batch: {batch.num_rows} rows × {batch.input_ids.shape[1]} tokens, kl={args.kl}", flush=True)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}},
    )
    results = {}
    try:
        for mode in args.modes.split(","):
            results[mode] = r = run_mode(mode, model_path, batch, args)
            steps = ", ".join(f"{t:.2f}" for t in r["step_s_all"])
            print(
                f"[{mode}] peak RSS {r['peak_rss_trained_mb']:.0f} MB (after build {r['peak_rss_built_mb']:.0f}), "
                f"RSS now {r['rss_trained_mb']:.0f} MB, trainable {r['trainable'] / 1e6:.2f}M of "
                f"{r['total_params'] / 1e6:.1f}M, optimizer state {r['optimizer_mb']:.1f} MB, "
                f"step {r['step_s']:.2f} s wall ({steps}), {r['step_cpu_s']:.2f} s CPU, build {r['build_s']:.1f} s",
                flush=True,
            )
    finally:
        ray.shutdown()
    if {"full", "lora"} <= results.keys():
        f, lo = results["full"], results["lora"]
        print(
            f"lora/full: peak RSS {lo['peak_rss_trained_mb'] / f['peak_rss_trained_mb']:.2f}, "
            f"step wall time {lo['step_s'] / f['step_s']:.2f}, step CPU time {lo['step_cpu_s'] / f['step_cpu_s']:.2f}",
            flush=True,
        )
    print(f"load average at end: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
