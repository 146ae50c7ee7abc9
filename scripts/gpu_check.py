"""One-shot GPU check of the learner and the HF rollout engine, without Ray.

Runs the real components in-process (one rank, as a Ray actor would), once per ZeRO stage, each stage in
its own subprocess (scripts/gpu_check_stage.py: a fresh torch.distributed group, isolated crashes, a timeout):

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
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Runtime only: no DeepSpeed op is JIT-built (the learner uses torch's AdamW, not FusedAdam/CPUAdam).
os.environ.setdefault("DS_BUILD_OPS", "0")
os.environ.setdefault("DS_SKIP_CUDA_CHECK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

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
    cmd = [sys.executable, str(Path(__file__).with_name("gpu_check_stage.py")), "--worker-stage", str(stage)]
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
