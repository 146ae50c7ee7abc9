"""Family comparison table: every preset on Cora and CiteSeer node classification.

    python -m graph_rec.transformer.compare --datasets cora citeseer --seeds 3 --epochs 60 --threads 1 --jobs 2

Runs ``graph_transformer`` for each (dataset, preset), in-process or in ``--jobs`` worker processes, appends
every result as a JSON line to ``--out`` (so an interrupted run keeps what it finished) and prints a Markdown
table of test accuracy (mean ± std over seeds, model selected by validation accuracy).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from graph_rec.transformer.presets import PRESETS
from graph_rec.transformer.runner import SPEC

FAMILY = {
    "gcn_only": "reference",
    "vanilla": "reference",
    "gcn_before": "1 GNN aux",
    "sage_alternating": "1 GNN aux",
    "gat_parallel": "1 GNN aux",
    "gin_before": "1 GNN aux",
    "pe_degree": "2 PE",
    "pe_laplacian": "2 PE",
    "pe_svd": "2 PE",
    "bias_spd": "3 attention",
    "bias_edge_path": "3 attention",
    "bias_hop": "3 attention",
    "mask_1hop": "3 attention",
    "mask_nhop": "3 attention",
    "virtual_node": "3 attention",
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["cora", "citeseer"])
    p.add_argument("--variants", nargs="+", default=list(PRESETS))
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default="runs/graph_rec/transformer_compare.jsonl")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time, each in its own process")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cells = [(ds, variant) for ds in a.datasets for variant in a.variants]
    results: dict[tuple[str, str], dict] = {}

    def keep(cell: tuple[str, str], r: dict) -> None:
        results[cell] = r
        with out.open("a") as f:
            f.write(json.dumps(r) + "\n")

    if a.jobs <= 1:
        for cell in cells:
            keep(cell, run_cell(cell, a))
    else:  # spawn: a fresh interpreter per worker, no forked torch thread pools
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(a.jobs, mp_context=ctx) as pool:
            futures = {pool.submit(run_cell, cell, a): cell for cell in cells}
            for fut in as_completed(futures):
                keep(futures[fut], fut.result())
    print(render(results, a.datasets, a.variants))


def run_cell(cell: tuple[str, str], a: argparse.Namespace) -> dict:
    """One (dataset, preset) through the shared runner, exactly as ``python -m graph_rec train`` runs it."""
    from graph_rec.__main__ import build_parser
    from graph_rec.experiment import run_experiment

    ds, variant = cell
    argv = ["train", SPEC.name, "--dataset", ds, "--variant", variant, "--seeds", str(a.seeds),
            "--epochs", str(a.epochs), "--threads", str(a.threads), "--device", a.device]  # fmt: skip
    if a.data_root:
        argv += ["--data-root", a.data_root]
    args = build_parser({SPEC.name: SPEC}).parse_args(argv)
    return run_experiment(SPEC, args, argv)


def render(results: dict[tuple[str, str], dict], datasets: list[str], variants: list[str]) -> str:
    head = (
        "| family | variant | "
        + " | ".join(f"{d} test acc" for d in datasets)
        + " | s ("
        + "/".join(datasets)
        + ") |"
    )
    lines = [head, "|---|---|" + "---|" * len(datasets) + "---:|"]
    for v in variants:
        cells, secs = [], []
        for d in datasets:
            r = results.get((d, v))
            acc = r["metrics"]["test/acc"] if r else None
            cells.append(f"{acc['mean']:.2f} ± {acc['std']:.2f}" if acc else "-")
            secs.append(f"{r['wall_seconds']:.0f}" if r else "-")
        lines.append(f"| {FAMILY.get(v, '')} | {v} | " + " | ".join(cells) + f" | {'/'.join(secs)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
