"""What the learner's log-prob path costs: the previous token_logprobs against trainer/logprobs.py.

    .venv/bin/python bench/learner_probe.py [--reps 3] [--arms old,new+pack,...] [--json OUT]

SmolLM2-135M-Instruct (builtin, fp32, 2 torch threads) on one GRPO-shaped batch: 8 prompts × 4 samples,
prompts 30-50 tokens, responses 4-64 tokens, right-padded; a policy-gradient term on the response tokens
(token normalisation over the mini-batch), micro-batches of 8 rows, AdamW. One optimizer step = forward +
backward of every micro-batch + clipping + AdamW. Each arm runs in a fresh subprocess (its own peak RSS):
1 warm-up step, then ``--reps`` measured steps. Arms:

- ``old``: the previous implementation (copied below): full logits, fp32 log-softmax over [B, T, V],
  entropy by a second softmax, every micro-batch at the batch's full length (the old learner);
- ``new``: trainer.logprobs.token_logprobs with ``needed`` = the response mask (head on targets only,
  chunked, trimmed to the micro-batch's last target), rows in batch order;
- ``+pack``: rows sorted by length into micro-batches (trainer.learner.pack_units with lengths), each
  micro-batch trimmed to its longest row (``old+pack`` trims explicitly);
- ``-noent``: without the entropy; ``+ckpt``: each chunk under torch.utils.checkpoint.

Printed per arm: seconds per step (mean ± std; forward / backward / optimizer split), ratio to ``old``, peak
RSS and its growth over the model + optimizer state, and the warm-up step's loss and gradient norm (equal
across arms up to fp32 rounding: the arms compute the same update). The load average is printed before and
after each arm: another job on the machine shows there. Results: bench/RESULTS_learner_probe.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARMS = ["old", "old-noent", "old+pack", "new", "new-noent", "new+pack", "new+pack-noent", "new+pack+ckpt"]


def old_token_logprobs(model, input_ids, attention_mask, temperature=1.0, with_entropy=False, features=None):
    """trainer/learner.py's token_logprobs before issue 15 (kept here as the baseline)."""
    import torch
    import torch.nn.functional as F

    extra = {"features": features} if features else {}
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **extra)
    logits = logits.logits[:, :-1].float()
    if temperature != 1.0:
        logits = logits / temperature
    lse = torch.logsumexp(logits, -1)
    lp = logits.gather(-1, input_ids[:, 1:, None]).squeeze(-1) - lse
    ent = None
    if with_entropy:
        with torch.no_grad():
            p = torch.softmax(logits, -1)
            ent = F.pad(lse - (p * logits).sum(-1), (1, 0))
    return F.pad(lp, (1, 0)), ent


def grpo_batch(seed: int = 0):
    """8 prompts × 4 samples, varied prompt (30-50) and response (4-64) lengths, group-normalised advantages."""
    import torch

    from trainer.batch import LossTerm, TrainBatch, collate

    g = torch.Generator().manual_seed(seed)
    prompts, responses = [], []
    for _ in range(8):
        p = torch.randint(10, 20000, (int(torch.randint(30, 51, (1,), generator=g)),), generator=g).tolist()
        for _ in range(4):
            n = int(torch.randint(4, 65, (1,), generator=g))
            prompts.append(p)
            responses.append(torch.randint(10, 20000, (n,), generator=g).tolist())
    col = collate(prompts, responses, pad_id=0)
    reward = torch.rand(32, generator=g).round().view(8, 4)
    adv = ((reward - reward.mean(1, keepdim=True)) / (reward.std(1, keepdim=True) + 1e-6)).view(-1)
    term = LossTerm("policy_gradient", 1.0, col.response_mask, {"advantages": adv}, {"norm": "token"})
    return TrainBatch(col.input_ids, col.attention_mask, [term])


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(arm: str, reps: int, micro: int, chunk: int | None) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from launch.prepare_model import resolve_model_path
    from trainer.learner import needed_positions, pack_units
    from trainer.logprobs import token_logprobs
    from trainer.losses import LossInputs, Reducer, get_loss

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(
        resolve_model_path("builtin:smollm2-135m-instruct"), dtype=torch.float32
    )
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    for p in model.parameters():  # allocate AdamW's state now (lr 0): the growth below is the step's own
        p.grad = torch.zeros_like(p)
    opt.param_groups[0]["lr"] = 0.0
    opt.step()
    opt.param_groups[0]["lr"] = 1e-6
    opt.zero_grad(set_to_none=True)

    batch = grpo_batch()
    term = batch.terms[0]
    red = Reducer("token", float(term.mask.sum()), float((term.mask.sum(-1) > 0).sum()))
    old = arm.startswith("old")
    pack = "+pack" in arm
    entropy = "-noent" not in arm
    lengths = batch.attention_mask.sum(-1).tolist()
    plan = pack_units(batch.units(), micro, lengths if pack else None)
    columns = 0  # rows × columns the model reads, summed over micro-batches
    micros = []
    for rows in plan:
        mb = batch.select(rows)
        if old and pack:  # the old function on a micro-batch trimmed to its longest row
            L = int(mb.attention_mask.sum(-1).max())
            terms = [replace(t, mask=t.mask[:, :L]) for t in mb.terms]
            mb = replace(
                mb, input_ids=mb.input_ids[:, :L], attention_mask=mb.attention_mask[:, :L], terms=terms
            )
        micros.append(mb)
        if old:
            columns += mb.input_ids.numel()
        else:  # trainer.logprobs reads the columns before the last target
            columns += len(rows) * int(needed_positions(mb).any(0).nonzero().max())
    rss0 = _rss_mb()

    def step() -> dict:
        times = {"forward": 0.0, "backward": 0.0}
        t0, c0 = time.perf_counter(), time.process_time()
        total = 0.0
        for mb in micros:
            t = time.perf_counter()
            if old:
                lp, ent = old_token_logprobs(model, mb.input_ids, mb.attention_mask, 1.0, entropy)
            else:
                kw = {"needed": needed_positions(mb), "chunk_size": chunk, "checkpoint": "+ckpt" in arm}
                lp, ent = token_logprobs(model, mb.input_ids, mb.attention_mask, 1.0, entropy, **kw)
            loss, _ = get_loss("policy_gradient").fn(LossInputs(lp, lp.detach(), None), mb.terms[0], red)
            if ent is not None:
                float((ent * mb.terms[0].mask).sum())  # the learner logs it
            t2 = time.perf_counter()
            loss.backward()
            times["forward"] += t2 - t
            times["backward"] += time.perf_counter() - t2
            total += float(loss.detach())
        t = time.perf_counter()
        gn = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        opt.step()
        opt.zero_grad(set_to_none=True)
        times["optimizer"] = time.perf_counter() - t
        times["step"] = time.perf_counter() - t0
        times["cpu"] = time.process_time() - c0  # all threads: less sensitive to other jobs than wall time
        return {**times, "loss": total, "grad_norm": gn}

    warm = step()
    runs = [step() for _ in range(reps)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "arm": arm,
        "warmup": warm,
        "runs": runs,
        "peak_rss_mb": peak,
        "rss_before_mb": rss0,
        "columns": columns,
        "targets": int(term.mask.sum()),
        "micro_batches": len(micros),
        "threads": torch.get_num_threads(),
    }


def _wait_for_quiet(limit: float, max_wait: float) -> None:
    t0 = time.monotonic()
    while os.getloadavg()[0] > limit and time.monotonic() - t0 < max_wait:
        time.sleep(15)
    if time.monotonic() - t0 > 1:
        print(
            f"  (waited {time.monotonic() - t0:.0f} s for load {os.getloadavg()[0]:.2f} <= {limit})",
            flush=True,
        )


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--micro", type=int, default=8, help="rows per micro-batch")
    ap.add_argument("--chunk", type=int, default=None, help="positions per chunk (default: by vocabulary)")
    ap.add_argument("--json", default=None, help="write the raw results here")
    ap.add_argument(
        "--quiet-load",
        type=float,
        default=None,
        help="before each arm wait (≤ --max-wait s) for a lower 1-min load",
    )
    ap.add_argument("--max-wait", type=float, default=900.0)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print("RESULT " + json.dumps(worker(a.worker, a.reps, a.micro, a.chunk)), flush=True)
        return 0

    env = {**os.environ, "OMP_NUM_THREADS": "2", "TOKENIZERS_PARALLELISM": "false"}
    results = []
    print(f"load average before: {_load()}  (cores: {os.cpu_count()})", flush=True)
    for arm in a.arms.split(","):
        cmd = [sys.executable, __file__, "--worker", arm, "--reps", str(a.reps), "--micro", str(a.micro)]
        if a.chunk:
            cmd += ["--chunk", str(a.chunk)]
        if a.quiet_load is not None:
            _wait_for_quiet(a.quiet_load, a.max_wait)
        load_before = _load()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(f"{arm}: failed\n{proc.stderr[-3000:]}", flush=True)
            return 1
        r = json.loads(lines[-1].removeprefix("RESULT "))
        r["load_before"], r["load_after"] = load_before, _load()
        results.append(r)
        steps = [x["step"] for x in r["runs"]]
        print(
            f"{arm:16} step {statistics.mean(steps):6.2f} s (reps {', '.join(f'{s:.2f}' for s in steps)})"
            f"  load {r['load_before']} -> {r['load_after']}",
            flush=True,
        )
    _table(results)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


def _table(results: list[dict]) -> None:
    base = next((r for r in results if r["arm"] == "old"), results[0])

    def mean(r: dict, k: str) -> float:
        return statistics.mean(x[k] for x in r["runs"])

    b_step, b_cpu = mean(base, "step"), mean(base, "cpu")
    b_grow = base["peak_rss_mb"] - base["rss_before_mb"]
    print(
        f"\n{'arm':16} {'step s':>14} {'fwd s':>6} {'bwd s':>6} {'opt s':>6} {'× old':>6} {'CPU s':>6} {'× old':>6} "
        f"{'peak MB':>8} {'growth MB':>9} {'× old':>6} {'cols':>5} {'warm-up loss':>13} {'grad norm':>10}"
    )
    for r in results:
        steps = [x["step"] for x in r["runs"]]
        sd = statistics.stdev(steps) if len(steps) > 1 else 0.0
        grow = r["peak_rss_mb"] - r["rss_before_mb"]
        print(
            f"{r['arm']:16} {statistics.mean(steps):7.2f} ± {sd:4.2f} {mean(r, 'forward'):6.2f} "
            f"{mean(r, 'backward'):6.2f} {mean(r, 'optimizer'):6.2f} {statistics.mean(steps) / b_step:6.2f} "
            f"{mean(r, 'cpu'):6.1f} {mean(r, 'cpu') / b_cpu:6.2f} "
            f"{r['peak_rss_mb']:8.0f} {grow:9.0f} {grow / b_grow:6.2f} {r['columns']:5d} "
            f"{r['warmup']['loss']:13.6f} {r['warmup']['grad_norm']:10.5f}"
        )
    r0 = results[0]
    print(
        f"\n{r0['micro_batches']} micro-batches, {r0['targets']} target tokens; cols = rows × columns the "
        f"model reads per step; torch threads {r0['threads']}; CPU s = process CPU time per step (all threads); "
        "growth = peak RSS − RSS with model + AdamW state"
    )


if __name__ == "__main__":
    sys.exit(main())
