"""Every graph_rec table of the README, from result files, at equal budgets and >= 5 seeds (issue 18).

    python bench/graph_rec_tables.py [--seeds 5] [--jobs 2] [--only TABLE ...] [--render-only]
                                     [--runs graph_rec/results] [--out graph_rec/RESULTS_tables.md]

Each table is a list of ``python -m graph_rec train|tune ...`` commands (below, one CPU thread each, ``--jobs``
at a time); each writes its result file under ``--runs/TABLE/``; the tables are then printed by the same
code as ``python -m graph_rec report --runs/TABLE`` and written to ``--out`` with the machine, load, commit and
every command. Budgets inside a table are equal in optimisation steps (``--set steps=N``; a cross-domain step
is one batch per domain, so a single-domain LightGCN with the same ``steps`` and batch size sees as many
batches of its domain); the ``steps/seed`` column shows it. Baselines are tuned with ``python -m graph_rec
tune`` over the small grids below: on validation where the protocol has one (the Electronics split), on the
test metric where it has none (leave-one-out, CTR) — recorded as ``sel. on test`` and only ever in the
baseline's favour. ``--only`` reruns the named tables; ``--render-only`` rebuilds ``--out`` from the files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Electronics (5-core, 8:1:1): ~53k training interactions, 13 steps of 4096 per epoch -> 130 steps = 10 epochs.
SPLIT = (
    "--dataset amazon_cdr/electronic_phone --protocol split --batch-size 4096 --eval-every 2 --set steps=130"
)
# Phone (50k) <-> Electronic (116k), batch 8192: 240 steps = 16 cross-domain epochs (each sized to Electronic),
# 34 Phone-only or 16 Electronic-only LightGCN epochs.
CROSS = "--batch-size 8192 --set steps=240"
PE = "amazon_cdr/phone_electronic"
EP = "amazon_cdr/electronic_phone"
CTR_SYN = "--dataset synthetic --batch-size 256 --set steps=600"
CTR_AMZ = f"--dataset {PE} --batch-size 512 --set steps=300"
SELECT_ON_TEST = "--select-on-test"


@dataclass(frozen=True)
class Table:
    title: str
    metrics: tuple[str, ...]
    runs: dict[str, str]  # file stem -> arguments after `python -m graph_rec`
    note: str


TABLES: dict[str, Table] = {
    "electronics": Table(
        "Single domain: Electronics (amazon_cdr/electronic_phone), 5-core, 8:1:1 split, full ranking",
        ("test/recall@20", "test/ndcg@20", "valid/recall@20"),
        {
            "lightgcn_tuned": f"tune lightgcn {SPLIT} --grid lr=0.002,0.005,0.01 --select valid/recall@20",
            "hgformer_gcn": f"train hgformer {SPLIT} --lr 2e-3",
            "hgformer_embedding": f"train hgformer {SPLIT} --lr 2e-3 --set attention_input=embedding",
            "hgformer_gcn_learned_curvature": f"train hgformer {SPLIT} --lr 2e-3 --set learn_curvature=true",
            "hgformer_margin_tuned": f"tune hgformer {SPLIT} --lr 2e-3 --grid margin=0.5,1.0 --select valid/recall@20",
        },
        "every row 130 optimiser steps of 4096 triples (10 epochs; Hgformer takes ~18 s an epoch on one thread); the best validation Recall@20 epoch is "
        "tested; LightGCN's lr is picked on validation; Hgformer runs lr 2e-3 (an earlier session's choice) with "
        "each wiring, with curvature learning, and with margins 0.5 / 1.0 (picked on validation; the default is 0.1). "
        "Not tried: the number of random features.",
    ),
    "phone_electronic": Table(
        "Cross domain: Phone ↔ Electronic (amazon_cdr), leave-one-out, 1 positive vs 99 negatives",
        ("test/hr@10", "test/ndcg@10", "test_partner/hr@10", "test_partner/ndcg@10"),
        {
            "hcts": f"train hcts --dataset {PE} {CROSS}",
            "bitgcf_tuned": f"tune bitgcf --dataset {PE} {CROSS} --grid lr=0.005,0.01 "
            f"--select test/hr@10 {SELECT_ON_TEST}",
            "lightgcn_phone_tuned": f"tune lightgcn --protocol loo --dataset {PE} {CROSS} "
            f"--grid lr=0.005,0.01 --select test/hr@10 {SELECT_ON_TEST}",
            "lightgcn_electronic_tuned": f"tune lightgcn --protocol loo --dataset {EP} {CROSS} "
            f"--grid lr=0.005,0.01 --select test/hr@10 {SELECT_ON_TEST}",
        },
        "every row 240 optimiser steps of 8192 triples per domain; test/* is the dataset's first domain "
        "(Phone for phone_electronic), test_partner/* the second; the LightGCN rows are single-domain runs "
        "(test/* = that domain). No validation split exists: the baselines' lr is picked on the test metric, "
        "which can only favour them; HCTS runs its defaults.",
    ),
    "ctr": Table(
        "CTR: GMT vs FM (synthetic HIN with known click probabilities; amazon_cdr Phone HIN)",
        ("test/auc", "test/logloss", "oracle/auc"),
        {
            "synthetic_gmt": f"train gmt {CTR_SYN} --lr 1e-2",
            "synthetic_fm_tuned": f"tune fm {CTR_SYN} --grid lr=0.003,0.01,0.03 --grid weight_decay=0,0.0001 "
            f"--select test/auc {SELECT_ON_TEST}",
            "amazon_gmt": f"train gmt {CTR_AMZ} --lr 3e-3",
            "amazon_fm_tuned": f"tune fm {CTR_AMZ} --grid lr=0.003,0.01,0.03 --grid weight_decay=0,0.0001 "
            f"--select test/auc {SELECT_ON_TEST}",
        },
        "equal optimiser steps per dataset (synthetic 600 × 256 clicks, amazon 300 × 512); FM's lr and "
        "weight decay are picked on the test AUC (no validation split), which can only favour FM.",
    ),
    "graphlearner": Table(
        "GraphLearner node clustering (joint objective, the default), 400 epochs",
        ("selected/acc", "selected/nmi", "best/acc", "last/acc"),
        {name: f"train graphlearner --dataset {name}" for name in ("cora", "citeseer", "bat", "eat")},
        "selected/* is the label-free headline (the evaluation epoch with the highest cosine silhouette); "
        "best/* the label-selected epoch (the literature's protocol); the shipped per-dataset configs "
        "(graph_rec/configs/graphlearner/, bf16 products where they say so).",
    ),
    "graph_transformer": Table(
        "Graph transformer node classification (ego subgraphs), 60 epochs",
        ("test/acc", "valid/acc"),
        {
            f"{ds}_{variant}": f"train graph_transformer --dataset {ds} --variant {variant} --epochs 60"
            for ds in ("cora", "citeseer")
            for variant in ("gcn_before", "gcn_only", "vanilla")
        },
        "test accuracy at the best validation epoch; the full 15-variant comparison is "
        "`python -m graph_rec.transformer.compare` (graph_rec/RESULTS_clustering.md, 3 seeds).",
    ),
}


def command(args: str, out: Path, seeds: int) -> list[str]:
    return [sys.executable, "-m", "graph_rec", *shlex.split(args), "--seeds", str(seeds), "--threads", "1",
            "--out", str(out)]  # fmt: skip


def run_one(table: str, stem: str, args: str, a: argparse.Namespace) -> tuple[str, float, int]:
    out = Path(a.runs) / table / f"{stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(".log")
    t0 = time.perf_counter()
    with log.open("w") as fh:
        rc = subprocess.run(
            command(args, out, a.seeds), cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT
        ).returncode
    wall = time.perf_counter() - t0
    status = "done" if rc == 0 else f"FAILED (exit {rc}, log {log})"
    print(f"[{table}/{stem}] {status} in {wall:.0f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    return f"{table}/{stem}", wall, rc


def git_commit() -> str:
    def git(*cmd: str) -> str:
        return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", "graph_rec", ":!graph_rec/results")  # results are outputs
    return git("rev-parse", "HEAD") + (" + uncommitted graph_rec changes" if dirty else "")


def _file_wall(path: Path) -> float | None:
    """A result file's wall seconds (a tuned run: all its grid points)."""
    if not path.is_file():
        return None
    r = json.loads(path.read_text())
    return (r.get("tuning") or {}).get("wall_seconds_all_points") or r.get("wall_seconds")


def render(a: argparse.Namespace, walls: dict[str, float], started: str, load0: tuple[float, ...]) -> str:
    from graph_rec.report import load_runs
    from graph_rec.report import render as table_md

    lines = [
        "# graph_rec README tables (regenerated from result files)",
        "",
        f"- Command: `python bench/graph_rec_tables.py {' '.join(sys.argv[1:])}`".rstrip(),
        f"- Date: {started}; machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}; one CPU thread per run, {a.jobs} runs at a time",
        f"- Load average at start: {' '.join(f'{x:.2f}' for x in load0)}; at end: "
        + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        f"- Git: {git_commit()} (each result file records its own commit, package versions, data sha256 and "
        "resolved config)",
        "- Each table below is `python -m graph_rec report RUNS/TABLE --metrics ...`; cells are mean ± population "
        "std over the seeds; `settings` lists what differs from the model's defaults.",
        "",
    ]
    for name, t in TABLES.items():
        folder = Path(a.runs) / name
        files = sorted(folder.glob("*.json")) if folder.is_dir() else []
        lines += [f"## {t.title}", ""]
        if not files:
            lines += ["(not run)", ""]
            continue
        lines += [
            table_md(load_runs([str(f) for f in files]), list(t.metrics)),
            "",
            f"Budget and selection: {t.note}",
            "",
        ]
        lines += ["Commands (each with `--seeds N --threads 1 --out RUNS/TABLE/NAME.json`):", ""]
        for stem, args in t.runs.items():
            w = walls.get(f"{name}/{stem}") or _file_wall(folder / f"{stem}.json")
            lines.append(f"- `{stem}`: `python -m graph_rec {args}`" + (f" ({w:.0f} s)" if w else ""))
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", nargs="+", choices=sorted(TABLES), default=None)
    ap.add_argument("--run", nargs="+", default=None, metavar="TABLE/NAME", help="(re)run only these runs")
    ap.add_argument("--render-only", action="store_true")
    ap.add_argument("--runs", default=str(ROOT / "graph_rec/results"))
    ap.add_argument("--out", default=str(ROOT / "graph_rec/RESULTS_tables.md"))
    a = ap.parse_args()
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load0 = os.getloadavg()
    walls: dict[str, float] = {}
    failed = 0
    if not a.render_only:
        todo = [
            (n, s, args)
            for n, t in TABLES.items()
            if a.only is None or n in a.only
            for s, args in t.runs.items()
            if a.run is None or f"{n}/{s}" in a.run
        ]
        print(
            f"{len(todo)} runs, {a.jobs} at a time, {a.seeds} seeds each; results under {a.runs}", flush=True
        )
        with ThreadPoolExecutor(a.jobs) as pool:
            for label, wall, rc in pool.map(lambda job: run_one(*job, a), todo):
                walls[label] = wall
                failed += rc != 0
    text = render(a, walls, started, load0)
    Path(a.out).write_text(text + "\n")
    print(text)
    print(f"written to {a.out}" + (f"; {failed} runs FAILED" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
