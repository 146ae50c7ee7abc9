"""PPlug against no personalisation and history retrieval on held-out users (CPU; not a test).

    .venv/bin/python bench/pplug.py --out runs/bench_pplug --seeds 0,1,2

Task and data: next-query prediction per user from CosoBe code-search sessions (curricula/pplug_data.py: the
history is the user's earlier queries and clicked result titles; sessions split once, 20 % of users held
out, seed 0). Model: SmolLM2-135M-Instruct, FROZEN in every arm (bf16 learners).

Arms, identical except for what the frozen LM is given (recipes/pplug_cosobe_cpu.yaml; same data order per
seed, same steps, lr, micro-batch, instruction embedding length):
- ``pplug``: [I ; P_u ; Emb(x)], P_u from input-aware attention over the encoded history (trainable: I, the
  input projection, the 2-layer MLP);
- ``no_history``: [I ; Emb(x)] (prompt tuning; trainable: I only) — no personalisation;
- ``retrieval``: [I ; Emb(x')] where x' writes the 3 history items most similar to the query (BM25) into the
  prompt (trainable: I only) — the common retrieval baseline.
Plus ``frozen_lm`` (no training, the plain prompt) as the floor.

Held-out evaluation, computed here the same way for every arm: greedy generation (``--max-new-tokens`` 24) of
each held-out row under its arm's prefix, ROUGE-L F1 (rouge-score) and exact match (lower-cased,
whitespace-collapsed) against the logged next query; the held-out NLL of the logged next query comes from the
run's own eval (``eval/loss/nll``, the same rows). Writes results.json (command, commit, versions, settings,
per-run metrics, sample generations) and pplug.png; prints the table. ``--reuse`` keeps finished runs.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import mean_std, provenance, pyplot  # noqa: E402

SESSIONS = ROOT.parent / "shared" / "data" / "llm" / "cosobe_query_sessions" / "sessions.jsonl"
RECIPE = ROOT / "recipes" / "pplug_cosobe_cpu.yaml"
ARMS = {
    "pplug": [],
    "no_history": ["model.side_module.options.use_history=false"],
    "retrieval": ["model.side_module.options.use_history=false", "data.prompt_field=prompt_retrieval"],
}


def overrides(args: argparse.Namespace, arm: str, seed: int, out: Path) -> list[str]:
    data = args.out / "data"
    return [
        f"seed={seed}",
        f"output_dir={out}",
        f"total_steps={args.steps}",
        f"trainer.lr={args.lr}",
        f"data.source={data / 'train.jsonl'}",
        f"eval.source={data / 'test.jsonl'}",
        f"eval.every={args.steps}",
        f"model.side_module.options.cache_dir={args.out / 'encodings'}",
        "logging.progress=false",
        "logging.plots=false",
        *ARMS[arm],
    ]


def train_run(args: argparse.Namespace, arm: str, seed: int) -> dict:
    out = args.out / f"{arm}_s{seed}"
    cmd = [sys.executable, "-m", "launch.train", str(RECIPE), *overrides(args, arm, seed, out)]
    done = out / "wall_s.txt"
    if not (args.reuse and done.is_file()):
        out.mkdir(parents=True, exist_ok=True)
        if (out / "metrics.jsonl").exists():
            (out / "metrics.jsonl").unlink()
        t0 = time.perf_counter()
        with open(out / "train.log", "w") as f:
            r = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}; see {out / 'train.log'}")
        done.write_text(f"{time.perf_counter() - t0:.1f}\n")
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    nll = [r["eval/loss/nll"] for r in rows if "eval/loss/nll" in r]
    return {"arm": arm, "seed": seed, "out": str(out), "command": cmd, "nll_start": nll[0], "nll": nll[-1]}


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def evaluate(args: argparse.Namespace, run_dir: Path | None, max_new_tokens: int) -> dict:
    """Greedy generations on the held-out users: ROUGE-L F1, exact match and a few samples.
    ``run_dir`` None: the frozen LM with the plain prompt (no training, no prefix)."""
    import torch
    from rouge_score import rouge_scorer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curricula.data import load_prompts
    from launch.checkpoint import CheckpointManager
    from launch.config import load_recipe
    from launch.prepare_model import resolve_model_path
    from rollout.templates import PromptRenderer
    from trainer import side_modules
    from trainer.side_modules import FeatureContext, SideModuleSpec

    torch.set_num_threads(2)
    recipe = run_dir / "recipe.yaml" if run_dir else RECIPE
    over = [] if run_dir else [f"data.source={args.out / 'data' / 'train.jsonl'}"]
    cfg = load_recipe(recipe, over)
    model_path = resolve_model_path(cfg.model.path, str(Path(cfg.model.cache_dir).expanduser()))
    tok = AutoTokenizer.from_pretrained(model_path)
    renderer = PromptRenderer(
        tok, cfg.prompt.system_prompt, cfg.prompt.template, cfg.prompt.use_chat_template
    )
    data = replace(cfg.data, source=str(args.out / "data" / "test.jsonl"))
    prompts = list(load_prompts(data, "train", cfg.prompt.template))
    features = None
    if run_dir:
        ckpt = CheckpointManager(str(run_dir)).latest()
        model = side_modules.load(ckpt, model_path)
        sm = cfg.model.side_module
        features = side_modules.feature_builder(
            SideModuleSpec(sm.name, dict(sm.options)), FeatureContext(model_path, prompts)
        )
    else:
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge, exact, samples = [], [], []
    eos = tok.eos_token_id
    for i in range(0, len(prompts), 16):
        chunk = prompts[i : i + 16]
        ids = [renderer.render(p) for p in chunk]
        with torch.no_grad():
            if run_dir:
                from rollout.types import Sample

                f = features([Sample(p, [], [], [], "data", "", p.uid) for p in chunk])
                new = model.generate(ids, f, max_new_tokens, eos)
            else:  # the frozen LM itself: the same left-padded greedy batch, no prefix
                tok.padding_side = "left"
                enc = tok.pad({"input_ids": ids}, return_tensors="pt")
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=eos)[
                    :, enc["input_ids"].shape[1] :
                ].tolist()
                new = [r[: r.index(eos)] if eos in r else r for r in out]
        for p, n in zip(chunk, new):
            text = tok.decode(n, skip_special_tokens=True).strip().split("\n")[0]
            ref = p.columns["responses"][0]
            rouge.append(scorer.score(ref, text)["rougeL"].fmeasure)
            exact.append(float(normalise(text) == normalise(ref)))
            samples.append({"query": p.columns.get("query"), "reference": ref, "generated": text})
    n = len(prompts)
    out = {"rougeL": sum(rouge) / n, "exact": sum(exact) / n, "rows": n, "samples": samples[:8]}
    if run_dir and cfg.model.side_module.options.get("use_history", True):
        # The control that says whether the gain is personal: the same trained module, each held-out user given
        # another held-out user's history (rows rolled by one) instead of their own.
        from rollout.types import Sample

        rows = [Sample(p, [], [], [], "data", "", p.uid) for p in prompts]
        f = features(rows)
        shuffled = {k: torch.roll(v, 1, dims=0) for k, v in f.items()}
        ids = [renderer.render(p) for p in prompts]
        out["nll_own_history"] = heldout_nll(model, tok, ids, prompts, f)
        out["nll_other_history"] = heldout_nll(model, tok, ids, prompts, shuffled)
    return out


def heldout_nll(model, tok, prompt_ids: list, prompts: list, features: dict) -> float:
    """Token-mean NLL of the logged next queries (+ EOS, as trained) under the side module, fp32."""
    import torch

    from trainer.batch import collate
    from trainer.learner import token_logprobs

    resp = [
        tok(p.columns["responses"][0], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        for p in prompts
    ]
    col = collate(prompt_ids, resp, tok.eos_token_id)
    with torch.no_grad():
        lp, _ = token_logprobs(model, col.input_ids, col.attention_mask, features=features)
    return float(-(lp * col.response_mask).sum() / col.response_mask.sum())


def echo_baseline(args: argparse.Namespace) -> dict:
    """ROUGE-L / exact of answering with the current query itself: next queries are mostly reformulations that
    share its words, so this is the score a model gets for copying its input."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rows = [json.loads(x) for x in (args.out / "data" / "test.jsonl").read_text().splitlines()]
    rouge = [scorer.score(r["response"], r["query"])["rougeL"].fmeasure for r in rows]
    exact = [float(normalise(r["query"]) == normalise(r["response"])) for r in rows]
    return {"rougeL": sum(rouge) / len(rows), "exact": sum(exact) / len(rows), "rows": len(rows)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_pplug")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=34, help="optimizer steps (34 = 2 epochs of 135 rows)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-new-tokens", type=int, default=20, help="logged next queries: <= 18 tokens")
    ap.add_argument("--jobs", type=int, default=2, help="training runs at a time (each ~5 GB)")
    ap.add_argument("--reuse", action="store_true")
    args = ap.parse_args(argv)
    args.out = args.out.resolve()
    seeds = [int(s) for s in args.seeds.split(",")]
    if not SESSIONS.is_file():
        raise SystemExit(f"{SESSIONS} not found: the CosoBe sessions live in ../shared/data")
    from curricula.pplug_data import build

    meta = build(SESSIONS, args.out / "data")
    print(f"data: {meta['rows']} rows ({meta['rows_with_history']} with history)", flush=True)
    t0 = time.perf_counter()
    # One evaluation at a time: model loading in transformers changes process-wide torch defaults, which two
    # threads loading at once can interleave (seen: a job failing while another evaluated).
    eval_lock = threading.Lock()

    def job(arm: str | None, seed: int) -> dict:
        if arm is None:  # the frozen LM, untrained: a job of its own so it overlaps with training
            with eval_lock:
                return evaluate(args, None, args.max_new_tokens)
        r = train_run(args, arm, seed)
        with eval_lock:  # evaluation overlaps with the other job's training, never with its evaluation
            r |= evaluate(args, Path(r["out"]), args.max_new_tokens)
        print(f"{arm:>10} seed {seed}: nll {r['nll']:.3f} rougeL {r['rougeL']:.3f}", flush=True)
        return r

    jobs = [(arm, s) for s in seeds for arm in ARMS] + [(None, 0)]
    with ThreadPoolExecutor(args.jobs) as pool:
        done = list(pool.map(lambda j: job(*j), jobs))
    runs, floor = done[:-1], done[-1]
    echo = echo_baseline(args)
    table = [
        "| arm | held-out NLL (start → end) | NLL with another user's history | ROUGE-L F1 | exact match |",
        "|---|---|---|---|---|",
    ]
    summary = {}
    for arm in ARMS:
        rs = [r for r in runs if r["arm"] == arm]
        keys = ("nll_start", "nll", "rougeL", "exact", "nll_own_history", "nll_other_history")
        summary[arm] = {k: [r[k] for r in rs if k in r] for k in keys}
        s = summary[arm]
        table.append(
            f"| {arm} | {mean_std(s['nll_start'])} → {mean_std(s['nll'])} | {mean_std(s['nll_other_history'])} "
            f"| {mean_std(s['rougeL'])} | {mean_std(s['exact'])} |"
        )
    table.append(f"| frozen_lm (no training) | – | – | {floor['rougeL']:.3f} | {floor['exact']:.3f} |")
    table.append(
        f"| echo the current query (no model) | – | – | {echo['rougeL']:.3f} | {echo['exact']:.3f} |"
    )
    print("\n".join(table))
    result = {
        "command": " ".join(sys.argv),
        **provenance(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "data": meta,
        "runs": runs,
        "frozen_lm": floor,
        "echo": echo,
        "summary": summary,
        "table": table,
        "wall_s": time.perf_counter() - t0,
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    plt = pyplot()
    if plt is not None:
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
        for i, key in enumerate(("nll", "rougeL")):
            for j, arm in enumerate(ARMS):
                vals = summary[arm][key]
                ax[i].scatter([j] * len(vals), vals, alpha=0.7)
                ax[i].bar(j, sum(vals) / len(vals), alpha=0.3)
            ax[i].set_xticks(range(len(ARMS)), list(ARMS))
            ax[i].set_title({"nll": "held-out NLL (lower is better)", "rougeL": "held-out ROUGE-L F1"}[key])
        ax[1].axhline(floor["rougeL"], color="grey", ls="--", label="frozen LM")
        ax[1].legend()
        fig.tight_layout()
        fig.savefig(args.out / "pplug.png", dpi=110)
    print(f"wrote {args.out / 'results.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
