"""One-shot GPU check of the learner and the HF rollout engine, without Ray.

Runs the real components in-process (one rank, as a Ray actor would), once per ZeRO stage, each stage in
its own subprocess (a fresh torch.distributed group, isolated crashes, a timeout):

- ``trainer.learner.Learner`` on CUDA, world size 1, NCCL, bf16, ZeRO 0/2/3: train steps with a
  policy-gradient + KL(k3, frozen reference) loss on a batch the HF engine generated, a multi-pass update
  (ppo_epochs=2, mini_batches=2), ``export_weights`` (full tensors, gathered under ZeRO-3, keys and shapes
  of the HF state dict incl. ``lm_head``), ``save`` (HF folder equal to the exported weights), the NaN-skip
  path (weights untouched), and ``load`` (weights restored exactly; replaying a step from the checkpoint
  gives the same grad norm and weights, so the optimizer state round-trips and the skipped update left no
  stale gradients behind).
- ``rollout.engines.hf_engine.HFEngine`` on CUDA: n samples per prompt with per-token log-probs, then the
  weight-sync contract through an in-process hand-off: the learner's exported safetensors bytes go into
  ``update_weights`` and the engine's log-probs (a fixed probe and fresh samples) must match the learner's
  (``rollout.generator.SyncCheck``, the framework's own check and tolerance).

Usage::

    python3 scripts/gpu_check.py                 # CUDA: ZeRO 0, 2, 3 in bf16; SKIP (exit 0) without CUDA
    python3 scripts/gpu_check.py --cpu           # CPU dry run: gloo, fp32, ZeRO 0, a tiny model (<1 min)

Prints one PASS/FAIL line per check, exits non-zero on any failure, and writes ``$OUT/gpu_check.json``
(plus per-stage logs in ``$OUT/gpu_check_logs/``) when ``OUT`` is set.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Runtime only: no DeepSpeed op is JIT-built (the learner uses torch's AdamW, not FusedAdam/CPUAdam).
os.environ.setdefault("DS_BUILD_OPS", "0")
os.environ.setdefault("DS_SKIP_CUDA_CHECK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROBE_TEXT = "<user>What is 12+34?\n<assistant>12+34=46. The answer is 46."
GPU_DEFAULTS = {
    "hidden": 256,
    "layers": 4,
    "prompts": 4,
    "n": 4,
    "max_new": 32,
    "steps": 4,
    "micro": 4,
    "threads": 4,
}
CPU_DEFAULTS = {
    "hidden": 64,
    "layers": 2,
    "prompts": 2,
    "n": 2,
    "max_new": 8,
    "steps": 2,
    "micro": 2,
    "threads": 1,
}


# ---------------------------------------------------------------------------------------------- helpers
class Recorder:
    """Collects checks, timings and info; rewrites its JSON file after every check (survives a crash)."""

    def __init__(self, path: str | None, prefix: str) -> None:
        self.path, self.prefix = path, prefix
        self.data: dict[str, Any] = {"checks": [], "timings": {}, "info": {}}

    def check(self, name: str, ok: bool, detail: str = "", status: str | None = None) -> bool:
        status = status or ("PASS" if ok else "FAIL")
        self.data["checks"].append({"name": f"{self.prefix}{name}", "status": status, "detail": detail})
        print(f"[{status}] {self.prefix}{name}: {detail}", flush=True)
        self.flush()
        return ok

    def timing(self, key: str, value: Any) -> None:
        self.data["timings"][key] = value
        self.flush()

    def info(self, key: str, value: Any) -> None:
        self.data["info"][key] = value
        self.flush()

    def flush(self) -> None:
        if self.path:
            tmp = f"{self.path}.tmp"
            with open(tmp, "w") as f:
                json.dump(self.data, f, indent=2, default=str)
            os.replace(tmp, self.path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _finite_metrics(m: dict[str, float]) -> tuple[bool, list[str]]:
    bad = [k for k, v in m.items() if not math.isfinite(float(v))]
    return not bad, bad


def _fmt(m: dict[str, float], keys: tuple[str, ...]) -> str:
    return ", ".join(f"{k}={m[k]:.4g}" for k in keys if k in m)


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def _load_blob(blob: bytes) -> dict:
    from safetensors.torch import load

    return load(blob)


# ----------------------------------------------------------------------------------------------- worker
class Phases:
    """Runs named phases; an exception fails that phase (with its traceback) and the later ones go on."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.failed = False

    @contextlib.contextmanager
    def phase(self, name: str, needs: tuple[str, ...] = (), state: dict | None = None):
        missing = [k for k in needs if state is not None and k not in state]
        if missing:
            self.rec.check(name, False, f"not run: an earlier phase did not produce {missing}", "SKIP")
            self.failed = True
            yield False
            return
        try:
            yield True
        except Exception as e:  # a failed phase is a FAIL line, not a crash of the whole worker
            self.failed = True
            tb = traceback.format_exc()
            print(tb, file=sys.stderr, flush=True)
            self.rec.check(name, False, f"{type(e).__name__}: {e}".strip()[:2000])


def run_worker(args: argparse.Namespace) -> int:
    import torch

    from rollout.engines.base import EngineSpec
    from rollout.engines.hf_engine import HFEngine
    from rollout.generator import SyncCheck
    from rollout.types import GenerationRequest, SamplingParams
    from trainer.advantages import get_advantage
    from trainer.batch import LossTerm, TrainBatch, collate
    from trainer.learner import Learner, LearnerSpec, token_logprobs

    stage = args.worker_stage
    rec = Recorder(args.result, f"zero{stage}/")
    ph = Phases(rec)
    cuda = torch.cuda.is_available()
    dtype = "bfloat16" if cuda else "float32"
    tdtype = torch.bfloat16 if cuda else torch.float32
    tol = 0.15 if cuda else 0.01  # the framework's default probe tolerance by dtype (launch/setup.py)
    model_dir = args.model_dir
    st: dict[str, Any] = {}

    import deepspeed
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rec.info("torch", torch.__version__)
    rec.info("torch_cuda", torch.version.cuda)
    rec.info("deepspeed", f"{deepspeed.__version__} ({Path(deepspeed.__file__).parent})")
    rec.info("transformers", transformers.__version__)
    rec.info("dtype", dtype)
    if cuda:
        props = torch.cuda.get_device_properties(0)
        rec.info("gpu", f"{props.name}, {props.total_memory / 2**30:.0f} GiB, sm_{props.major}{props.minor}")
        with contextlib.suppress(Exception):
            v = torch.cuda.nccl.version()
            rec.info("nccl", ".".join(map(str, v)) if isinstance(v, tuple) else str(v))
        torch.cuda.reset_peak_memory_stats()

    tok = AutoTokenizer.from_pretrained(model_dir)
    pad_id = tok.pad_token_id
    probe_ids = list(tok(PROBE_TEXT, add_special_tokens=False)["input_ids"])[:32]
    hf_ref = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    hf_shapes = {k: tuple(v.shape) for k, v in hf_ref.state_dict().items()}
    tied = bool(getattr(hf_ref.config, "tie_word_embeddings", False))
    del hf_ref
    prompts = [
        list(tok(f"<user>{a}+{b}=?\n<assistant>", add_special_tokens=False)["input_ids"])
        for a, b in [(12, 34), (5, 7), (123, 456), (9, 90), (1, 1), (77, 23), (3, 4), (64, 36)][
            : args.prompts
        ]
    ]
    sampling = SamplingParams(max_new_tokens=args.max_new, temperature=1.0)

    def learner_lp(learner, batch: TrainBatch) -> torch.Tensor:
        learner.engine.eval()
        with torch.no_grad():
            lp, _ = token_logprobs(
                learner.engine,
                batch.input_ids.to(learner.device),
                batch.attention_mask.to(learner.device),
                learner.spec.temperature,
            )
        learner.engine.train()
        return lp.float().cpu()

    def contract(learner, batch: TrainBatch) -> tuple[float, float]:
        """Engine-reported log-probs vs the learner's recomputation, on the generated tokens."""
        mask = batch.terms[0].mask > 0
        d = (learner_lp(learner, batch) - batch.engine_logprobs).abs()[mask]
        return float(d.mean()), float(d.max())

    def generate(engine, reqs) -> tuple[list, float]:
        _sync()
        t0 = time.perf_counter()
        outs = engine.generate(reqs, sampling)
        _sync()
        return outs, time.perf_counter() - t0

    def to_batch(reqs, outs, adv_sign: float = 1.0) -> TrainBatch:
        p_rows, r_rows, lp_rows, groups, rewards = [], [], [], [], []
        for i, (req, comps) in enumerate(zip(reqs, outs)):
            for c in comps:
                text = tok.decode(c.token_ids, skip_special_tokens=True)
                # toy reward: digits are good; a small length term keeps a group from being all-equal
                r = sum(ch.isdigit() for ch in text) / max(len(text), 1) + 1e-3 * len(c.token_ids)
                p_rows.append(req.prompt_ids)
                r_rows.append(c.token_ids)
                lp_rows.append(c.logprobs)
                groups.append(str(i))
                rewards.append(r)
        adv = adv_sign * torch.tensor(get_advantage("grpo")(rewards, groups), dtype=torch.float32)
        col = collate(p_rows, r_rows, pad_id=pad_id, engine_logprobs=lp_rows)
        terms = [
            LossTerm("policy_gradient", 1.0, col.response_mask, {"advantages": adv}),
            LossTerm("kl", 0.1, col.response_mask, options={"estimator": "k3"}),
        ]
        return TrainBatch(col.input_ids, col.attention_mask, terms, engine_logprobs=col.engine_logprobs)

    def check_generation(name: str, reqs, outs, dt: float) -> None:
        vocab = len(tok)
        n_tok = sum(len(c.token_ids) for comps in outs for c in comps)
        problems = []
        if len(outs) != len(reqs):
            problems.append(f"{len(outs)} results for {len(reqs)} requests")
        for req, comps in zip(reqs, outs):
            if len(comps) != req.n:
                problems.append(f"{len(comps)} samples, wanted n={req.n}")
            for c in comps:
                if not c.token_ids or len(c.token_ids) != len(c.logprobs):
                    problems.append(f"{len(c.token_ids)} ids vs {len(c.logprobs)} log-probs")
                if any(not (0 <= t < vocab) for t in c.token_ids):
                    problems.append("token id out of vocab")
                if any(not math.isfinite(x) or x > 1e-4 for x in c.logprobs):
                    problems.append("a log-prob is not finite or > 0")
                if len(c.token_ids) > sampling.max_new_tokens:
                    problems.append("more tokens than max_new_tokens")
        rate = n_tok / dt if dt > 0 else float("nan")
        rec.check(
            name,
            not problems,
            f"{len(reqs)} prompts x n={reqs[0].n}: {n_tok} tokens in {dt:.2f}s = {rate:.0f} tok/s"
            + (f"; problems: {sorted(set(problems))[:5]}" if problems else ""),
        )

    # -- 1. engine: generate n samples per prompt (fresh weights = the learner's initial weights)
    with ph.phase("engine_generate"):
        t0 = time.perf_counter()
        engine = HFEngine(EngineSpec(model_dir, dtype=dtype, seed=args.seed))
        rec.timing("engine_init_s", round(time.perf_counter() - t0, 3))
        reqs = [GenerationRequest(p, n=args.n) for p in prompts]
        outs, dt = generate(engine, reqs)
        check_generation("engine_generate", reqs, outs, dt)
        rec.timing("gen_cold_tok_per_s", round(sum(len(c.token_ids) for o in outs for c in o) / dt, 1))
        st["engine"], st["batch"] = engine, to_batch(reqs, outs)
        st["batch_c"] = to_batch(reqs, outs, adv_sign=-1.0)  # a different update from the same tokens

    # -- 2. learner init on this rank's torch.distributed group
    with ph.phase("learner_init"):
        spec = LearnerSpec(
            model_path=model_dir,
            dtype=dtype,
            zero_stage=stage,
            lr=args.lr,
            micro_batch_size=args.micro,
            need_ref=True,
            grad_clip=1.0,
            threads=args.threads,
            seed=args.seed,
        )
        t0 = time.perf_counter()
        learner = Learner(0, 1, "127.0.0.1", _free_port(), spec)
        _sync()
        init_s = time.perf_counter() - t0
        rec.timing("learner_init_s", round(init_s, 3))
        import torch.distributed as dist

        backend = dist.get_backend() if dist.is_initialized() else None
        want = "nccl" if cuda else "gloo"
        p_dtype = next(learner.engine.module.parameters()).dtype
        ok = backend == want and p_dtype == tdtype and learner.tie == tied
        rec.check(
            "learner_init",
            ok,
            f"backend={backend} (want {want}), device={learner.device}, param dtype={p_dtype}, "
            f"optimizer={type(learner.optimizer).__name__}, ref={type(learner.ref).__name__}, "
            f"tied={learner.tie}, {init_s:.1f}s",
        )
        st["learner"] = learner
        blob0, probe0 = learner.export_weights(probe_ids)
        st["w0"], st["probe0"] = _load_blob(blob0), probe0

    # -- 3. engine log-probs vs learner recompute on the same (initial) weights
    with ph.phase("contract_initial", ("learner", "batch"), st):
        mean_d, max_d = contract(st["learner"], st["batch"])
        rec.check(
            "contract_initial",
            mean_d <= tol,
            f"engine vs learner log-probs on {int(st['batch'].terms[0].mask.sum())} sampled tokens: "
            f"mean |diff| {mean_d:.2e}, max {max_d:.2e} (tol {tol})",
        )

    # -- 4. training steps: PG + KL(k3) to the reference
    with ph.phase("train", ("learner", "batch"), st):
        learner, batch = st["learner"], st["batch"]
        times, problems, hist = [], [], []
        for i in range(args.steps):
            _sync()
            t0 = time.perf_counter()
            m = learner.train(batch)
            _sync()
            times.append(time.perf_counter() - t0)
            hist.append(m)
            ok, bad = _finite_metrics(m)
            if not ok:
                problems.append(f"step {i}: non-finite {bad}")
            if m.get("nan_skipped", 1.0) != 0.0:
                problems.append(f"step {i}: skipped")
            for k in ("loss/policy_gradient", "loss/kl", "kl", "lr"):
                if k not in m:
                    problems.append(f"step {i}: no {k}")
            if i > 0 and not m.get("kl", 0.0) > 0.0:
                problems.append(f"step {i}: kl={m.get('kl')} (should be > 0 once the policy moved)")
        if learner.steps != args.steps:
            problems.append(f"learner.steps={learner.steps}, want {args.steps}")
        n_tok = int(batch.attention_mask.sum())
        steady = times[1:] or times
        med = statistics.median(steady)
        rec.timing("step_s", [round(t, 4) for t in times])
        rec.timing("step_median_s", round(med, 4))
        rec.timing("train_tok_per_s", round(n_tok / med, 1))
        rec.check(
            "train",
            not problems,
            f"{args.steps} steps on {batch.num_rows} rows/{n_tok} tokens (micro {args.micro}); "
            f"first: {_fmt(hist[0], ('loss/policy_gradient', 'loss/kl', 'grad_norm'))}; "
            f"last: {_fmt(hist[-1], ('loss/policy_gradient', 'loss/kl', 'kl', 'grad_norm', 'entropy'))}; "
            f"step {med * 1e3:.1f} ms (median after the first)"
            + (f"; problems: {problems[:5]}" if problems else ""),
        )

    # -- 5. multi-pass update: old log-probs recomputed, 2 epochs x 2 mini-batches
    with ph.phase("train_multipass", ("learner", "batch"), st):
        learner = st["learner"]
        base_spec, before = learner.spec, learner.steps
        learner.spec = replace(base_spec, ppo_epochs=2, mini_batches=2)
        try:
            m = learner.train(st["batch"])
        finally:
            learner.spec = base_spec
        ok, bad = _finite_metrics(m)
        ok = ok and learner.steps == before + 4 and m.get("nan_skipped") == 0.0
        rec.check(
            "train_multipass",
            ok,
            f"steps {before}->{learner.steps} (want +4), {_fmt(m, ('loss/policy_gradient', 'clip_frac', 'approx_kl_old'))}"
            + (f"; non-finite {bad}" if bad else ""),
        )

    # -- 6. export: full tensors with the HF state dict's keys and shapes (lm_head included)
    with ph.phase("export_weights", ("learner", "w0"), st):
        learner = st["learner"]
        _sync()
        t0 = time.perf_counter()
        blob, probe1 = learner.export_weights(probe_ids)
        export_s = time.perf_counter() - t0
        rec.timing("export_s", round(export_s, 4))
        rec.timing("export_mb", round(len(blob) / 2**20, 2))
        w1 = _load_blob(blob)
        problems = []
        if set(w1) != set(hf_shapes):
            problems.append(
                f"keys differ: missing {sorted(set(hf_shapes) - set(w1))[:5]}, extra {sorted(set(w1) - set(hf_shapes))[:5]}"
            )
        if "lm_head.weight" not in w1:
            problems.append("no lm_head.weight")
        bad_shape = [k for k in w1 if k in hf_shapes and tuple(w1[k].shape) != hf_shapes[k]]
        if bad_shape:
            problems.append(
                f"shapes differ (partitioned?): {[(k, tuple(w1[k].shape)) for k in bad_shape[:3]]}"
            )
        bad_dtype = sorted({str(v.dtype) for v in w1.values()} - {str(tdtype)})
        if bad_dtype:
            problems.append(f"dtypes {bad_dtype}, want {tdtype}")
        nonfinite = [k for k, v in w1.items() if not bool(torch.isfinite(v.float()).all())]
        if nonfinite:
            problems.append(f"non-finite: {nonfinite[:3]}")
        if tied and "lm_head.weight" in w1:
            emb = next((k for k in w1 if k.endswith("embed_tokens.weight")), None)
            if emb is None or not torch.equal(w1["lm_head.weight"], w1[emb]):
                problems.append("tied lm_head differs from embed_tokens")
        w0 = st["w0"]
        unchanged = [k for k in w1 if k in w0 and torch.equal(w1[k], w0[k])]
        unchanged_2d = [k for k in unchanged if w1[k].dim() >= 2]
        # Every matrix must move; 1-D norm weights sit at 1.0, where a few small Adam steps may still
        # round to the same bf16 value, so they are only reported.
        if unchanged_2d:
            problems.append(f"matrices did not change: {unchanged_2d[:5]} ({len(unchanged_2d)})")
        if probe1 == st["probe0"]:
            problems.append("probe log-probs unchanged by training")
        n_params = sum(v.numel() for k, v in w1.items() if not (tied and k == "lm_head.weight"))
        rec.check(
            "export_weights",
            not problems,
            f"{len(w1)} tensors, {n_params / 1e6:.2f}M params, {len(blob) / 2**20:.1f} MiB in {export_s:.2f}s; "
            f"changed {len(w1) - len(unchanged)}/{len(w1)} (unchanged: {unchanged[:4]}), "
            f"max |w1-w0| {_max_diff(w1, w0):.3g}" + (f"; problems: {problems}" if problems else ""),
        )
        st["w1"], st["blob1"], st["probe1"] = w1, blob, probe1

    # -- 7. weight sync into the engine (in-process hand-off of the safetensors bytes)
    with ph.phase("weight_sync", ("engine", "blob1", "probe0"), st):
        engine = st["engine"]
        before = engine.probe_logprobs(probe_ids)
        before_d = sum(abs(a - b) for a, b in zip(before, st["probe1"])) / len(before)
        _sync()
        t0 = time.perf_counter()
        n = engine.update_weights(st["blob1"])
        _sync()
        rec.timing("engine_update_s", round(time.perf_counter() - t0, 4))
        after = engine.probe_logprobs(probe_ids)
        diff = SyncCheck(tol).check(st["probe1"], before, after, st["probe0"], worker=0)  # raises on failure
        max_d = max(abs(a - b) for a, b in zip(after, st["probe1"]))
        ok = n == len(st["w1"]) and before_d > diff
        rec.check(
            "weight_sync",
            ok,
            f"update_weights took {n}/{len(st['w1'])} tensors; probe ({len(probe_ids)} tokens) mean |diff| "
            f"{before_d:.3g} before -> {diff:.2e} after (max {max_d:.2e}, SyncCheck tol {tol})",
        )

    # -- 8. fresh samples from the synced engine: its log-probs vs the learner's recomputation
    with ph.phase("contract_after_sync", ("engine", "learner", "w1"), st):
        reqs = [GenerationRequest(p, n=args.n) for p in prompts]
        outs, dt = generate(st["engine"], reqs)
        check_generation("engine_generate_synced", reqs, outs, dt)
        rec.timing("gen_tok_per_s", round(sum(len(c.token_ids) for o in outs for c in o) / dt, 1))
        b2 = to_batch(reqs, outs)
        mean_d, max_d = contract(st["learner"], b2)
        rec.check(
            "contract_after_sync",
            mean_d <= tol,
            f"synced engine vs learner on {int(b2.terms[0].mask.sum())} new sampled tokens: "
            f"mean |diff| {mean_d:.2e}, max {max_d:.2e} (tol {tol})",
        )

    ckpt = Path(args.workdir) / f"ckpt_zero{stage}"
    # -- 9. checkpoint: HF folder equal to the exported weights, loadable by transformers
    with ph.phase("save_checkpoint", ("learner", "w1"), st):
        from safetensors.torch import load_file

        learner, w1 = st["learner"], st["w1"]
        _sync()
        t0 = time.perf_counter()
        learner.save(str(ckpt))
        rec.timing("save_s", round(time.perf_counter() - t0, 3))
        problems = []
        files = sorted((ckpt / "model").glob("*.safetensors"))
        if not (ckpt / "model" / "config.json").is_file() or not files:
            problems.append(f"HF folder incomplete: {sorted(p.name for p in (ckpt / 'model').glob('*'))}")
        if not (ckpt / "deepspeed" / "state").is_dir():
            problems.append("no deepspeed/state")
        saved: dict = {}
        for f in files:
            saved.update(load_file(str(f)))
        missing = set(w1) - set(saved) - ({"lm_head.weight"} if tied else set())
        if missing:
            problems.append(f"saved model lacks {sorted(missing)[:5]}")
        neq = [k for k in saved if k in w1 and not torch.equal(saved[k].to(w1[k].dtype), w1[k])]
        if neq:
            problems.append(f"saved != exported for {neq[:5]}")
        dev = "cuda" if cuda else "cpu"
        hf = AutoModelForCausalLM.from_pretrained(str(ckpt / "model"), dtype=tdtype).to(dev).eval()
        ids = torch.tensor([probe_ids], device=dev)
        with torch.no_grad():
            lp = torch.log_softmax(hf(input_ids=ids).logits[0, :-1].float(), -1)
        lp = lp.gather(-1, ids[0, 1:, None]).squeeze(-1).tolist()
        d = sum(abs(a - b) for a, b in zip(lp, st["probe1"])) / len(lp)
        del hf
        if not d <= tol:
            problems.append(f"reloaded HF model probe differs by {d:.3g}")
        rec.check(
            "save_checkpoint",
            not problems,
            f"{len(saved)} tensors saved (= exported), HF reload probe mean |diff| {d:.2e}"
            + (f"; problems: {problems}" if problems else ""),
        )
        st["ckpt_steps"] = learner.steps

    def replay_gap(m_ref: dict, w_ref: dict, m_new: dict, w_new: dict) -> tuple[bool, str]:
        """Did a step from the checkpoint reproduce the reference step (same grad norm and weights)?"""
        w1 = st["w1"]
        upd = sum(float((w_ref[k].float() - w1[k].float()).abs().sum()) for k in w_ref)
        gap = sum(float((w_new[k].float() - w_ref[k].float()).abs().sum()) for k in w_ref)
        rel = gap / upd if upd > 0 else float("inf")
        ga, gb = m_ref.get("grad_norm"), m_new.get("grad_norm")
        g_rel = abs(ga - gb) / max(abs(ga), 1e-12) if ga is not None and gb is not None else 0.0
        g_txt = (
            f"grad_norm {gb:.5g} vs reference {ga:.5g}"
            if ga is not None and gb is not None
            else "no grad_norm"
        )
        ok = upd > 0 and rel < 0.05 and g_rel < 0.01 and m_new.get("nan_skipped") == 0.0
        return ok, f"{g_txt}, weight gap {rel:.2e} of the update size (want < 0.05, grad_norm within 1%)"

    # -- 10. load: exact weights and step count back; replaying a step from the checkpoint reproduces it
    with ph.phase("load_checkpoint", ("learner", "batch_c", "w1", "ckpt_steps"), st):
        learner = st["learner"]
        m_ref = learner.train(st["batch_c"])  # the reference step from the checkpointed state
        w_ref = _load_blob(learner.export_weights(probe_ids)[0])
        _sync()
        t0 = time.perf_counter()
        learner.load(str(ckpt))
        _sync()
        rec.timing("load_s", round(time.perf_counter() - t0, 3))
        md_load = _max_diff(_load_blob(learner.export_weights(probe_ids)[0]), st["w1"])
        steps_after_load = learner.steps
        m_rep = learner.train(st["batch_c"])
        w_rep = _load_blob(learner.export_weights(probe_ids)[0])
        ok, txt = replay_gap(m_ref, w_ref, m_rep, w_rep)
        ok = ok and md_load == 0.0 and steps_after_load == st["ckpt_steps"]
        rec.check(
            "load_checkpoint",
            ok,
            f"reloaded max |w - w_ckpt| {md_load:.3g}, steps {steps_after_load} (ckpt {st['ckpt_steps']}); "
            f"replayed step: {txt}",
        )
        st["ref_step"] = (m_ref, w_ref)

    # -- 11. NaN in the loss: the update is skipped and the weights stay put
    with ph.phase("nan_skip", ("learner", "batch", "w1"), st):
        learner, batch = st["learner"], st["batch"]
        learner.load(str(ckpt))
        adv = batch.terms[0].tensors["advantages"].clone()
        # The shortest row sorts into the last micro-batch: earlier micro-batches were already
        # back-propagated when the NaN shows up, so the skip must also drop their gradients.
        adv[int(batch.attention_mask.sum(-1).argmin())] = float("nan")
        pg = replace(batch.terms[0], tensors={"advantages": adv})
        nan_batch = replace(batch, terms=[pg, *batch.terms[1:]])
        before = learner.steps
        m = learner.train(nan_batch)
        md = _max_diff(_load_blob(learner.export_weights(probe_ids)[0]), st["w1"])
        ok = m.get("nan_skipped") == 1.0 and learner.steps == before and md == 0.0
        n_micro = -(-batch.num_rows // args.micro)
        rec.check(
            "nan_skip",
            ok,
            f"NaN advantage in the last of {n_micro} micro-batches: nan_skipped={m.get('nan_skipped')}, "
            f"steps {before}->{learner.steps}, max |w - w_ckpt| {md:.3g}",
        )
        st["nan_done"] = True

    # -- 12. the step after a skipped one must equal the same step without the skip (no stale gradients)
    with ph.phase("nan_skip_next_step", ("learner", "batch_c", "ref_step", "nan_done"), st):
        learner = st["learner"]
        m_next = learner.train(st["batch_c"])
        w_next = _load_blob(learner.export_weights(probe_ids)[0])
        ok, txt = replay_gap(*st["ref_step"], m_next, w_next)
        rec.check(
            "nan_skip_next_step",
            ok,
            f"step after the skip vs the same step from the checkpoint: {txt}"
            + ("" if ok else " -> gradients of the skipped update leaked into the next one"),
        )

    with ph.phase("peak_memory"):
        if cuda:
            rec.timing("peak_gpu_mem_gib", round(torch.cuda.max_memory_allocated() / 2**30, 3))
    # last, so that a failed collective cannot disturb the checks above
    with ph.phase("all_finite_collective", ("learner",), st):
        # Learner._all_finite all-reduces its flag only when world > 1. Pretend to be one of two ranks so the
        # collective runs on this (size-1) group: NCCL rejects CPU tensors, so the flag must be on the GPU.
        learner = st["learner"]
        world, learner.world = learner.world, 2
        try:
            finite = learner._all_finite(torch.tensor([1.0], device=learner.device))
            nan = learner._all_finite(torch.tensor([float("nan")], device=learner.device))
            ok, txt = finite and not nan, f"finite -> {finite}, NaN -> {nan}"
        except Exception as e:
            ok, txt = False, f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        finally:
            learner.world = world
        rec.check("all_finite_collective", ok, f"NaN flag all-reduce on the {learner.device} group: {txt}")
    with ph.phase("shutdown", ("learner",), st):
        st["learner"].shutdown()
    return 1 if ph.failed else 0


# ----------------------------------------------------------------------------------------------- driver
def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", action="store_true", help="CPU dry run: gloo, fp32, ZeRO 0, a tiny model")
    ap.add_argument("--stages", default=None, help="ZeRO stages, comma-separated (GPU: 0,2,3; --cpu: 0)")
    ap.add_argument("--hidden", type=int, default=None)
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--prompts", type=int, default=None, help="prompts per generation (max 8)")
    ap.add_argument("--n", type=int, default=None, help="samples per prompt")
    ap.add_argument("--max-new", type=int, default=None, help="max new tokens per sample")
    ap.add_argument("--steps", type=int, default=None, help="training steps per stage")
    ap.add_argument("--micro", type=int, default=None, help="micro-batch size")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=180, help="seconds per ZeRO stage subprocess")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (model, checkpoints, logs)")
    # internal: one stage's worker
    ap.add_argument("--worker-stage", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    defaults = CPU_DEFAULTS if args.cpu else GPU_DEFAULTS
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.prompts = max(1, min(args.prompts, 8))
    if args.stages is None:
        args.stages = "0" if args.cpu else "0,2,3"
    return args


def _worker_cmd(args: argparse.Namespace, stage: int, model_dir: str, result: str, workdir: str) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker-stage", str(stage)]
    cmd += ["--model-dir", model_dir, "--result", result, "--workdir", workdir]
    for k in ("hidden", "layers", "prompts", "n", "steps", "micro", "threads", "lr", "seed"):
        cmd += [f"--{k}", str(getattr(args, k))]
    cmd += ["--max-new", str(args.max_new)]
    if args.cpu:
        cmd.append("--cpu")
    return cmd


def _write_summary(summary: dict) -> None:
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        with open(Path(out) / "gpu_check.json", "w") as f:
            json.dump(summary, f, indent=2, default=str)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.worker_stage is not None:
        return run_worker(args)

    import torch

    summary: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mode": "cpu-dry-run" if args.cpu else "gpu",
    }
    try:
        from importlib.metadata import version

        summary["deepspeed"] = version("deepspeed")
        summary["transformers"] = version("transformers")
    except Exception as e:
        summary["versions_error"] = repr(e)
    if not args.cpu and not torch.cuda.is_available():
        print("SKIP: no CUDA device (torch.cuda.is_available() is False); `--cpu` runs a CPU dry run")
        summary.update(ok=True, skipped=True)
        _write_summary(summary)
        return 0

    stages = [int(s) for s in args.stages.split(",") if s.strip()]
    t_all = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    out = os.environ.get("OUT")
    logs = Path(out) / "gpu_check_logs" if out else work / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    # By file path: a stray top-level ``tests`` package in site-packages would shadow the repo's folder.
    spec = importlib.util.spec_from_file_location("forge_tests_tiny", ROOT / "tests" / "support" / "tiny.py")
    assert spec is not None and spec.loader is not None
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    build_tiny_llama = tiny.build_tiny_llama

    model_dir = str(build_tiny_llama(work / "model", seed=args.seed, hidden=args.hidden, layers=args.layers))
    summary["model"] = {"hidden": args.hidden, "layers": args.layers, "tied": True, "path": model_dir}
    print(
        f"gpu_check: mode={summary['mode']} stages={stages} model=llama hidden={args.hidden} "
        f"layers={args.layers} python={summary['python']} torch={summary['torch']} "
        f"deepspeed={summary.get('deepspeed')} transformers={summary.get('transformers')}",
        flush=True,
    )

    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    if args.cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    checks: list[dict] = []
    per_stage: dict[str, Any] = {}
    for stage in stages:
        result = work / f"zero{stage}.json"
        log = logs / f"zero{stage}.log"
        print(f"--- ZeRO-{stage} (log: {log})", flush=True)
        t0 = time.perf_counter()
        rc: int | str
        with open(log, "w") as lf:
            try:
                rc = subprocess.run(
                    _worker_cmd(args, stage, model_dir, str(result), str(work)),
                    stdout=lf,
                    stderr=subprocess.STDOUT,
                    env=env,
                    timeout=args.timeout,
                    cwd=str(ROOT),
                ).returncode
            except subprocess.TimeoutExpired:
                rc = f"timeout after {args.timeout}s"
        data = (
            json.loads(result.read_text()) if result.is_file() else {"checks": [], "timings": {}, "info": {}}
        )
        data["wall_s"] = round(time.perf_counter() - t0, 1)
        data["rc"] = rc
        for c in data["checks"]:
            print(f"[{c['status']}] {c['name']}: {c['detail']}", flush=True)
        if rc != 0 or not data["checks"]:
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-40:])
            data["checks"].append(
                {
                    "name": f"zero{stage}/worker",
                    "status": "FAIL",
                    "detail": f"worker rc={rc}; log tail:\n{tail}",
                }
            )
            print(f"[FAIL] zero{stage}/worker: rc={rc}; last lines of {log}:\n{tail}", flush=True)
        checks += data["checks"]
        per_stage[f"zero{stage}"] = data

    failed = [c["name"] for c in checks if c["status"] in ("FAIL", "SKIP")]
    summary.update(
        ok=not failed,
        failed=failed,
        checks=checks,
        stages=per_stage,
        total_s=round(time.perf_counter() - t_all, 1),
    )
    first = next(iter(per_stage.values()), {})
    for k in ("gpu", "torch_cuda", "nccl", "dtype"):
        if k in first.get("info", {}):
            summary[k] = first["info"][k]
    print("--- timings")
    for name, data in per_stage.items():
        t = data.get("timings", {})
        print(
            f"{name}: init {t.get('learner_init_s', '?')}s, step {t.get('step_median_s', '?')}s "
            f"(median; all {t.get('step_s', '?')}), train {t.get('train_tok_per_s', '?')} tok/s, "
            f"export {t.get('export_s', '?')}s, save {t.get('save_s', '?')}s, load {t.get('load_s', '?')}s, "
            f"gen {t.get('gen_tok_per_s', '?')} tok/s (cold {t.get('gen_cold_tok_per_s', '?')}), "
            f"peak mem {t.get('peak_gpu_mem_gib', '-')} GiB, wall {data.get('wall_s')}s"
        )
    info = first.get("info", {})
    print(
        f"--- env: gpu={info.get('gpu', 'none')} torch={summary['torch']} cuda={info.get('torch_cuda')} "
        f"nccl={info.get('nccl', '-')} deepspeed={info.get('deepspeed', summary.get('deepspeed'))} "
        f"transformers={summary.get('transformers')}"
    )
    n_pass = sum(c["status"] == "PASS" for c in checks)
    verdict = "PASS" if not failed else "FAIL"
    print(
        f"GPU CHECK {verdict}: {n_pass} passed, {len(failed)} failed"
        + (f" ({', '.join(failed)})" if failed else "")
        + f", {summary['total_s']}s"
    )
    _write_summary(summary)
    if failed or args.keep:
        print(f"work folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
