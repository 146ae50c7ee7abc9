"""SePO against full-token DPO and full-token SimPO on UltraFeedback (CPU; not a test).

    .venv/bin/python bench/sepo.py --out runs/bench_sepo --seeds 0,1,2

Data: ../shared/data/llm/ultrafeedback_binarized_500 as shipped (train_prefs for training, test_prefs held out;
rows with an empty response skipped as the recipes do). Model: SmolLM2-135M-Instruct (bf16 learners).

1. The oracle chain, once (seed 0): π_ref^o = SFT on the first 128 chosen responses, 16 steps, lr 1e-5, <= 384
   tokens (recipes/sepo_ref_sft_tiny_cpu.yaml); π^o = DPO of π_ref^o (β 0.1) on the first ``--oracle-rows`` 96
   pairs (those the policies train on and more), ``--oracle-steps`` 12, lr ``--oracle-lr`` 2e-5
   (recipes/sepo_oracle_dpo_tiny_cpu.yaml); then
   ``launch.score_tokens`` on the training rows (ratio 0.3).
2. Three arms per seed, identical except for the loss and the tokens it reads: same initial policy
   (SmolLM2-135M-Instruct, *not* the oracle's SFT model), the same first ``--steps`` × 8 training pairs in the
   same seeded order (one epoch), ``--steps`` 8 steps × 8 pairs, lr ``--lr`` 2e-5, micro-batch 4 rows,
   ``max_model_len`` ``--max-len`` 256 (rows whose prompt is longer are skipped and counted, long answers cut):
   - ``sepo``: reference-free loss over the selected 30 % of tokens (γ = 1, no margin: the released code);
   - ``simpo_full``: the same loss over every response token (γ = 1, no margin: only the mask differs);
   - ``dpo_full``: DPO (β = 0.1, sigmoid) over every response token, reference = the initial policy.
3. One held-out evaluation for every final policy and the initial one, on the first ``--eval-pairs`` test pairs,
   in fp32, computed here (not by each arm's own loss), so the numbers are comparable:
   - ``dpo_acc`` / ``dpo_margin``: DPO's implicit reward against the initial policy, β·[(log π − log π_0)(y_w) −
     (log π − log π_0)(y_l)] summed over the full responses; accuracy = share of pairs with a positive margin;
   - ``norm_acc`` / ``norm_margin``: the length-normalised log-likelihood reward (SimPO's), mean log π(y_w) −
     mean log π(y_l) over the full responses.
   Plus the share of response tokens each arm trained on, and seconds per step.

Writes results.json (command, git commit, package versions, settings, per-run metrics and commands, decoded
examples of the selected tokens) and sepo.png into ``--out`` and prints the table. ``--reuse`` keeps finished runs.
``--jobs 2`` trains two runs at a time (each ~5 GB); on 2 cores it buys little, the learner is CPU-bound.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import mean_std, provenance, pyplot  # noqa: E402

ARMS = {
    "sepo": ("sepo_tiny_cpu.yaml", []),
    "simpo_full": (
        "dpo_tiny_cpu.yaml",
        ["strategy.options.loss=simpo", "strategy.options.loss_options={scale: 1.0, margin: 0.0}"],
    ),
    "dpo_full": ("dpo_tiny_cpu.yaml", ["strategy.options.loss_options={beta: 0.1, loss_type: sigmoid}"]),
}


def common(args: argparse.Namespace, seed: int, out: Path, **kw: object) -> list[str]:
    """Overrides every run shares; ``kw`` (steps, rows, lr, max_len) replaces the arms' values (the chain's)."""
    steps, lr = kw.get("steps", args.steps), kw.get("lr", args.lr)
    rows, max_len = kw.get("rows", args.steps * 8), kw.get("max_len", args.max_len)
    return [
        f"seed={seed}",
        f"output_dir={out}",
        f"total_steps={steps}",
        f"data.max_rows={rows}",  # steps × 8 pairs: one epoch, every arm sees the same pairs
        "curriculum.prompts_per_step=8",
        f"trainer.lr={lr}",
        "trainer.micro_batch_size=4",
        f"rollout.max_model_len={max_len}",  # longer prompts are skipped and counted, answers truncated
        "eval.num_prompts=0",
        "checkpoint.save_optimizer=false",
        "logging.progress=false",
        "logging.plots=false",
    ]


# The oracle chain's own settings (fixed, recorded in results.json): the reference SFT on the first 128 chosen
# answers at <= 384 tokens; the oracle's DPO on the pairs the policies train on, at the arms' length limit.
REF = {"steps": 16, "rows": 128, "lr": 1e-5, "max_len": 384}


def sepo_paths(out: Path) -> list[str]:
    return [
        f"strategy.options.masks={out / 'masks'}",
        f"strategy.options.oracle={out / 'oracle'}",
        f"strategy.options.oracle_reference={out / 'ref'}",
    ]


def run(cmd: list[str], log: Path, reuse_marker: Path | None, reuse: bool) -> float:
    """Run a CLI step into its own log; returns wall seconds (kept next to the run for --reuse)."""
    if reuse and reuse_marker is not None and reuse_marker.is_file():
        return float(reuse_marker.read_text())
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        r = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}; see {log}")
    wall = time.perf_counter() - t0
    if reuse_marker is not None:
        reuse_marker.write_text(f"{wall:.1f}\n")
    return wall


def metrics_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- held-out evaluation


def sequence_logprobs(model_path: str, rows: list, batch_size: int = 8) -> list[tuple[float, int]]:
    """(sum of log-probs, token count) of every response of ``rows`` (flattened, chosen then rejected), fp32."""
    import torch

    from launch.score_tokens import load_frozen
    from trainer.batch import collate
    from trainer.learner import token_logprobs

    model = load_frozen(model_path, "float32")
    seqs = [(p, r) for _, p, resps in rows for r in resps]
    out = []
    for i in range(0, len(seqs), batch_size):
        chunk = seqs[i : i + batch_size]
        col = collate([c[0] for c in chunk], [c[1] for c in chunk], 0)
        with torch.no_grad():
            lp, _ = token_logprobs(model, col.input_ids, col.attention_mask)
        s = (lp * col.response_mask).sum(-1)
        out += [(float(s[b]), len(chunk[b][1])) for b in range(len(chunk))]
    return out


def pair_metrics(pol: list[tuple[float, int]], init: list[tuple[float, int]], beta: float = 0.1) -> dict:
    """Held-out pair metrics (see the module docstring); rows alternate chosen, rejected."""
    dpo, norm = [], []
    for i in range(0, len(pol), 2):
        (sw, nw), (sl, nl) = pol[i], pol[i + 1]
        (iw, _), (il, _) = init[i], init[i + 1]
        dpo.append(beta * ((sw - iw) - (sl - il)))
        norm.append(sw / nw - sl / nl)
    return {
        "dpo_acc": sum(h > 0 for h in dpo) / len(dpo),
        "dpo_margin": statistics.mean(dpo),
        "norm_acc": sum(h > 0 for h in norm) / len(norm),
        "norm_margin": statistics.mean(norm),
    }


def final_model(out: Path) -> str:
    from launch.prepare_model import model_folder

    return model_folder(str(out))


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/bench_sepo")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument(
        "--max-len", type=int, default=256, help="rollout.max_model_len of the arms and the oracle"
    )
    ap.add_argument("--oracle-steps", type=int, default=12)
    ap.add_argument("--oracle-lr", type=float, default=2e-5)
    ap.add_argument("--oracle-rows", type=int, default=96, help="the first N training pairs (>= steps × 8)")
    ap.add_argument("--eval-pairs", type=int, default=64)
    ap.add_argument("--jobs", type=int, default=1, help="training runs at a time (each ~5 GB)")
    ap.add_argument("--reuse", action="store_true")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    seeds = [int(s) for s in args.seeds.split(",")]
    py = sys.executable
    t_start = time.perf_counter()

    # 1. the oracle chain
    chain = out / "chain"
    walls = {}
    base = common(args, 0, chain / "ref", **REF)
    walls["ref_sft"] = run(
        [py, "-m", "launch.train", "recipes/sepo_ref_sft_tiny_cpu.yaml", *base],
        chain / "ref.log",
        chain / "ref" / "wall_s.txt",
        args.reuse,
    )
    oracle = {"steps": args.oracle_steps, "lr": args.oracle_lr, "rows": args.oracle_rows}
    base = [*common(args, 0, chain / "oracle", **oracle), f"model.path={chain / 'ref'}"]
    walls["oracle_dpo"] = run(
        [
            py,
            "-m",
            "launch.train",
            "recipes/sepo_oracle_dpo_tiny_cpu.yaml",
            *base,
            "eval.num_prompts=64",
            "eval.at_start=true",
        ],
        chain / "oracle.log",
        chain / "oracle" / "wall_s.txt",
        args.reuse,
    )
    score_over = [*common(args, 0, chain / "unused"), *sepo_paths(chain)]
    walls["score_tokens"] = run(
        [py, "-m", "launch.score_tokens", "recipes/sepo_tiny_cpu.yaml", *score_over],
        chain / "score.log",
        chain / "masks" / "wall_s.txt",
        args.reuse,
    )
    print(f"oracle chain: {json.dumps({k: round(v) for k, v in walls.items()})} s", flush=True)

    # 2. arms × seeds
    jobs = []
    for seed in seeds:
        for arm, (recipe, extra) in ARMS.items():
            d = out / f"{arm}_s{seed}"
            over = [*common(args, seed, d), *extra, *(sepo_paths(chain) if arm == "sepo" else [])]
            jobs.append((arm, seed, d, [py, "-m", "launch.train", f"recipes/{recipe}", *over]))

    def go(job):
        arm, seed, d, cmd = job
        w = run(cmd, out / f"{arm}_s{seed}.log", d / "wall_s.txt", args.reuse)
        print(f"  {arm} seed {seed}: {w:.0f} s", flush=True)
        return w

    with ThreadPoolExecutor(args.jobs) as pool:
        arm_walls = list(pool.map(go, jobs))

    # 3. held-out evaluation, the same for every policy
    from launch.config import load_recipe
    from launch.score_tokens import _tokenised_rows

    cfg = load_recipe(
        ROOT / "recipes/sepo_tiny_cpu.yaml", [*common(args, 0, chain / "unused"), *sepo_paths(chain)]
    )
    test_rows = _tokenised_rows(cfg, "eval")[0][: args.eval_pairs]
    print(f"held-out evaluation on {len(test_rows)} test pairs", flush=True)
    from launch.prepare_model import resolve_model_path

    init_path = resolve_model_path(cfg.model.path, os.path.expanduser(cfg.model.cache_dir))
    init_lp = sequence_logprobs(init_path, test_rows)
    results = {
        "initial": pair_metrics(init_lp, init_lp),
        "oracle": pair_metrics(
            sequence_logprobs(final_model(chain / "oracle"), test_rows),
            sequence_logprobs(final_model(chain / "ref"), test_rows),
        ),
    }
    runs = []
    for (arm, seed, d, cmd), wall in zip(jobs, arm_walls):
        rows = metrics_rows(d)
        steps = [r for r in rows if "time/step" in r]
        share = statistics.mean(r["sepo/token_share"] for r in steps) if arm == "sepo" else 1.0
        m = pair_metrics(sequence_logprobs(final_model(d), test_rows), init_lp)
        runs.append(
            {
                "arm": arm,
                "seed": seed,
                **m,
                "token_share": share,
                "step_s": statistics.mean(r["time/step"] for r in steps),
                "wall_s": wall,
                "command": " ".join(cmd[1:]),
            }
        )
        print(f"  {arm} s{seed}: {json.dumps({k: round(v, 3) for k, v in m.items()})}", flush=True)

    # table
    keys = ["dpo_acc", "dpo_margin", "norm_acc", "norm_margin", "token_share", "step_s"]
    lines = [
        "| arm | held-out DPO-reward accuracy | DPO margin (β=0.1) | length-normalised reward accuracy "
        "| normalised margin | tokens trained | s / step |",
        "|---|---|---|---|---|---|---|",
    ]
    i = results["initial"]
    lines.append(
        f"| initial policy (SmolLM2-135M-Instruct) | {i['dpo_acc']:.3f} (all ties) | 0 | {i['norm_acc']:.3f} | "
        f"{i['norm_margin']:.3f} | – | – |"
    )
    for arm in ARMS:
        rs = [r for r in runs if r["arm"] == arm]
        cells = [mean_std([r[k] for r in rs], 2 if k == "step_s" else 3) for k in keys]
        lines.append(f"| {arm} ({len(rs)} seeds) | " + " | ".join(cells) + " |")
    o = results["oracle"]
    lines.append(
        f"| oracle π^o vs π_ref^o (its own DPO reward) | {o['dpo_acc']:.3f} | {o['dpo_margin']:.3f} | "
        f"{o['norm_acc']:.3f} | {o['norm_margin']:.3f} | – | – |"
    )
    table = "\n".join(lines)
    print(table, flush=True)

    examples = selected_examples(chain / "masks", cfg)
    prov = provenance()
    doc = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        **prov,
        "args": vars(args),
        "chain_walls_s": walls,
        "chain_settings": {"ref": REF, "oracle": oracle},
        "results": results,
        "runs": runs,
        "recipes": {arm: recipe for arm, (recipe, _) in ARMS.items()},
        "load_average": os.getloadavg(),
        "total_wall_s": time.perf_counter() - t_start,
        "examples": examples,
    }
    (out / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    plot(runs, results, out / "sepo.png")
    print(f"wrote {out / 'results.json'}", flush=True)


def selected_examples(masks: Path, cfg) -> list[dict]:
    """The selected tokens of the first two training pairs, decoded (what the oracle picked)."""
    from transformers import AutoTokenizer

    from launch.prepare_model import resolve_model_path
    from launch.score_tokens import _tokenised_rows

    tok = AutoTokenizer.from_pretrained(
        resolve_model_path(cfg.model.path, os.path.expanduser(cfg.model.cache_dir))
    )
    rows = {uid: resps for uid, _, resps in _tokenised_rows(cfg, "train")[0]}
    recs = [json.loads(line) for line in sorted(masks.glob("train-*.jsonl"))[0].read_text().splitlines()][:2]
    out = []
    for rec in recs:
        resps = rows[rec["id"]]
        ex = {"id": rec["id"]}
        for side, ids, r in zip(("chosen", "rejected"), resps, rec["responses"]):
            ex[side] = [tok.decode([ids[t]]) for t in r["selected"]][:40]
        out.append(ex)
    return out


def plot(runs: list[dict], results: dict, path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key, title in (
        (axes[0], "dpo_acc", "DPO-reward accuracy"),
        (axes[1], "norm_acc", "normalised-reward accuracy"),
    ):
        names = list(ARMS)
        vals = [[r[key] for r in runs if r["arm"] == a] for a in names]
        means = [statistics.mean(v) for v in vals]
        sds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in vals]
        ax.bar(names, means, yerr=sds, capsize=4, color=["C0", "C1", "C2"])
        ax.axhline(results["initial"][key], color="gray", ls="--", label="initial")
        ax.set_title(f"held-out {title}")
        ax.set_ylim(0, 1)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
