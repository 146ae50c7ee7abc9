"""Raw baselines and TRL for bench/grpo_step.py, each run in a fresh subprocess by that script.

    python bench/grpo_step_baselines.py {vllm,learner,trl} --dir WORK_DIR --steps N

(a) ``vllm``: an in-process ``vllm.LLM`` with the engine's settings, ``generate`` after one warm-up call;
(b) ``learner``: a plain-torch learner step (bf16 model, AdamW, the same micro-batches, PG loss, clipping) on
    the train batch the framework run saved; (c) ``trl``: TRL's ``GRPOTrainer`` on the same model, prompts,
    samples, length and reward. Each reads WORK_DIR/info.json (written by the framework run) and writes
    WORK_DIR/KIND.json. A fresh process per baseline because vLLM's CPU worker monkeypatches
    ``torch.set_num_threads``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# ---------------------------------------------------------------- 2a. raw vLLM (subprocess)


def worker_vllm(work: Path, n_measured: int) -> dict:
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
    os.environ["OMP_NUM_THREADS"] = "2"
    os.environ.setdefault("VLLM_CACHE_ROOT", str(work / "vllm_cache"))
    info = json.loads((work / "info.json").read_text())
    prompts = json.loads((work / "prompts.json").read_text())
    import torch

    torch.set_num_threads(2)
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    t0 = time.perf_counter()
    llm = LLM(
        model=info["model_path"],
        dtype="bfloat16",
        enforce_eager=True,
        max_model_len=info["max_model_len"],
        kv_cache_memory_bytes=int(info["kv_cache_gb"] * (1 << 30)),
        distributed_executor_backend="uni",
        seed=info["seed"],
        enable_prefix_caching=True,
    )
    start_s = time.perf_counter() - t0
    tp = [TokensPrompt(prompt_token_ids=p["ids"]) for p in prompts]
    sp = SamplingParams(n=prompts[0]["n"], max_tokens=info["max_new_tokens"], temperature=1.0, logprobs=0)

    def once() -> tuple[float, int]:
        llm.reset_prefix_cache()  # the framework resets it after every weight sync
        t = time.perf_counter()
        outs = llm.generate(tp, sp, use_tqdm=False)
        return time.perf_counter() - t, sum(len(c.token_ids) for o in outs for c in o.outputs)

    warm = once()
    runs = [once() for _ in range(n_measured)]
    return {
        "start_s": start_s,
        "warmup_s": warm[0],
        "times": [r[0] for r in runs],
        "tokens": [r[1] for r in runs],
        "torch_threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------- 2b. raw learner step (subprocess)


def worker_learner(work: Path, n_measured: int) -> dict:
    os.environ["OMP_NUM_THREADS"] = "2"
    import torch
    from transformers import AutoModelForCausalLM

    from trainer.learner import token_logprobs

    torch.set_num_threads(2)
    info = json.loads((work / "info.json").read_text())
    tb = torch.load(work / "train_batch.pt", weights_only=False)
    model = AutoModelForCausalLM.from_pretrained(info["model_path"], dtype=torch.bfloat16)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=info["lr"])
    mb = info["micro_batch_size"]
    term = tb.terms[0]
    adv = term.tensors["advantages"]
    mask = term.mask
    total_tokens = max(float(mask.sum()), 1.0)

    def step(with_entropy: bool = False) -> float:
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        for s in range(0, tb.num_rows, mb):
            sl = slice(s, min(s + mb, tb.num_rows))
            lp, _ = token_logprobs(
                model, tb.input_ids[sl], tb.attention_mask[sl], info["temperature"], with_entropy
            )
            ratio = torch.exp(lp - lp.detach())  # on-policy single pass, as the framework's learner
            a = adv[sl, None]
            per_tok = torch.maximum(-a * ratio, -a * ratio.clamp(0.8, 1.2))
            loss = (per_tok * mask[sl]).sum() / total_tokens
            loss.backward()
        if info["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), info["grad_clip"])
        opt.step()
        return time.perf_counter() - t

    warm = step()
    times = [step() for _ in range(n_measured)]
    # The framework's learner also computes the per-token entropy (a full-vocabulary softmax) for logging.
    times_entropy = [step(with_entropy=True) for _ in range(min(n_measured, 2))]
    return {
        "warmup_s": warm,
        "times": times,
        "times_entropy": times_entropy,
        "rows": tb.num_rows,
        "seq_len": int(tb.input_ids.shape[1]),
        "torch_threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------- 3. TRL GRPOTrainer (subprocess)


def worker_trl(work: Path, n_measured: int) -> dict:
    os.environ["OMP_NUM_THREADS"] = "2"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rewards.math import math_reward

    torch.set_num_threads(2)
    info = json.loads((work / "info.json").read_text())
    prompts = json.loads((work / "prompts.json").read_text())
    n = prompts[0]["n"]
    rows = []
    for p in prompts:
        msgs = []
        if info["system_prompt"]:
            msgs.append({"role": "system", "content": info["system_prompt"]})
        msgs.append({"role": "user", "content": p["user"]})
        rows.append({"prompt": msgs, "answer": p["answer"]})
    ds = Dataset.from_list(rows)

    tok = AutoTokenizer.from_pretrained(info["model_path"])
    same_ids = all(
        tok(
            tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True),
            add_special_tokens=False,
        )["input_ids"]
        == p["ids"]
        for r, p in zip(rows, prompts)
    )

    def math_reward_trl(prompts, completions, answer=None, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return math_reward(prompts, texts, answer=answer)

    stamps: dict[str, list[float]] = {"begin": [], "end": []}

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            stamps["begin"].append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            stamps["end"].append(time.perf_counter())
            # partial results, in case the run has to be stopped before the last step
            b, e = stamps["begin"], stamps["end"]
            partial = {"step_times": [y - x for x, y in zip(b, e)], "partial": True, **static}
            (work / "trl_partial.json").write_text(json.dumps(partial))

    n_prompts = len(prompts)
    cfg = GRPOConfig(
        output_dir=str(work / "trl_out"),
        use_cpu=True,
        bf16=True,
        per_device_train_batch_size=n_prompts * n,  # completions per device per optimizer step
        gradient_accumulation_steps=1,  # → generation_batch_size = 32 = 8 prompts × 4
        num_generations=n,
        max_completion_length=info["max_new_tokens"],
        temperature=info["temperature"],
        learning_rate=info["lr"],
        beta=0.0,
        max_grad_norm=info["grad_clip"],
        gradient_checkpointing=False,  # TRL defaults to True; the framework's recipe does not use it
        max_steps=1 + min(n_measured, 2),  # 2 measured steps: the run is long on a shared 2-core machine
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        seed=info["seed"],
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    logs: list[dict] = []

    class Logs(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs:
                logs_out.append({k: v for k, v in logs.items() if isinstance(v, (int, float))})

    logs_out = logs
    t0 = time.perf_counter()
    trainer = GRPOTrainer(
        model=info["model_path"],
        reward_funcs=math_reward_trl,
        args=cfg,
        train_dataset=ds,
        processing_class=tok,
        callbacks=[Timer(), Logs()],
    )
    init_s = time.perf_counter() - t0
    param_dtype = str(next(trainer.model.parameters()).dtype)
    static = {
        "init_s": init_s,
        "param_dtype": param_dtype,
        "bf16": cfg.bf16,
        "per_device_train_batch_size": cfg.per_device_train_batch_size,
        "generation_batch_size": cfg.generation_batch_size,
        "steps_per_generation": cfg.steps_per_generation,
        "same_prompt_ids": bool(same_ids),
    }
    t1 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t1
    b, e = stamps["begin"], stamps["end"]
    step_times = [y - x for x, y in zip(b, e)]
    end_to_end = [e[i] - e[i - 1] for i in range(1, len(e))]
    return {
        **static,
        "train_s": train_s,
        "step_times": step_times,
        "end_to_end": end_to_end,
        "logs": logs,
        "torch_threads": torch.get_num_threads(),
    }


WORKERS = {"vllm": worker_vllm, "learner": worker_learner, "trl": worker_trl}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=sorted(WORKERS))
    ap.add_argument("--dir", required=True)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    work = Path(args.dir)
    res = WORKERS[args.kind](work, args.steps)
    (work / f"{args.kind}.json").write_text(json.dumps(res))
    os._exit(0)  # skip slow/abort-prone interpreter teardown (vLLM, torch threads)


if __name__ == "__main__":
    main()
