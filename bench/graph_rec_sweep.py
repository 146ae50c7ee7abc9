"""Grid sweep of GraphLearner settings: every combination runs as its own process, several at a time.

    python bench/graph_rec_sweep.py --dataset citeseer --grid smooth_steps=2,3,4 temperature=1,0.5 \\
        --seeds 3 --objective joint --jobs 2 --threads 1
    python bench/graph_rec_sweep.py --dataset citeseer --grid lr_encoder=1e-4,5e-4 --device cuda --jobs 8

Each run is ``python -m graph_rec train graphlearner --dataset D --set KEY=VALUE ...``, so any config field
can be swept and bad keys fail with the config's own error. Rows print best-epoch ACC (the literature's
label-peeking protocol) and final-epoch ACC, sorted by the former; the full metrics stay in --out-dir.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(
    0, str(Path(__file__).resolve().parent)
)  # the sibling bench script, however this one is loaded
from graph_rec_clustering import run_graphlearner


def parse_grid(items: list[str]) -> list[tuple[str, list[str]]]:
    grid = []
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise SystemExit(f"--grid {item!r}: write KEY=V1,V2,... e.g. smooth_steps=2,3")
        grid.append((key, values.split(",")))
    return grid


def run_one(setting: dict[str, str], args: argparse.Namespace, tag: str) -> tuple[dict, float]:
    # The runs start in the checkout: paths the user gave relative to their own folder are made absolute first.
    dataset = str(Path(args.dataset).resolve()) if Path(args.dataset).is_dir() else args.dataset
    options = ["--dataset", dataset, "--seeds", str(args.seeds), "--threads", str(args.threads)]
    options += ["--device", args.device]
    if args.objective:
        options += ["--objective", args.objective]
    if args.data_root:
        options += ["--data-root", str(Path(args.data_root).resolve())]
    for key, value in setting.items():
        options += ["--set", f"{key}={value}"]
    metrics, wall, _ = run_graphlearner(options, Path(args.out_dir) / f"{Path(args.dataset).name}_{tag}.json")
    return metrics, wall


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True)
    p.add_argument("--grid", nargs="+", required=True, metavar="KEY=V1,V2")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--objective", choices=["adversarial", "joint"], default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time")
    p.add_argument("--data-root", default=None)
    p.add_argument("--out-dir", default="runs/graph_rec/sweep")
    args = p.parse_args(argv)
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    grid = parse_grid(args.grid)
    keys = [k for k, _ in grid]
    settings = [dict(zip(keys, combo)) for combo in itertools.product(*(v for _, v in grid))]
    tags = ["_".join(f"{k}{v}" for k, v in s.items()) for s in settings]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda st: run_one(st[0], args, st[1]), zip(settings, tags)))
    rows = sorted(zip(settings, results), key=lambda r: -r[1][0]["metrics"]["best/acc"]["mean"])
    print(f"| {' | '.join(keys)} | best-epoch ACC | final-epoch ACC | NMI (best) | s/run |")
    print("|" + "---|" * (len(keys) + 4))
    for setting, (m, wall) in rows:
        best, last, nmi = (m["metrics"][k] for k in ("best/acc", "last/acc", "best/nmi"))
        print(
            f"| {' | '.join(setting[k] for k in keys)} | {best['mean']:.2f} ± {best['std']:.2f} | "
            f"{last['mean']:.2f} ± {last['std']:.2f} | {nmi['mean']:.2f} | {wall:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
