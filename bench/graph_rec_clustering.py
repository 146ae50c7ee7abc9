"""Produce the GraphLearner results table (graph_rec/RESULTS_clustering.md).

    python bench/graph_rec_clustering.py                       # 4 datasets x both objectives, 10 seeds each
    python bench/graph_rec_clustering.py --datasets bat eat --objectives joint --jobs 2

Each dataset runs as ``python -m graph_rec train graphlearner --dataset NAME ...`` (a separate process,
so one dataset's memory is freed before the next); the wall time of each command is measured here and
the metrics are read back from its JSON. The table prints to stdout as Markdown.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REFERENCE = {  # CONVERT (same authors, same protocol) as quoted in GRAPH_REC.md: ACC / NMI / ARI / F1
    "cora": (74.07, 55.57, 50.58, 72.92),
    "citeseer": (68.43, 41.62, 42.77, 62.39),
    "bat": (78.02, 53.54, 51.95, 77.77),
    "eat": (58.35, 33.36, 27.11, 58.42),
}


ROOT = Path(__file__).resolve().parents[1]  # runs start in the checkout, wherever the script is called from


def run_graphlearner(options: list[str], out: Path) -> tuple[dict, float, list[str]]:
    """``python -m graph_rec train graphlearner OPTIONS --out OUT``: metrics, wall seconds, the command.

    The per-seed lines go to OUT with a .log suffix (parallel jobs would interleave on a shared stdout).
    """
    out = out.resolve()
    cmd = [sys.executable, "-m", "graph_rec", "train", "graphlearner", *options, "--out", str(out)]
    start = time.perf_counter()
    with out.with_suffix(".log").open("w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    return json.loads(out.read_text()), time.perf_counter() - start, cmd


def run_dataset(name: str, objective: str, args: argparse.Namespace) -> tuple[dict, float, list[str]]:
    options = ["--dataset", name, "--objective", objective, "--threads", str(args.threads)]
    if args.seeds:
        options += ["--seeds", str(args.seeds)]
    if args.bf16 is not None:
        options.append("--bf16" if args.bf16 else "--no-bf16")
    return run_graphlearner(options, Path(args.out_dir) / f"graphlearner_{name}_{objective}.json")


def fmt(m: dict, prefix: str, key: str) -> str:
    agg = m["metrics"][f"{prefix}/{key}"]
    return f"{agg['mean']:.2f} ± {agg['std']:.2f}"


def table(rows: list[tuple[str, dict, float]]) -> str:
    lines = [
        "| dataset | objective | seeds | protocol | ACC | NMI | ARI | F1 | reference ACC/NMI/ARI/F1 | s/seed (train) | wall s |",
        "|---|---|---:|---|---|---|---|---|---|---:|---:|",
    ]
    for name, m, wall in rows:
        ref = "/".join(f"{v:.2f}" for v in REFERENCE.get(name, ())) or "-"
        protocols = [("best", "best epoch"), ("last", "final epoch")]
        if "selected/acc" in m["metrics"]:  # the label-free headline: highest-silhouette evaluation epoch
            protocols.insert(0, ("selected", "max-silhouette epoch (no labels)"))
        if "single/acc" in m["metrics"]:  # the released code's evaluation: one single-init k-means per epoch
            protocols.append(("single", "best epoch, 1-init k-means"))
        train_s = sum(s["train_seconds"] for s in m["per_seed"]) / len(m["per_seed"])
        for prefix, label in protocols:
            cells = " | ".join(fmt(m, prefix, k) for k in ("acc", "nmi", "ari", "f1"))
            lines.append(
                f"| {name} | {m['config']['objective']} | {len(m['run']['seeds'])} | {label} | {cells} | "
                f"{ref if prefix == 'best' else ''} | {train_s:.1f} | {wall:.0f} |"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["cora", "citeseer", "bat", "eat"])
    p.add_argument(
        "--objectives", nargs="+", choices=["adversarial", "joint"], default=["adversarial", "joint"]
    )
    p.add_argument("--seeds", type=int, default=None, help="override the configs' 10 seeds")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help="override the configs")
    p.add_argument("--threads", type=int, default=2, help="torch threads per run")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (threads x jobs <= cores)")
    p.add_argument("--out-dir", default="runs/graph_rec/bench")
    args = p.parse_args()
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    runs = [(name, objective) for name in args.datasets for objective in args.objectives]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda r: run_dataset(*r, args), runs))
    rows = []
    for (name, _), (metrics, wall, cmd) in zip(runs, results):
        print("$ " + " ".join(cmd[1:]), file=sys.stderr)
        rows.append((name, metrics, wall))
    print(table(rows))


if __name__ == "__main__":
    main()
