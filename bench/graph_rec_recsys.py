"""Results table for graph_rec's recommendation and CTR models (issue 5).

    python bench/graph_rec_recsys.py [--long] [--only LABEL ...] [--render-only] [--out FILE]

Runs every ``python -m graph_rec train ...`` command below in sequence (one CPU thread each), saves each
run's result file under runs/graph_rec/bench/, and prints a markdown table per task with wall times (cells are
seed means; ``python -m graph_rec report runs/graph_rec/bench`` prints mean ± std and the step budgets).
Epoch counts are sized for a shared 2-core CPU, far below the papers' (see graph_rec/RESULTS_recsys.md).
``--only LABEL`` reruns those rows and re-renders the tables from the saved JSON; ``--long`` adds 3x-epoch runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

OUT_DIR = Path("runs/graph_rec/bench")

SPLIT = "--threads 1 --dataset amazon_cdr/electronic_phone --protocol split --epochs 10 --eval-every 2 --batch-size 4096"
CROSS = "--threads 1 --epochs 8 --batch-size 8192"
CTR_AMAZON = "--threads 1 --dataset amazon_cdr/phone_electronic"

# label -> CLI arguments after `python -m graph_rec train`
RUNS: dict[str, str] = {
    "split/lightgcn": f"lightgcn {SPLIT} --lr 5e-3",
    "split/hgformer": f"hgformer {SPLIT} --lr 2e-3",
    "pe/hcts": f"hcts --dataset amazon_cdr/phone_electronic {CROSS}",
    "pe/bitgcf": f"bitgcf --dataset amazon_cdr/phone_electronic {CROSS}",
    "pe/lightgcn_phone": f"lightgcn --protocol loo --dataset amazon_cdr/phone_electronic {CROSS}",
    "pe/lightgcn_electronic": f"lightgcn --protocol loo --dataset amazon_cdr/electronic_phone {CROSS}",
    "sc/hcts": f"hcts --dataset amazon_cdr/sport_cloth {CROSS}",
    "sc/bitgcf": f"bitgcf --dataset amazon_cdr/sport_cloth {CROSS}",
    "sc/lightgcn_sport": f"lightgcn --protocol loo --dataset amazon_cdr/sport_cloth {CROSS}",
    "sc/lightgcn_cloth": f"lightgcn --protocol loo --dataset amazon_cdr/cloth_sport {CROSS}",
    "ctr_syn/fm": "fm --threads 1 --dataset synthetic --epochs 15 --lr 1e-2 --batch-size 256",
    "ctr_syn/gmt": "gmt --threads 1 --dataset synthetic --epochs 6 --lr 1e-2 --batch-size 128",
    "ctr_amz/fm": f"fm {CTR_AMAZON} --epochs 3 --lr 1e-2 --batch-size 1024",
    "ctr_amz/gmt": f"gmt {CTR_AMAZON} --epochs 1 --lr 3e-3 --batch-size 512",
}


# --long: the same models with 3x the epochs on one domain and one pair, to show the trend with budget
LONG_RUNS: dict[str, str] = {
    "long/split_lightgcn": RUNS["split/lightgcn"].replace("--epochs 10", "--epochs 30"),
    "long/split_hgformer": RUNS["split/hgformer"].replace("--epochs 10", "--epochs 30"),
    "long/pe_hcts": RUNS["pe/hcts"].replace("--epochs 8", "--epochs 24"),
    "long/pe_bitgcf": RUNS["pe/bitgcf"].replace("--epochs 8", "--epochs 24"),
    "long/pe_lightgcn_phone": RUNS["pe/lightgcn_phone"].replace("--epochs 8", "--epochs 24"),
    "long/pe_lightgcn_electronic": RUNS["pe/lightgcn_electronic"].replace("--epochs 8", "--epochs 24"),
}


def run(label: str, args: str) -> None:
    out = OUT_DIR / (label.replace("/", "__") + ".json")
    cmd = [sys.executable, "-m", "graph_rec", "train", *args.split(), "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"[{label}] FAILED\n{proc.stderr[-2000:]}", file=sys.stderr)
        return
    data = json.loads(out.read_text())
    data.update(bench_command="python -m graph_rec train " + args, process_wall_seconds=round(wall, 1))
    out.write_text(json.dumps(data, indent=2, sort_keys=True))
    print(f"[{label}] done in {wall:.0f}s", file=sys.stderr)


def _load(label: str) -> dict | None:
    p = OUT_DIR / (label.replace("/", "__") + ".json")
    return json.loads(p.read_text()) if p.exists() else None


def _wall(x: object) -> str:
    return f"{x:.0f}" if isinstance(x, (int, float)) and x else "–"


def _m(d: dict, key: str) -> float | None:
    """Seed mean of metric ``key`` in a result file (None when absent)."""
    agg = d.get("metrics", {}).get(key)
    return agg["mean"] if agg else None


def _fmt(x: object) -> str:
    return f"{x:.4f}" if isinstance(x, float) else ("–" if x is None else str(x))


def render() -> str:
    lines = ["## Single domain: Electronics (amazon_cdr/electronic_phone), 5-core, 8:1:1, full ranking", ""]
    keys = ["recall@10", "ndcg@10", "recall@20", "ndcg@20", "hr@20", "recall@50"]
    lines += ["| model | " + " | ".join(keys) + " | best epoch | wall s |", "|---" * (len(keys) + 3) + "|"]
    for lab in ("split/lightgcn", "split/hgformer"):
        d = _load(lab) or {}
        vals = [_fmt(_m(d, f"test/{k}")) for k in keys]
        best_epoch = d["per_seed"][0]["extra"].get("best_epoch") if d else None
        lines.append(
            f"| {lab.split('/')[1]} | "
            + " | ".join(vals)
            + f" | {_fmt(best_epoch)} | {_wall(d.get('process_wall_seconds'))} |"
        )
    for pair, (a, b), rows in (
        ("pe", ("phone_electronic", "electronic_phone"), ("hcts", "bitgcf", "lightgcn")),
        ("sc", ("sport_cloth", "cloth_sport"), ("hcts", "bitgcf", "lightgcn")),
    ):
        lines += [
            "",
            f"## Cross-domain pair {a.split('_')[0]} ↔ {b.split('_')[0]}: leave-one-out, 1 positive vs 99 negatives",
            "",
        ]
        lines += [
            f"| model | {a} HR@10 | {a} NDCG@10 | {b} HR@10 | {b} NDCG@10 | wall s |",
            "|---|---|---|---|---|---|",
        ]
        for m in rows:
            if m == "lightgcn":
                da = _load(f"{pair}/lightgcn_{a.split('_')[0]}") or {}
                db = _load(f"{pair}/lightgcn_{b.split('_')[0]}") or {}
                va = [_m(da, "test/hr@10"), _m(da, "test/ndcg@10")]
                vb = [_m(db, "test/hr@10"), _m(db, "test/ndcg@10")]
                wall = (da.get("process_wall_seconds") or 0) + (db.get("process_wall_seconds") or 0)
            else:
                d = _load(f"{pair}/{m}") or {}
                va = [_m(d, "test/hr@10"), _m(d, "test/ndcg@10")]
                vb = [_m(d, "test_partner/hr@10"), _m(d, "test_partner/ndcg@10")]
                wall = d.get("process_wall_seconds")
            lines.append(f"| {m} | " + " | ".join(_fmt(v) for v in va + vb) + f" | {_wall(wall)} |")
    if any(_load(lab) for lab in LONG_RUNS):
        lines += [
            "",
            "## Longer budget (3x epochs)",
            "",
            "| run | metric | value | wall s |",
            "|---|---|---|---|",
        ]
        for lab in LONG_RUNS:
            d = _load(lab) or {}
            wall = _wall(d.get("process_wall_seconds"))
            for key in ("test/recall@20", "test/ndcg@20", "test/hr@10", "test/ndcg@10"):
                if _m(d, key) is not None:
                    lines.append(f"| {lab} | {key} | {_fmt(_m(d, key))} | {wall} |")
            for key in ("test_partner/hr@10", "test_partner/ndcg@10"):
                if _m(d, key) is not None:
                    lines.append(f"| {lab} | {key} | {_fmt(_m(d, key))} | {wall} |")
    lines += [
        "",
        "## CTR: AUC / LogLoss",
        "",
        "| data | model | AUC | LogLoss | oracle AUC | wall s |",
        "|---|---|---|---|---|---|",
    ]
    for lab in ("ctr_syn/fm", "ctr_syn/gmt", "ctr_amz/fm", "ctr_amz/gmt"):
        d = _load(lab) or {}
        lines.append(
            f"| {d.get('dataset', lab)} | {lab.split('/')[1]} | {_fmt(_m(d, 'test/auc'))} | "
            f"{_fmt(_m(d, 'test/logloss'))} | {_fmt(_m(d, 'oracle/auc'))} | {_wall(d.get('process_wall_seconds'))} |"
        )
    lines += ["", "Commands (`python -m graph_rec train ...`):", ""]
    lines += [f"- `{lab}`: `{args}`" for lab, args in {**RUNS, **LONG_RUNS}.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", default=None, help="labels to (re)run; default all")
    ap.add_argument("--render-only", action="store_true")
    ap.add_argument("--long", action="store_true", help="also run the 3x-epoch rows")
    ap.add_argument("--out", default=None, help="also write the tables to this file")
    a = ap.parse_args()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if not a.render_only:
        todo = {**RUNS, **(LONG_RUNS if a.long else {})}
        for label, args in todo.items():
            if a.only is None or label in a.only:
                run(label, args)
    table = render()
    print(table)
    if a.out:
        Path(a.out).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
