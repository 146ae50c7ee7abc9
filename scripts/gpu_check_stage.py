"""One ZeRO stage of scripts/gpu_check.py, run by it in a fresh subprocess (a fresh torch.distributed group,
isolated crashes, a timeout). Every check of the stage lives here; the driver, the options and the summary are
in scripts/gpu_check.py, whose parser this file reuses.

    python scripts/gpu_check_stage.py --worker-stage STAGE --model-dir DIR --result FILE.json --workdir DIR [...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import socket
import statistics
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

# Same folder. Importing it also puts the repo root on sys.path and sets the DeepSpeed env defaults.
from gpu_check import _parse

PROBE_TEXT = "<user>What is 12+34?\n<assistant>12+34=46. The answer is 46."


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


if __name__ == "__main__":
    sys.exit(run_worker(_parse(sys.argv[1:])))
