"""GQR evidence on held-out sessions: before SFT, after SFT, after list-wise alignment (CPU; not a test).

    .venv/bin/python bench/gqr.py --out runs/bench_gqr --seeds 0,1,2 [--extra-lr 5e-6 --extra-seeds 0] [--write-results]

Chain, all through the framework's own commands: ``curricula.gqr_data`` builds the session split and the
files from CosoBe (../shared/data/llm/cosobe_query_sessions); ``rewards.ctr_model`` trains the CTR model
(recipes/gqr_ctr_cpu.yaml; held-out AUC printed); per seed, ``launch.train`` runs recipes/gqr_sft_tiny_cpu.yaml
on SmolLM2-135M-Instruct, then recipes/gqr_tiny_cpu.yaml from that SFT checkpoint (Plackett–Luce over 4 lists
per prompt, list score 1 − Π(1 − CTR_i)). Each model is then evaluated by ``launch.eval`` with the settings of
recipes/gqr_tiny_cpu.yaml (same prompt, greedy decoding, 64 new tokens) on the held-out sessions' eval rows
(``gqr_test.jsonl``: queries whose session holds a later, clicked query):

- hit@4 exact: the clicked later query is among the first 4 parsed queries, after ``normalize_query``
  (lower case, punctuation to spaces);
- hit@4 overlap: some generated query has token Jaccard ≥ 0.5 with it;
- list CTR: the frozen CTR model's 1 − Π(1 − CTR_i) of the generated list (0 for a malformed one) — the
  training reward, so it is not independent evidence;
- malformed / short: share of lists with no usable query / fewer than 4; valid: usable queries per list.

``--extra-lr`` adds an alignment ablation at another learning rate from the same SFT models. Finished runs
and evaluations in ``--out`` are reused, so a second call with ``--write-results`` only writes the report.
The base model is evaluated once (greedy decoding does not depend on the seed). Writes ``results.json``
(command, settings, git commit, package versions, per-run numbers), ``gqr.png`` and, with ``--write-results``,
bench/RESULTS_gqr.md; prints the table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import mean_std, provenance, pyplot  # noqa: E402

COSOBE = ROOT.parent / "shared" / "data" / "llm" / "cosobe_query_sessions" / "sessions.jsonl"
BASE = "builtin:smollm2-135m-instruct"
METRICS = [  # (key in the summary, column title)
    ("hit_exact", "hit@4 exact"),
    ("hit_overlap", "hit@4 overlap"),
    ("list_ctr", "list CTR (pred.)"),
    ("malformed", "malformed"),
    ("short", "short"),
    ("valid", "valid queries"),
]


def recipe_copy(name: str, out: Path) -> Path:
    """The shipped recipe with its built paths (runs/gqr/...) pointed at this bench's folder."""
    text = (ROOT / "recipes" / name).read_text()
    text = text.replace("runs/gqr/data/", f"{out / 'data'}/").replace("runs/gqr/ctr", str(out / "ctr"))
    dst = out / "recipes" / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(text)
    return dst


def sh(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` in the repository root, output to ``log``; its wall seconds (raises on failure)."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        r = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}; see {log}")
    return time.perf_counter() - t0


def eval_one(model: str, recipe: str, data: str, out: str) -> None:
    """``launch.eval`` of ``model`` with ``recipe``'s prompt, sampling, answer check and monitors, greedy only."""
    from launch.config import load_recipe
    from launch.eval import Target, load_data, parse_args, run
    from launch.prepare_model import resolve_model_path

    cfg = load_recipe(recipe, [f"model.path={model}"])
    args = parse_args([model, "--data", data, "--k", "0", "--out", out, "--prompt-field", "prompt"])
    target = Target("model", resolve_model_path(model, cfg.model.cache_dir), cfg, recipe)
    run(args, target, [load_data(data, args)])


def evaluate(model: str, out: Path, tag: str, log_dir: Path) -> dict:
    res = out / "eval" / f"{tag}.json"
    res.parent.mkdir(parents=True, exist_ok=True)
    if not res.is_file():
        recipe, data = out / "recipes" / "gqr_tiny_cpu.yaml", out / "data" / "gqr_test.jsonl"
        cmd = [sys.executable, __file__, "--eval-one", model, str(recipe), str(data), str(res)]
        sh(cmd, log_dir / f"eval_{tag}.log")
    d = next(iter(json.loads(res.read_text())["datasets"].values()))
    g = d["monitors"]["greedy"]
    return {
        "hit_exact": d["pass@1"],
        "hit_overlap": g["gqr_hit"],
        "list_ctr": g["gqr_ctr"],
        "malformed": g["gqr_malformed"],
        "short": g["gqr_short"],
        "valid": g["gqr_valid"],
        "problems": d["problems"],
        "examples": [
            (r["prompt"].split("\n")[1], r["answer"], r["greedy"]["completion"]) for r in d["rows"][:5]
        ],
    }


def train_run(recipe: Path, run_dir: Path, overrides: list[str], log: Path) -> tuple[list[dict], float]:
    if not (run_dir / "wall_s.txt").is_file():
        cmd = [sys.executable, "-m", "launch.train", str(recipe), f"output_dir={run_dir}", *overrides]
        cmd += ["logging.progress=false", "logging.plots=false"]
        (run_dir / "wall_s.txt").parent.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)  # the logger appends: no rows of a killed attempt
        wall = sh(cmd, log)
        (run_dir / "wall_s.txt").write_text(f"{wall:.1f}\n")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return rows, float((run_dir / "wall_s.txt").read_text())


def seed_run(seed: int, out: Path, args: argparse.Namespace) -> dict:
    root, logs = out / f"seed{seed}", out / "logs"
    sft_recipe, gqr_recipe = out / "recipes" / "gqr_sft_tiny_cpu.yaml", out / "recipes" / "gqr_tiny_cpu.yaml"
    sft_rows, sft_wall = train_run(
        sft_recipe, root / "sft", [f"seed={seed}", f"total_steps={args.sft_steps}"], logs / f"sft_{seed}.log"
    )
    sft_model = root / "sft" / "checkpoints" / f"step_{args.sft_steps:06d}" / "model"
    print(f"seed {seed}: SFT done ({sft_wall:.0f} s)", flush=True)
    align_over = [
        f"seed={seed}",
        f"total_steps={args.align_steps}",
        f"model.path={sft_model}",
        "eval.num_prompts=0",
    ]
    align_rows, align_wall = train_run(gqr_recipe, root / "align", align_over, logs / f"align_{seed}.log")
    print(f"seed {seed}: alignment done ({align_wall:.0f} s)", flush=True)
    align_model = root / "align" / "checkpoints" / f"step_{args.align_steps:06d}" / "model"
    steps = [r for r in align_rows if "reward_mean" in r]
    return {
        "seed": seed,
        "sft": evaluate(str(sft_model), out, f"sft_seed{seed}", logs),
        "aligned": evaluate(str(align_model), out, f"aligned_seed{seed}", logs),
        "sft_nll": [r["eval/loss/nll"] for r in sft_rows if "eval/loss/nll" in r],
        "align_reward": [r["reward_mean"] for r in steps],
        "align_malformed": [r.get("monitor/gqr_malformed") for r in steps],
        "pref_lists": [r.get("pref/lists") for r in steps],
        "wall_s": {"sft": sft_wall, "align": align_wall},
    }


def extra_lr_run(seed: int, lr: str, out: Path, args: argparse.Namespace) -> dict:
    """An alignment ablation: the same run from seed ``seed``'s SFT model at learning rate ``lr``."""
    root, logs = out / f"seed{seed}", out / "logs"
    sft_model = root / "sft" / "checkpoints" / f"step_{args.sft_steps:06d}" / "model"
    over = [
        f"seed={seed}",
        f"total_steps={args.align_steps}",
        f"model.path={sft_model}",
        "eval.num_prompts=0",
    ]
    rows, _ = train_run(
        out / "recipes" / "gqr_tiny_cpu.yaml",
        root / f"align_lr{lr}",
        [*over, f"trainer.lr={lr}"],
        logs / f"align_lr{lr}_{seed}.log",
    )
    model = root / f"align_lr{lr}" / "checkpoints" / f"step_{args.align_steps:06d}" / "model"
    res = evaluate(str(model), out, f"aligned_lr{lr}_seed{seed}", logs)
    return {
        "seed": seed,
        "lr": lr,
        **res,
        "align_reward": [r["reward_mean"] for r in rows if "reward_mean" in r],
    }


def table(base: dict, runs: list[dict]) -> str:
    head = "| arm | " + " | ".join(t for _, t in METRICS) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 1)]
    lines.append(
        "| base SmolLM2-135M-Instruct (before SFT) | "
        + " | ".join(f"{base[k]:.3f}" for k, _ in METRICS)
        + " |"
    )
    for arm, title in (("sft", "after SFT"), ("aligned", "after list-wise alignment (PL)")):
        cells = [mean_std([r[arm][k] for r in runs]) for k, _ in METRICS]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(base: dict, runs: list[dict], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    import statistics

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    keys = ["hit_exact", "hit_overlap", "list_ctr"]
    arms = [("base", [base]), ("SFT", [r["sft"] for r in runs]), ("aligned", [r["aligned"] for r in runs])]
    for i, (name, rs) in enumerate(arms):
        means = [statistics.mean(r[k] for r in rs) for k in keys]
        sds = [statistics.stdev([r[k] for r in rs]) if len(rs) > 1 else 0.0 for k in keys]
        ax.bar([j + 0.27 * (i - 1) for j in range(len(keys))], means, 0.27, yerr=sds, label=name, capsize=3)
    ax.set_xticks(range(len(keys)), ["hit@4 exact", "hit@4 overlap", "list CTR (pred.)"])
    ax.set_title("held-out sessions (greedy)")
    ax.legend()
    for r in runs:
        bx.plot(
            range(1, len(r["align_reward"]) + 1), r["align_reward"], marker="o", label=f"seed {r['seed']}"
        )
    bx.set_xlabel("alignment step")
    bx.set_ylabel("mean list score of sampled lists")
    bx.set_title("training reward (1 − Π(1 − CTR))")
    bx.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def results_md(r: dict) -> str:
    """bench/RESULTS_gqr.md from results.json (numbers only; what they mean is for the reader)."""
    ctr, runs, base = r["ctr_heldout"], r["runs"], r["base"]
    seeds = ", ".join(str(x["seed"]) for x in runs)
    lines = [
        "# GQR on held-out CosoBe sessions: before SFT, after SFT, after list-wise alignment (bench/gqr.py)",
        "",
        f"Command ({time.strftime('%Y-%m-%d')}, 2-core CPU shared with other jobs; training runs "
        f"{sum(sum(x['wall_s'].values()) for x in runs) / 60:.0f} min of wall time, finished runs reused):",
        "",
        f"    {r['command']}",
        "",
        f"git commit {r['git_commit']} (uncommitted changes: {r['git_dirty']}); versions {r['versions']}.",
        "",
        f"Data: {len(r['data']['train_sessions'])} train / {len(r['data']['test_sessions'])} held-out sessions "
        f"(seed {r['data']['seed']}); rows {r['data']['rows']}. Model SmolLM2-135M-Instruct (bf16); SFT "
        f"{r['settings']['sft_steps']} steps × 16 rows (lr 2e-5); alignment {r['settings']['align_steps']} steps × 8 "
        "prompts × 4 sampled lists (temperature 1.0), Plackett–Luce (β 0.1, lr 2e-5) against the frozen SFT model, "
        "reward 1 − Π(1 − CTR_i) over the first 4 parsed queries. Evaluation: `launch.eval`, greedy, ≤ 64 new tokens, "
        f"the {base['problems']} held-out eval rows (a query whose session holds a later, clicked query).",
        "",
        "## CTR reward model (held-out sessions)",
        "",
        "| impressions | rows | clicks | AUC |",
        "|---|---|---|---|",
        f"| all | {ctr['rows']} | {ctr['clicks']} | {_f(ctr['auc'])} |",
    ]
    for src in ("title", "followup", "queries"):
        if f"rows/{src}" in ctr:
            what = {"queries": "follow-up queries vs sampled other-session queries"}.get(src, src)
            lines.append(f"| {what} | {ctr[f'rows/{src}']} | – | {_f(ctr.get(f'auc/{src}'))} |")
    lines += ["", "## Held-out sessions, mean ± std over seeds " + seeds, "", r["table"], ""]
    lines += ["Per seed (hit@4 exact / hit@4 overlap / list CTR):", ""]
    for x in runs:
        cells = [
            f"{x[a]['hit_exact']:.3f} / {x[a]['hit_overlap']:.3f} / {x[a]['list_ctr']:.3f}"
            for a in ("sft", "aligned")
        ]
        lines.append(f"- seed {x['seed']}: SFT {cells[0]}; aligned {cells[1]}; wall s {x['wall_s']}")
    lines += [
        "",
        "Alignment: mean list score of the sampled lists per step, and share of malformed lists:",
        "",
    ]
    for x in runs:
        rw = ", ".join(f"{v:.3f}" for v in x["align_reward"])
        mf = ", ".join(_f(v) for v in x["align_malformed"])
        lines.append(f"- seed {x['seed']}: reward {rw}; malformed {mf}")
    for e in r.get("extra_lr_runs", []):
        rw = ", ".join(f"{v:.3f}" for v in e["align_reward"])
        lines.append(f"- seed {e['seed']}, lr {e['lr']} (ablation): reward {rw}")
    lines += ["", "SFT held-out NLL (per token, at the start and every 8 steps):", ""]
    lines += [f"- seed {x['seed']}: " + " → ".join(f"{v:.3f}" for v in x["sft_nll"]) for x in runs]
    lines += [
        "",
        "Caveats: the list CTR is the training reward's own model, so it is not independent evidence; hit@4 is the",
        f"independent one, over {base['problems']} rows (one row = {1 / base['problems']:.3f}). The CTR model is weak "
        "(AUC above). The alignment lr (2e-5) was set after a seed-0 run at 5e-6 (the row marked lr 5e-6) was "
        "evaluated on these held-out rows. An echo of the user query (same words) is not a usable query, so a "
        "model that only echoes writes a malformed list.",
    ]
    lines += ["", "![held-out hit@4 and list CTR per arm; alignment reward per step](gqr.png)", ""]
    lines += ["## What the models wrote (first held-out rows, greedy; seed " + str(runs[0]["seed"]) + ")", ""]
    for i, (q, ans, _) in enumerate(base["examples"][:3]):
        lines.append(f"- `{q}` (clicked later: `{ans}`)")
        for name, ex in (("base", base), ("SFT", runs[0]["sft"]), ("aligned", runs[0]["aligned"])):
            got = ex["examples"][i][2].strip().replace("\n", " ⏎ ")[:240]
            lines.append(f"  - {name}: `{got}`")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/bench_gqr")
    ap.add_argument("--sessions", default=str(COSOBE))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--sft-steps", type=int, default=16)
    ap.add_argument("--align-steps", type=int, default=8)
    ap.add_argument("--extra-lr", default=None, help="also align at this lr (ablation), for --extra-seeds")
    ap.add_argument("--extra-seeds", default="0")
    ap.add_argument(
        "--write-results", action="store_true", help="also write bench/RESULTS_gqr.md and bench/gqr.png"
    )
    ap.add_argument("--eval-one", nargs=4, metavar=("MODEL", "RECIPE", "DATA", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.eval_one:
        eval_one(*args.eval_one)
        return 0
    out = (ROOT / args.out).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    from curricula.gqr_data import build
    from rewards.ctr_model import load_train_config, train

    meta = build(args.sessions, out / "data")
    for name in ("gqr_ctr_cpu.yaml", "gqr_sft_tiny_cpu.yaml", "gqr_tiny_cpu.yaml"):
        recipe_copy(name, out)
    if not (out / "ctr" / "metrics.json").is_file():
        train(load_train_config(str(out / "recipes" / "gqr_ctr_cpu.yaml")))
    ctr = json.loads((out / "ctr" / "metrics.json").read_text())["heldout"]
    print(
        f"CTR model: held-out AUC {ctr['auc']:.3f} ({ctr['rows']} impressions, {ctr['clicks']} clicks)",
        flush=True,
    )
    base = evaluate(BASE, out, "base", out / "logs")
    print(f"base: hit@4 {base['hit_exact']:.3f}, list CTR {base['list_ctr']:.3f}", flush=True)
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        runs.append(seed_run(seed, out, args))
        r = runs[-1]
        print(
            f"seed {seed}: SFT hit@4 {r['sft']['hit_exact']:.3f}, aligned {r['aligned']['hit_exact']:.3f}",
            flush=True,
        )
    text = table(base, runs)
    extra = []
    if args.extra_lr:
        extra = [extra_lr_run(int(x), args.extra_lr, out, args) for x in args.extra_seeds.split(",")]
        for e in extra:
            cells = " | ".join(f"{e[k]:.3f}" for k, _ in METRICS)
            text += f"\n| after alignment at lr {e['lr']} (seed {e['seed']}) | {cells} |"
    results = {
        "command": " ".join(sys.argv),
        **provenance(),
        "data": meta,
        "ctr_heldout": ctr,
        "settings": {"sft_steps": args.sft_steps, "align_steps": args.align_steps, "seeds": args.seeds},
        "recipes": {p.name: p.read_text() for p in sorted((out / "recipes").glob("*.yaml"))},
        "base": base,
        "runs": runs,
        "extra_lr_runs": extra,
        "table": text,
        "wall_s": time.perf_counter() - t0,
    }
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(base, runs, out / "gqr.png")
    if args.write_results:
        (ROOT / "bench" / "RESULTS_gqr.md").write_text(results_md(results))
        plot(base, runs, ROOT / "bench" / "gqr.png")
    print(text)
    print(f"wrote {out / 'results.json'} ({results['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
